"""The `famevil` command: parses options, calls a stage, prints its result. Nothing else."""
