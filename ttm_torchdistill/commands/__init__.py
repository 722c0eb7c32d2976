"""Command-line fronts of the subcommands (``python -m ttm_torchdistill <subcommand> ...``): argument parsing and
one ``error: ...`` line per problem; the work is done by the library modules they call."""
