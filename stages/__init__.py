"""One module per `famevil` command that writes an artifact (or a page). A stage reads its inputs,
runs the core (famevil/) and writes its output; no stage imports another.

Each stage is one function whose docstring is its `--help`; the CLI only maps options onto it.
"""
