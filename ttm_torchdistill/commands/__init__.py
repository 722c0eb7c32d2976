"""The command line's subcommands: each module is a thin front (parser and ``main``) of a library function.

:mod:`ttm_torchdistill.cli` dispatches ``python -m ttm_torchdistill [SUBCOMMAND] ...`` to them; without a subcommand
the arguments are the runner's (:mod:`.train`).
"""
