"""The training steps of one epoch: read the device once per ``log_freq`` steps, print progress, stop on a broken run.

A window's read (:class:`~.meter.StepMeter`) is also where a non-finite loss (or, under fp16, a gradient scaler that
skips every update) stops the run, before anything of the epoch reaches a checkpoint.
"""
import logging
import os

from ..._core.criterion_walk import iter_loss_modules
from ...errors import RunError
from ..machine.context import DistContext
from .meter import LossTermRecorder, StepMeter, temperature_stats
from .progress import EpochProgress
from .step import TrainStep

logger = logging.getLogger('ttm_torchdistill.run')


def _nonfinite_hints(criterion) -> str:
    """What the losses say could make them non-finite (``nonfinite_hint()``), as text to append to the error."""
    hints = [hint for module in iter_loss_modules(criterion)
             if callable(getattr(module, 'nonfinite_hint', None)) and (hint := module.nonfinite_hint())]
    return ''.join(f'; {hint}' for hint in dict.fromkeys(hints))


#: fp16: steps skipped in a row after which the run stops. GradScaler starts at 2**16 and halves its scale at each
#: skipped step, so after 17 in a row even unscaled gradients overflow; the margin keeps its first calibration
#: steps (a few skips at most) far from the limit.
FP16_SKIPPED_IN_A_ROW_LIMIT = 24


def _read_window(meter: StepMeter, progress: EpochProgress, ctx: DistContext, epoch: int, first_step: int,
                 step: int, fp16: bool, last_path: str, criterion):
    window = meter.read(ctx)
    kept = last_path if os.path.isfile(last_path) else 'none (no epoch completed yet)'
    if window.nonfinite_steps and not fp16:  # with fp16 the scaler skips such steps; otherwise the run is broken
        raise RunError(f'non-finite loss (nan or inf) in epoch {epoch + 1}, steps {first_step}-{step} of '
                       f'{progress.steps}; nothing of this epoch was saved; last good checkpoint: {kept}'
                       + _nonfinite_hints(criterion))
    # fp16: a window whose every step the gradient scaler skipped (and at least the limit in a row) learns nothing
    if fp16 and window.skipped_in_a_row >= max(window.steps, FP16_SKIPPED_IN_A_ROW_LIMIT):
        raise RunError(f'amp fp16: the gradient scaler skipped the last {window.skipped_in_a_row} steps in a row, up '
                       f'to epoch {epoch + 1} step {step} of {progress.steps} (inf or nan gradients at every scale: '
                       f'nothing is learned); nothing of this epoch was saved; last good checkpoint: {kept}; try '
                       f'--amp bf16 or float32' + _nonfinite_hints(criterion))
    progress.add_window(window)
    return window


def train_one_epoch(box, step_fn: TrainStep, ctx: DistContext, epoch: int, log_freq: int,
                     recorder: LossTermRecorder, tracker, last_path: str, meter: StepMeter) -> EpochProgress:
    """Train one epoch; reads the device once per ``log_freq`` steps and at the end (no per-step sync).

    :param tracker: rank 0's :class:`~ttm_torchdistill.run.track.Tracking` (None elsewhere, or without trackers).
    """
    loader = box.train_data_loader
    steps = len(loader)
    progress = EpochProgress(epoch + 1, box.num_epochs, steps)
    fp16 = step_fn.scaler is not None
    first_step = 1
    for step, (sample_batch, targets, supp_dict) in enumerate(loader, start=1):
        loss = step_fn(sample_batch, targets, supp_dict)
        meter.add(loss, recorder.pop(), temperature_stats(box.criterion), step_fn.last_skipped)
        progress.count_images(sample_batch.shape[0])
        if step % log_freq == 0 or step == steps:
            window = _read_window(meter, progress, ctx, epoch, first_step, step, fp16, last_path, box.criterion)
            first_step = step + 1
            lr = box.optimizer.param_groups[0]['lr']
            logger.info(progress.line(step, lr, ctx.world_size))
            if tracker is not None:  # the numbers of the line just logged: no other read of the device
                tracker.train_point(epoch, step, steps, window, lr, progress.images_per_s)
    return progress
