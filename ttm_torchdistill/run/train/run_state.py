"""What a run has done so far: restored by ``--resume``, written into the summary."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class RunState:
    """What the run has done so far; restored by ``--resume`` and written into the summary.

    :param history: one record per completed epoch (``epoch``, ``lr``, ``train_loss``, ``val_top1``, ...).
    :param best: ``{'epoch', 'top1', 'top5'}`` of the best validation epoch (epoch None before the first).
    :param previous_wall_time_s: training time of earlier sessions of a resumed run.
    :param wall_time_s: total training time, set when the stage ends.
    :param planned_epochs: the config's number of epochs (None when not training).
    :param attempts: every session of the run so far, this one last (:mod:`~ttm_torchdistill.run.attempts`).
    :param sampler_seed: the seed of the training order when one is set explicitly (a DistributedSampler's under
        torchrun, the device loader's), else None.
    """
    history: List[Dict[str, Any]] = field(default_factory=list)
    best: Dict[str, Any] = field(default_factory=lambda: {'epoch': None, 'top1': -1.0, 'top5': None})
    previous_wall_time_s: float = 0.0
    wall_time_s: float = 0.0
    planned_epochs: Optional[int] = None
    sampler_seed: Optional[int] = None
    attempts: List[Dict[str, Any]] = field(default_factory=list)
