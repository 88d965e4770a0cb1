"""One module per `famevil` command, each with a function of the command's name; famevil_cli.app lists
them and imports one only when it is used."""
