"""The training stage: epochs with validation, best/last checkpoints, exact ``--resume``, progress lines.

The epoch loop follows torchdistill's example runner (pre-epoch process, train steps, validate, save when best
improves, post-epoch process) around torchdistill's Distillation-/TrainingBox; what it adds is in docs/running.md:
strict checks, the last-epoch checkpoint written before the best one, a stop on a non-finite loss before it
reaches a checkpoint, and per-term progress.
"""
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ...errors import RunError
from ..attempts import attempt_record, attempts_path, write_attempts
from ..config.walk import iter_train_stage_configs
from ..data.sample_streams import install_seeded_loaders, set_loader_epoch
from ..machine.context import DistContext, all_gather_objects, all_reduce_sum
from ..options import RunOptions
from ..prepared import Prepared
from .box import check_trainable_heads, setup_box, stage_config, stage_where, warn_teacher_mode, wrap_student
from .box_state import capture_box_state
from .checkpoint import capture_rng_state, last_ckpt_path, save_best, save_last
from .epoch import train_one_epoch
from .evaluation import evaluate
from .meter import LossTermRecorder, StepMeter
from ..console import format_duration
from .progress import EpochProgress
from .resume import start_epoch
from .run_state import RunState
from .step import TrainStep, check_post_forward, make_scaler

logger = logging.getLogger('ttm_torchdistill.run')

__all__ = ['RunState', 'Session', 'open_session', 'train']


@dataclass
class Session:
    """What the epochs of this process's training share (a resumed run starts a new session)."""
    box: Any
    step_fn: TrainStep
    scaler: Optional[torch.amp.GradScaler]
    recorder: LossTermRecorder
    meter: StepMeter  # one for the session: fp16's count of steps skipped in a row spans epochs
    tracker: Any  # rank 0's ..track.Tracking, else None (the runner opens and closes it)
    last_path: str
    start: float
    #: the training order's seed under torchrun (DistributedSampler's, or the device loader's), None otherwise
    sampler_seed: Optional[int] = None

    def start_epoch(self, prepared: Prepared, epoch: int) -> int:
        """The set-up of epoch ``epoch`` (0-indexed): the pre-epoch process, the step told the epoch, the device
        loaders installed (after a stage change too) at that epoch; returns the stage's ``log_freq``."""
        box = self.box
        if self.recorder.criterion is not box.criterion:  # a new stage built its own criterion
            self.recorder.remove()
            self.recorder = LossTermRecorder(box.criterion)
        stage = stage_config(prepared.train_config, box)
        # before the pre-epoch process, which sets a DistributedSampler's epoch through the rebuilt loader
        self.sampler_seed = install_loaders(box, prepared)
        box.pre_epoch_process(epoch=epoch)
        self.step_fn.box, self.step_fn.epoch = box, epoch
        if prepared.device_data is not None:
            prepared.device_data.set_epoch(box, epoch)
        else:
            set_loader_epoch(box, epoch)
        return max(int(stage.get('log_freq', 100) or 1), 1)

    def close(self, state: RunState) -> None:
        self.recorder.remove()
        state.wall_time_s = state.previous_wall_time_s + time.time() - self.start


def install_loaders(box, prepared: Prepared) -> Optional[int]:
    """The box's training and validation loaders as the run draws them (after a stage change too): device loaders
    with ``runtime.device_data``, else torchdistill's rebuilt with per-sample streams
    (:mod:`~ttm_torchdistill.run.data.sample_streams`); returns the seed of the training order when one is set
    explicitly (device loader, DistributedSampler), else None."""
    stage, where = stage_config(prepared.train_config, box), stage_where(box)
    if prepared.device_data is not None:
        prepared.device_data.install(box, stage, where)
        return prepared.device_data.order_seed(box)
    return install_seeded_loaders(box, stage, where, prepared.seed.value).get('train_data_loader')


def open_session(prepared: Prepared, opts: RunOptions, ctx: DistContext, tracker=None) -> Session:
    """Build the box (with the cached teacher when the run reads one), wrap the student, the step and its scaler.

    :param tracker: rank 0's :class:`~ttm_torchdistill.run.track.Tracking` (None: no trackers).
    """
    config = prepared.config
    lr_factor = ctx.world_size if ctx.distributed and opts.adjust_lr else 1
    teacher = prepared.cached_teacher if prepared.cached_teacher is not None else prepared.teacher
    box = setup_box(prepared, ctx, lr_factor, teacher)
    check_trainable_heads(box, stage_where(box))
    wrap_student(box, ctx, prepared.runtime)
    scaler = make_scaler(prepared.runtime, ctx)
    for where, stage in iter_train_stage_configs(config):
        check_post_forward(stage, scaler, where)
    step_fn = TrainStep(box, ctx, prepared.runtime, scaler, prepared.cached_teacher)
    return Session(box, step_fn, scaler, LossTermRecorder(box.criterion), StepMeter(ctx.device), tracker,
                   last_ckpt_path(prepared.dst_ckpt), time.time(), install_loaders(box, prepared))


def train(prepared: Prepared, opts: RunOptions, ctx: DistContext, tracker=None) -> RunState:
    """Train the student for the configured epochs (or the rest of them with ``--resume``).

    The student as built from ``models:`` is what is validated and saved, even when the box trains a redesigned
    module around it (``sequential``, auxiliary wrappers), as in torchdistill's example runner.

    :param tracker: rank 0's :class:`~ttm_torchdistill.run.track.Tracking` (None: no trackers); started here.
    """
    warn_teacher_mode(prepared)
    state = RunState()
    session = open_session(prepared, opts, ctx, tracker)
    box = session.box
    logger.info(f'Start training ({prepared.runtime.describe()})')
    first_epoch = start_epoch(box, prepared, opts, ctx, state, session.scaler)
    if tracker is not None:
        tracker.start(first_epoch, len(box.train_data_loader), state.history)
    _record_attempt(prepared, ctx, state, first_epoch, tracker)
    if box.val_data_loader is None:
        raise RunError('train.val_data_loader is required (validation picks the best checkpoint)')
    try:
        for epoch in range(first_epoch, box.num_epochs):
            _run_epoch(session, prepared, ctx, state, epoch)
    finally:
        session.close(state)
    state.planned_epochs, state.sampler_seed = box.num_epochs, session.sampler_seed
    box.clean_modules()
    return state


def _record_attempt(prepared: Prepared, ctx: DistContext, state: RunState, first_epoch: int, tracker) -> None:
    """Add this session to the run's attempts (those of the resumed checkpoint before it) and write the attempts
    file (rank 0), before the first step."""
    resumed = prepared.resume_checkpoint or dict()
    previous = list(resumed.get('attempts') or [])
    track = tracker.attempt_info() if tracker is not None else None
    state.attempts = previous + [attempt_record(prepared.identity, prepared.runtime.as_dict(), first_epoch,
                                                ctx.world_size, resumed.get('config_tree'), prepared.config_tree,
                                                track)]
    if ctx.is_main:
        write_attempts(attempts_path(prepared.dst_ckpt), state.attempts, prepared.config_tree)


def _run_epoch(session: Session, prepared: Prepared, ctx: DistContext, state: RunState, epoch: int) -> None:
    """One epoch: pre-epoch process, training steps, validation, post-epoch process, checkpoints."""
    box, epoch_start = session.box, time.time()
    log_freq = session.start_epoch(prepared, epoch)
    progress = train_one_epoch(box, session.step_fn, ctx, epoch, log_freq, session.recorder, session.tracker,
                               session.last_path, session.meter)
    progress.train_time = time.time() - epoch_start  # the pre-epoch process and the training steps, not validation
    lr = box.optimizer.param_groups[0]['lr']
    top1, top5, _ = evaluate(prepared.student, box.val_data_loader, ctx, prepared.runtime)
    improved = _record(session, state, ctx, progress, epoch, lr, top1, top5, time.time() - epoch_start)
    if session.tracker is not None:  # before the checkpoints: a kill after them finds the epoch's points written
        session.tracker.epoch_point(state.history[-1])
    stage_before = getattr(box, 'stage_number', None)
    box.post_epoch_process(metrics=top1)
    if getattr(box, 'stage_number', None) != stage_before:  # a new stage built its own modules and optimizer
        check_trainable_heads(box, stage_where(box))
    # A multi-stage box builds the next stage's student module at a stage change, unwrapped on CPU.
    wrap_student(box, ctx, prepared.runtime)
    _save(session, prepared, ctx, state, epoch, improved)
    if ctx.distributed:
        torch.distributed.barrier()


def _record(session: Session, state: RunState, ctx: DistContext, progress: EpochProgress, epoch: int, lr: float,
            top1: float, top5: float, epoch_time: float) -> bool:
    """Add the epoch to the history and log it; returns whether validation top-1 improved."""
    train_loss = progress.mean_loss  # per-rank mean of the per-step losses, averaged over ranks
    if ctx.distributed:
        train_loss = all_reduce_sum([train_loss], ctx)[0] / ctx.world_size
    state.history.append({'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss, 'val_top1': top1,
                          'val_top5': top5, 'epoch_time_s': epoch_time, 'train_time_s': progress.train_time,
                          'train_images': progress.images * ctx.world_size})
    improved = top1 > state.best['top1']
    if improved:
        state.best = {'epoch': epoch + 1, 'top1': top1, 'top5': top5}
    logger.info(f'Epoch {epoch + 1}/{session.box.num_epochs} done in {format_duration(epoch_time)}: train loss '
                f'{train_loss:.4f}  val top-1 {top1:.2f}  top-5 {top5:.2f}  (best top-1 '
                f'{state.best["top1"]:.2f} at epoch {state.best["epoch"]}' + (', saved' if improved else '') + ')')
    return improved


def _save(session: Session, prepared: Prepared, ctx: DistContext, state: RunState, epoch: int,
          improved: bool) -> None:
    """The last-epoch checkpoint, then the best one when validation improved (rank 0 writes both)."""
    rng_per_rank = all_gather_objects(capture_rng_state(), ctx)  # a collective: every rank takes part
    if not ctx.is_main:
        return
    # last before best: see resume.resume for how a kill between the two is repaired
    box, student = session.box, prepared.student
    wall = state.previous_wall_time_s + time.time() - session.start
    save_last(session.last_path, student.state_dict(), box.optimizer, box.lr_scheduler, epoch + 1, state.best,
              state.history, ctx.world_size, wall, prepared.identity, session.scaler,
              capture_box_state(box, student), rng_per_rank, prepared.config_tree, state.attempts)
    if improved:
        best = state.best
        save_best(prepared.dst_ckpt, student.state_dict(), epoch + 1, best['top1'], best['top5'])
