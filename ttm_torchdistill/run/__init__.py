"""The ``python -m ttm_torchdistill`` runner: config loading, data, models, checkpoints, progress, summary.

:func:`ttm_torchdistill.run.runner.run` is the entry point; :mod:`ttm_torchdistill.cli` parses the command line.
"""
