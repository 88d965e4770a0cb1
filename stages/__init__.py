"""One module per `famevil` stage. A stage reads its input artifacts, runs, and writes one artifact.

Each stage is one function whose docstring is its `--help`; the CLI only maps options onto it.
"""
