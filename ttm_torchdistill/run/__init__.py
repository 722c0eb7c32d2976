"""The ``python -m ttm_torchdistill`` runner, in rooms by concern.

:mod:`.runner` reads as the story of a run in stages: :mod:`.prepare` (config, checks, seed, datasets, models),
:mod:`.train` (the epochs), :mod:`.final_evaluation` (test and summary). The stages draw on :mod:`.config`,
:mod:`.models`, :mod:`.data` and :mod:`.machine`; :mod:`ttm_torchdistill.commands.train` parses the command line.
"""
