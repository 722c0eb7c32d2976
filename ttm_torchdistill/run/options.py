"""The runner's options, as parsed from the command line by :mod:`ttm_torchdistill.cli`."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import RunError


@dataclass
class RunOptions:
    """Parsed command-line options (see :mod:`ttm_torchdistill.cli` for their meaning)."""
    config: str
    device: str = 'cpu'
    run_log: Optional[str] = None
    seed: Optional[int] = None
    start_epoch: int = 0
    test_only: bool = False
    student_only: bool = False
    log_config: bool = False
    disable_cudnn_benchmark: bool = False
    world_size: int = 1
    dist_url: str = 'env://'
    #: timeout of the process group's collectives in minutes (``--dist-timeout``; None: torch's default)
    dist_timeout_min: Optional[float] = None
    adjust_lr: bool = False
    overrides: List[str] = field(default_factory=list)
    resume: bool = False
    #: ``--continue-changed``: ``--resume`` a run whose config changed since it started (recorded, not refused)
    continue_changed: bool = False
    #: ``--overwrite``: a new run may replace the checkpoints and summary of another experiment at its ``dst_ckpt``
    overwrite: bool = False
    smoke: bool = False
    allow_pickle: bool = False
    data_parallel: bool = False
    #: log what the run's config copy was fitted to the machine (loaders, wrappers); off for ``cache-teacher``,
    #: which uses neither
    log_fitting: bool = True
    #: write to the trackers of ``runtime.track`` and the config's ``tracker:`` block; off for ``cache-teacher``,
    #: which trains nothing
    tracking: bool = True
    #: runtime options given as flags (``--amp bf16`` -> ``{'amp': 'bf16'}``); absent flags are not in it
    runtime_flags: Dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse combinations of options that contradict each other."""
        if self.resume and self.start_epoch:
            raise RunError('--resume takes the epoch from the last-epoch checkpoint; drop --start_epoch')
        if self.continue_changed and not self.resume:
            raise RunError('--continue-changed only applies to --resume (a run continued under a changed config)')
        if self.dist_timeout_min is not None and not self.dist_timeout_min > 0:
            raise RunError(f'--dist-timeout must be a positive number of minutes, got {self.dist_timeout_min}')
