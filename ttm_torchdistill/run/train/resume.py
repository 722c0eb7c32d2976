"""``--resume``: continue a run from its last-epoch checkpoint, bit for bit.

Model, optimizer, scheduler, gradient scaler, box state, history and RNG states come from the checkpoint that rank 0
read in the preparation stage; a kill between the last and the best checkpoint writes is repaired here.
"""
import logging
import os

from ..machine.context import DistContext
from ..options import RunOptions
from ..prepared import Prepared
from .box import fast_forward_stages
from .box_state import restore_box_state
from .checkpoint import (
    best_checkpoint_epoch, last_ckpt_path, optional_state, rank_rng_state, restore_rng_state, save_best,
)
from .run_state import RunState

logger = logging.getLogger('ttm_torchdistill.run')


def resume(box, prepared: Prepared, ctx: DistContext, state: RunState, scaler) -> int:
    """Restore model, optimizer, scheduler, history and RNG from the last-epoch checkpoint; returns its epoch.

    Every rank restores from the content rank 0 read (``prepared.resume_checkpoint``), so the ranks continue with
    the same weights and optimizer state; each takes its own RNG states when the world size is unchanged.
    """
    last_path, dst_ckpt = last_ckpt_path(prepared.dst_ckpt), prepared.dst_ckpt
    ckpt = prepared.resume_checkpoint  # its identity was checked by the preparation stage
    prepared.student.load_state_dict(ckpt['model'])
    state.history = list(ckpt['history'])
    state.best = dict(ckpt['best'])
    state.previous_wall_time_s = float(ckpt.get('wall_time_s', 0.0))
    if ckpt['epoch'] >= box.num_epochs:
        # a run stopped after its last checkpoint but before its summary (a kill, a requeue): finish it
        logger.info(f'--resume: {last_path} holds all {box.num_epochs} epochs; testing the best student and writing '
                    f'the summary')
    # A multi-stage box starts in stage 1: move it to the stage the saved optimizer and scheduler states belong to.
    fast_forward_stages(box, ckpt['epoch'])
    optional_state(box.optimizer, ckpt['optimizer'], 'optimizer', last_path)
    optional_state(box.lr_scheduler, ckpt['lr_scheduler'], 'lr_scheduler', last_path)
    _restore_scaler(scaler, ckpt.get('scaler'), last_path)
    for note in restore_box_state(box, prepared.student, ckpt.get('box_state')):
        logger.warning(f'--resume: {note}')
    if ckpt.get('world_size', 1) != ctx.world_size:
        logger.warning(f'--resume: checkpoint written with world size {ckpt.get("world_size")}, '
                       f'now {ctx.world_size}: the run will not be bitwise identical')
    for note in restore_rng_state(rank_rng_state(ckpt, ctx.rank, ctx.world_size)):
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


def start_epoch(box, prepared: Prepared, opts: RunOptions, ctx: DistContext, state: RunState, scaler) -> int:
    if opts.resume:
        return resume(box, prepared, ctx, state, scaler)
    last_path = last_ckpt_path(prepared.dst_ckpt)
    if os.path.isfile(last_path) and ctx.is_main:
        logger.warning(f'starting a new run: {last_path} (and {prepared.dst_ckpt}) of an earlier run will be '
                       f'overwritten; use --resume to continue that run instead')
    return opts.start_epoch
