"""Searching a study's hyperparameters on the held-out split with Optuna (``search:`` in the study file), then
confirming the chosen setting on the full training set and the test set; see docs/tuning.md."""
