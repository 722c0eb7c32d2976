"""The training stage: the box, one step, one epoch, the loop, progress, evaluation, checkpoints and ``--resume``."""
