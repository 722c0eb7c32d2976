"""The training stage: epochs with validation, best/last checkpoints, exact ``--resume``, progress lines.

The epoch loop follows torchdistill's example runner (pre-epoch process, train steps, validate, save when best
improves, post-epoch process) around torchdistill's Distillation-/TrainingBox; what it adds is in the README
("Running"): strict checks, the last-epoch checkpoint written before the best one, a stop on a non-finite loss
before it reaches a checkpoint, and per-term progress.
"""
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torchdistill.core.distillation import get_distillation_box
from torchdistill.core.training import get_training_box
from torchdistill.misc.log import setup_tracker

from ..errors import RunError
from .box_state import capture_box_state, restore_box_state
from .checkpoint import best_checkpoint_epoch, check_same_run, last_ckpt_path, load_last, optional_state, \
    restore_rng_state, save_best, save_last
from .component_errors import explain_box_failure
from .config_walk import iter_train_stage_configs
from .distributed import DistContext, all_reduce_sum, ensure_ddp
from .fast_data import CachedTeacher, check_teacher_hooks, open_teacher_cache
from .options import RunOptions
from .prepare import Prepared
from .progress import EpochProgress, LossTermRecorder, StepMeter, evaluate, format_duration, temperature_stats
from .step import TrainStep, check_post_forward, make_scaler

logger = logging.getLogger('ttm_torchdistill.run')


@dataclass
class RunState:
    """What the run has done so far; restored by ``--resume`` and written into the summary.

    :param history: one record per completed epoch (``epoch``, ``lr``, ``train_loss``, ``val_top1``, ...).
    :param best: ``{'epoch', 'top1', 'top5'}`` of the best validation epoch (epoch None before the first).
    :param previous_wall_time_s: training time of earlier sessions of a resumed run.
    :param wall_time_s: total training time, set when the stage ends.
    :param planned_epochs: the config's number of epochs (None when not training).
    """
    history: List[Dict[str, Any]] = field(default_factory=list)
    best: Dict[str, Any] = field(default_factory=lambda: {'epoch': None, 'top1': -1.0, 'top5': None})
    previous_wall_time_s: float = 0.0
    wall_time_s: float = 0.0
    planned_epochs: Optional[int] = None


def _setup_box(prepared: Prepared, ctx: DistContext, lr_factor: float, teacher):
    student, datasets, train_config = prepared.student, prepared.datasets, prepared.train_config
    # The wrappers of the config copy were fitted to the run (device_policy); these ids go with them.
    device_ids = prepared.device_ids if prepared.device_ids is not None else ctx.device_ids
    try:
        if teacher is None:
            return get_training_box(student, datasets, train_config, ctx.device, device_ids,
                                    ctx.distributed, lr_factor)
        return get_distillation_box(teacher, student, datasets, train_config, ctx.device, device_ids,
                                    ctx.distributed, lr_factor)
    except RunError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise explain_box_failure(exc, prepared.config) from None


def _student_of(box) -> torch.nn.Module:
    return box.model if hasattr(box, 'model') else box.student_model


def _set_student(box, model) -> None:
    if hasattr(box, 'model'):
        box.model = model
    else:
        box.student_model = model


def _read_window(meter: StepMeter, progress: EpochProgress, ctx: DistContext, epoch: int, first_step: int,
                 step: int, fp16: bool, last_path: str):
    window = meter.read(ctx)
    if window.nonfinite_steps and not fp16:  # with fp16 the scaler skips such steps; otherwise the run is broken
        kept = last_path if os.path.isfile(last_path) else 'none (no epoch completed yet)'
        raise RunError(f'non-finite loss (nan or inf) in epoch {epoch + 1}, steps {first_step}-{step} of '
                       f'{progress.steps}; nothing of this epoch was saved; last good checkpoint: {kept}')
    progress.add_window(window)
    return window


def _train_one_epoch(box, step_fn: TrainStep, ctx: DistContext, epoch: int, log_freq: int,
                     recorder: LossTermRecorder, tracker, last_path: str) -> EpochProgress:
    """Train one epoch; reads the device once per ``log_freq`` steps and at the end (no per-step sync)."""
    loader = box.train_data_loader
    steps = len(loader)
    progress = EpochProgress(epoch + 1, box.num_epochs, steps)
    meter = StepMeter(ctx.device)
    fp16 = step_fn.scaler is not None
    first_step = 1
    for step, (sample_batch, targets, supp_dict) in enumerate(loader, start=1):
        loss = step_fn(sample_batch, targets, supp_dict)
        meter.add(loss, recorder.pop(), temperature_stats(box.criterion))
        progress.count_images(sample_batch.shape[0])
        if step % log_freq == 0 or step == steps:
            window = _read_window(meter, progress, ctx, epoch, first_step, step, fp16, last_path)
            first_step = step + 1
            lr = box.optimizer.param_groups[0]['lr']
            logger.info(progress.line(step, lr, ctx.world_size))
            if tracker is not None:
                tracker.log({'train/loss': window.loss_sum / max(window.steps - window.nonfinite_steps, 1),
                             'train/lr': lr}, step=epoch * steps + step)
    return progress


def _resume(box, prepared: Prepared, ctx: DistContext, state: RunState, scaler) -> int:
    """Restore model, optimizer, scheduler, history and RNG from the last-epoch checkpoint; returns its epoch."""
    last_path, dst_ckpt = last_ckpt_path(prepared.dst_ckpt), prepared.dst_ckpt
    ckpt = load_last(last_path)
    for note in check_same_run(ckpt.get('identity'), prepared.identity, last_path):
        logger.warning(f'--resume: {note}')
    prepared.student.load_state_dict(ckpt['model'])
    state.history = list(ckpt['history'])
    state.best = dict(ckpt['best'])
    state.previous_wall_time_s = float(ckpt.get('wall_time_s', 0.0))
    if ckpt['epoch'] >= box.num_epochs:
        raise RunError(f'--resume: {last_path} already holds all {box.num_epochs} epochs; nothing to resume')
    # A multi-stage box starts in stage 1: move it to the stage the saved optimizer and scheduler states belong to.
    _fast_forward_stages(box, ckpt['epoch'])
    optional_state(box.optimizer, ckpt['optimizer'], 'optimizer', last_path)
    optional_state(box.lr_scheduler, ckpt['lr_scheduler'], 'lr_scheduler', last_path)
    _restore_scaler(scaler, ckpt.get('scaler'), last_path)
    for note in restore_box_state(box, prepared.student, ckpt.get('box_state')):
        logger.warning(f'--resume: {note}')
    if ckpt.get('world_size', 1) != ctx.world_size:
        logger.warning(f'--resume: checkpoint written with world size {ckpt.get("world_size")}, '
                       f'now {ctx.world_size}: the run will not be bitwise identical')
    for note in restore_rng_state(ckpt['rng']):
        logger.warning(f'--resume: {note}')
    # The last checkpoint is written before the best one, so a kill between the two leaves dst_ckpt one
    # improvement behind; that improvement was the last completed epoch, whose weights the last checkpoint holds.
    best_epoch = state.best['epoch']
    if ctx.is_main and best_epoch is not None and best_epoch != best_checkpoint_epoch(dst_ckpt):
        if best_epoch == ckpt['epoch']:
            save_best(dst_ckpt, ckpt['model'], best_epoch, state.best['top1'], state.best['top5'])
            logger.info(f'--resume: restored the best checkpoint of epoch {best_epoch} at {dst_ckpt}')
        else:
            logger.warning(f'--resume: {dst_ckpt} does not hold the best epoch {best_epoch}; the final test uses '
                           f'whatever it holds')
    logger.info(f'Resuming from {last_path} at epoch {ckpt["epoch"] + 1}/{box.num_epochs}')
    return ckpt['epoch']


def _restore_scaler(scaler, saved, path: str) -> None:
    """The fp16 gradient scaler continues with its saved scale; a change of amp mode is allowed, with a warning."""
    if scaler is not None and saved is not None:
        scaler.load_state_dict(saved)
    elif scaler is not None or saved is not None:
        logger.warning(f'--resume: {path} was written {"with" if saved is not None else "without"} an fp16 gradient '
                       f'scaler, this run {"uses" if scaler is not None else "does not use"} one: its state starts '
                       f'afresh')


def _fast_forward_stages(box, epochs_done: int) -> None:
    """Advance a multi-stage box (torchdistill's ``MultiStages*Box``) as its post-epoch process would have."""
    if not hasattr(box, 'stage_end_epoch'):
        return
    box.current_epoch = epochs_done
    while box.stage_end_epoch <= epochs_done < box.num_epochs:
        box.advance_to_next_stage()


def _stage_config(train_config: Dict[str, Any], box) -> Dict[str, Any]:
    """The config of the stage the box is in (the whole ``train:`` block for single-stage configs)."""
    stage = getattr(box, 'stage_number', None)
    return train_config[f'stage{stage}'] if stage is not None else train_config


def _stage_where(box) -> str:
    stage = getattr(box, 'stage_number', None)
    return f'train.stage{stage}' if stage is not None else 'train'


def _planned_epochs(config: Dict[str, Any]) -> int:
    return sum(int(stage.get('num_epochs', 0)) for _, stage in iter_train_stage_configs(config))


def _cached_teacher(prepared: Prepared, ctx: DistContext) -> Optional[CachedTeacher]:
    """The stand-in teacher reading ``runtime.teacher_cache``, checked against this run (None without a cache)."""
    path = prepared.runtime.teacher_cache
    if not path:
        return None
    if prepared.teacher is None:
        raise RunError('runtime.teacher_cache is set but the config has no models.teacher_model to stand in for')
    stages = list(iter_train_stage_configs(prepared.config))
    for where, stage in stages:
        check_teacher_hooks(stage, where)
    where, first = stages[0]
    train_data = prepared.device_data.dataset(first['train_data_loader']['dataset_id'], f'{where}.train_data_loader')
    cache = open_teacher_cache(path, prepared.config, train_data, _planned_epochs(prepared.config), ctx)
    logger.info(f'Teacher logits read from the cache {path} (the teacher network is not run while training)')
    return CachedTeacher(cache)


def _start_epoch(box, prepared: Prepared, opts: RunOptions, ctx: DistContext, state: RunState, scaler) -> int:
    if opts.resume:
        return _resume(box, prepared, ctx, state, scaler)
    last_path = last_ckpt_path(prepared.dst_ckpt)
    if os.path.isfile(last_path) and ctx.is_main:
        logger.warning(f'starting a new run: {last_path} (and {prepared.dst_ckpt}) of an earlier run will be '
                       f'overwritten; use --resume to continue that run instead')
    return opts.start_epoch


def _warn_teacher_mode(prepared: Prepared) -> None:
    train_config = prepared.train_config
    if prepared.teacher is not None and 'pre_epoch_process' not in train_config and 'stage1' not in train_config:
        logger.warning('train.pre_epoch_process is not set: torchdistill\'s default leaves the teacher in train '
                       'mode; set it to \'eval_teacher_and_set_loss_epoch\'')


def train(prepared: Prepared, opts: RunOptions, ctx: DistContext) -> RunState:
    """Train the student for the configured epochs (or the rest of them with ``--resume``).

    The student as built from ``models:`` is what is validated and saved, even when the box trains a redesigned
    module around it (``sequential``, auxiliary wrappers), as in torchdistill's example runner.
    """
    _warn_teacher_mode(prepared)
    config = prepared.config
    tracker = setup_tracker(config.get('tracker'), run_config={'config': opts.config}) \
        if config.get('tracker') else None
    state = RunState()
    lr_factor = ctx.world_size if ctx.distributed and opts.adjust_lr else 1
    cached_teacher = _cached_teacher(prepared, ctx)
    box = _setup_box(prepared, ctx, lr_factor, cached_teacher if cached_teacher is not None else prepared.teacher)
    _set_student(box, ensure_ddp(_student_of(box), ctx))
    student, dst_ckpt = prepared.student, prepared.dst_ckpt
    last_path = last_ckpt_path(dst_ckpt)
    scaler = make_scaler(prepared.runtime, ctx)
    for where, stage in iter_train_stage_configs(config):
        check_post_forward(stage, scaler, where)
    step_fn = TrainStep(box, ctx, prepared.runtime, scaler, cached_teacher)
    logger.info(f'Start training ({prepared.runtime.describe()})')
    start_epoch = _start_epoch(box, prepared, opts, ctx, state, scaler)
    if box.val_data_loader is None:
        raise RunError('train.val_data_loader is required (validation picks the best checkpoint)')
    recorder = LossTermRecorder(box.criterion)
    session_start = time.time()
    try:
        for epoch in range(start_epoch, box.num_epochs):
            epoch_start = time.time()
            log_freq = max(int(_stage_config(prepared.train_config, box).get('log_freq', 100) or 1), 1)
            if recorder.criterion is not box.criterion:  # a new stage built its own criterion
                recorder.remove()
                recorder = LossTermRecorder(box.criterion)
            box.pre_epoch_process(epoch=epoch)
            step_fn.box, step_fn.epoch = box, epoch
            if prepared.device_data is not None:
                prepared.device_data.install(box, _stage_config(prepared.train_config, box), _stage_where(box))
                prepared.device_data.set_epoch(box, epoch)
            progress = _train_one_epoch(box, step_fn, ctx, epoch, log_freq, recorder, tracker, last_path)
            train_time = time.time() - epoch_start  # the training steps and pre-epoch process, not validation
            lr = box.optimizer.param_groups[0]['lr']
            top1, top5, _ = evaluate(student, box.val_data_loader, ctx)
            # Per-rank mean of the per-step losses, averaged over ranks.
            train_loss = progress.mean_loss
            if ctx.distributed:
                train_loss = all_reduce_sum([train_loss], ctx)[0] / ctx.world_size
            epoch_time = time.time() - epoch_start
            state.history.append({'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss,
                                  'val_top1': top1, 'val_top5': top5, 'epoch_time_s': epoch_time,
                                  'train_time_s': train_time, 'train_images': progress.images * ctx.world_size})
            improved = top1 > state.best['top1']
            if improved:
                state.best = {'epoch': epoch + 1, 'top1': top1, 'top5': top5}
            logger.info(f'Epoch {epoch + 1}/{box.num_epochs} done in {format_duration(epoch_time)}: train loss '
                        f'{train_loss:.4f}  val top-1 {top1:.2f}  top-5 {top5:.2f}  (best top-1 '
                        f'{state.best["top1"]:.2f} at epoch {state.best["epoch"]}'
                        + (', saved' if improved else '') + ')')
            if tracker is not None:
                tracker.log({'val/acc1': top1, 'val/acc5': top5, 'epoch': epoch + 1})
            box.post_epoch_process(metrics=top1)
            # A multi-stage box builds the next stage's student module at a stage change, unwrapped on CPU.
            _set_student(box, ensure_ddp(_student_of(box), ctx))
            if ctx.is_main:
                # last before best: see _resume for how a kill between the two is repaired
                wall = state.previous_wall_time_s + time.time() - session_start
                save_last(last_path, student.state_dict(), box.optimizer, box.lr_scheduler, epoch + 1,
                          state.best, state.history, ctx.world_size, wall, prepared.identity, scaler,
                          capture_box_state(box, student))
                if improved:
                    save_best(dst_ckpt, student.state_dict(), epoch + 1, top1, top5)
            if ctx.distributed:
                torch.distributed.barrier()
    finally:
        recorder.remove()
        state.wall_time_s = state.previous_wall_time_s + time.time() - session_start
        if tracker is not None:
            tracker.finish()
    state.planned_epochs = box.num_epochs
    box.clean_modules()
    return state
