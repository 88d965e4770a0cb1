"""`python -m famevil_cli`: how `accelerate launch -m famevil_cli teach ...` starts each process."""

from famevil_cli.app import main

main()
