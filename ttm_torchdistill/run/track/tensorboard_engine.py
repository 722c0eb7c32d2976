"""TensorBoard: event files in ``<track_dir>/tensorboard/<run name>`` (``tensorboard --logdir <track_dir>/tensorboard``
shows experiment/variant/seed folders, so a regex on the run name selects an experiment's seeds).

Training points are at the global step, epoch points (``val/acc1`` ...) at the epoch's number, the final test at the
last epoch's. A resumed session reads what the folder holds (TensorBoard's own ``EventAccumulator``) and adds only
later points; a new run over a folder that holds an earlier one hides the earlier points (``purge_step=0``: TensorBoard
purges events at and after the step where a writer restarts).
"""
import glob
import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

from .tracker_plan import EngineSpec, TrackPlan

logger = logging.getLogger('ttm_torchdistill.run')


def code_block(text: str) -> str:
    """``text`` as a Markdown code block (TensorBoard renders text summaries as Markdown)."""
    return '\n'.join('    ' + line for line in text.splitlines())


def read_scalars(folder: str) -> Dict[str, list]:
    """``{tag: [(step, value), ...]}`` of the event files in ``folder``, as TensorBoard shows them (purges
    applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(folder, size_guidance={'scalars': 0, 'tensors': 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()['scalars']}


class TensorBoardEngine:
    """One run's event files; ``spec.kwargs`` (the config's ``tracker.kwargs``) go to ``SummaryWriter``."""
    name = 'tensorboard'

    def __init__(self, plan: TrackPlan, spec: EngineSpec, continuing: bool, run_config: Dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter
        kwargs = dict(spec.kwargs)
        self.folder = os.path.expanduser(kwargs.pop('log_dir', None) or os.path.join(plan.folder, 'tensorboard',
                                                                                     plan.name))
        earlier = bool(glob.glob(os.path.join(self.folder, 'events.out.tfevents.*')))
        self.marks: Tuple[Optional[int], ...] = (None, None, None)
        if continuing and earlier:
            scalars = read_scalars(self.folder)
            self.marks = tuple(max((step for step, _ in scalars.get(tag, [])), default=None)
                               for tag in ('train/loss', 'val/acc1', 'test/student/acc1'))
        elif earlier:
            logger.warning(f'tensorboard: {self.folder} holds an earlier run of this name; its points are hidden '
                           f'(purge_step=0)')
            kwargs.setdefault('purge_step', 0)
        self.writer = SummaryWriter(log_dir=self.folder, **kwargs)
        if not continuing:
            self.writer.add_text('run/config', code_block(json.dumps(run_config, indent=1, default=str)), 0)

    def log(self, values: Dict[str, float], step: int, epoch: Optional[int]) -> None:
        """Training points at ``step``; epoch points (``epoch`` given) at the epoch's number."""
        x = step if epoch is None else epoch
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, x)

    def flush(self) -> None:
        self.writer.flush()

    def final(self, values: Dict[str, float], epoch: int) -> None:
        self.log(values, epoch, epoch)

    def close(self, failure: Optional[str], epoch: Optional[int]) -> None:
        """The run's status as text at the last epoch reached, then the files closed."""
        self.writer.add_text('run/status', 'failed: ' + failure if failure else 'finished', epoch or 0)
        self.writer.close()
