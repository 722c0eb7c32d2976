"""Studies: a whole results table (configs x grid variants x seeds) as one command, locally or on Slurm.

``python -m ttm_torchdistill study plan|run|status STUDY.yaml`` (front: :mod:`ttm_torchdistill.commands.study`).
Modules, each with one job: :mod:`.study_file` (the study file), :mod:`.plan` (runs and caches from it),
:mod:`.caches` (which teacher cache a run needs), :mod:`.task_state` (a run's state from its folder), :mod:`.locks`
(one process per run), :mod:`.attempt` (one attempt of a run or a cache build), :mod:`.local` and
:mod:`.slurm` (executors), :mod:`.status` (what ``study status`` prints) and :mod:`.runner_api` (everything
taken from the runner); :mod:`.search` (a search of a space with Optuna, and its confirm runs).
"""
