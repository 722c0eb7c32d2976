"""One training step on the device: input transfer, mixed precision, backward and optimizer step.

The step never reads a value back to the host (see :class:`ttm_torchdistill.run.train.meter.StepMeter`); with
``amp: fp16`` the backward pass and optimizer step go through a gradient scaler, mirroring torchdistill's
``default_post_forward_process`` (gradient accumulation, clipping on unscaled gradients, step-wise scheduler).
"""
from contextlib import nullcontext
from typing import Optional

import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, ReduceLROnPlateau

from ...errors import RunError
from ..config.runtime import Runtime
from ..machine.context import DistContext

AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
DEFAULT_POST_FORWARD = (None, 'default_post_forward_process')


def make_scaler(runtime: Runtime, ctx: DistContext) -> Optional[torch.amp.GradScaler]:
    """A gradient scaler for ``amp: fp16`` (CUDA only; bf16 has float32's range and needs none)."""
    if runtime.amp != 'fp16':
        return None
    return torch.amp.GradScaler(ctx.device.type)


def check_post_forward(train_config: dict, scaler: Optional[torch.amp.GradScaler], where: str) -> None:
    """fp16 replaces torchdistill's default post-forward process; a custom one cannot be combined with it."""
    key = train_config.get('post_forward_process')
    if scaler is not None and key not in DEFAULT_POST_FORWARD:
        raise RunError(f'amp fp16 trains through a gradient scaler in place of torchdistill\'s default post-forward '
                       f'process, but {where}.post_forward_process is {key!r}; use --amp bf16 or remove it')


def _scale_tensor(scaler: torch.amp.GradScaler) -> Optional[torch.Tensor]:
    # The scale as a device tensor: GradScaler.get_scale() would read it back to the host. ``_scale`` is private but
    # has held the scale since torch 1.6 (it is None until the first scale()).
    return getattr(scaler, '_scale', None)


def scaled_post_forward(box, loss: torch.Tensor, scaler: torch.amp.GradScaler) -> Optional[torch.Tensor]:
    """torchdistill's ``default_post_forward_process`` with the loss scaled, the gradients unscaled before clipping,
    and the step taken (or skipped, on inf/nan gradients) by the scaler.

    :return: a 0-dim bool tensor on the device, True when the scaler skipped the optimizer step (it then lowers its
        scale; read without a host synchronisation), or None when no optimizer step was due (gradient accumulation).
    """
    box.stage_grad_count += 1
    if box.grad_accum_step > 1:
        loss = loss / box.grad_accum_step
    scaler.scale(loss).backward()
    skipped = None
    if box.stage_grad_count % box.grad_accum_step == 0:
        if box.max_grad_norm is not None:
            scaler.unscale_(box.optimizer)
            params = [p for group in box.optimizer.param_groups for p in group['params']]
            torch.nn.utils.clip_grad_norm_(params, box.max_grad_norm)
        scaler.step(box.optimizer)
        before = _scale_tensor(scaler)
        before = before.clone() if before is not None else None
        scaler.update()  # lowers the scale exactly when the step was skipped (found inf/nan)
        after = _scale_tensor(scaler)
        if before is not None and after is not None:
            skipped = after < before
        box.optimizer.zero_grad()
    scheduler = box.lr_scheduler
    if scheduler is not None and box.scheduling_step > 0 and box.stage_grad_count % box.scheduling_step == 0 \
            and box.stage_grad_count % box.grad_accum_step == 0:
        if isinstance(scheduler, ReduceLROnPlateau):
            raise RunError('a step-wise ReduceLROnPlateau needs a metric every step; not supported with amp fp16')
        if isinstance(scheduler, CosineAnnealingWarmRestarts):
            scheduler.step(int(box.stage_grad_count / box.scheduling_step))
        else:
            scheduler.step()
    return skipped


def mark_batch_static(batch: torch.Tensor) -> torch.Tensor:
    """Tell torch.compile that the batch dimension is static.

    A loader that keeps its last partial batch (RepDistiller's ``drop_last: False``; evaluation loaders) hands the
    compiled models a new batch size once per epoch. By default dynamo then recompiles a graph with a symbolic batch
    size and runs every later batch, full ones included, through that dynamic graph; marked static, each batch size
    gets its own static graph (two per loader) and the full batches keep theirs.
    """
    torch._dynamo.mark_static(batch, 0)
    return batch


class TrainStep:
    """Run one step of ``box`` with the run's runtime options.

    :param box: torchdistill's Distillation- or TrainingBox.
    :param ctx: where the run is (device, distribution).
    :param runtime: the run's speed options.
    :param scaler: the fp16 gradient scaler, or None.
    :param cached_teacher: the box's stand-in teacher when the run reads a teacher cache.
    """

    def __init__(self, box, ctx: DistContext, runtime: Runtime, scaler: Optional[torch.amp.GradScaler],
                 cached_teacher=None):
        self.box, self.ctx, self.runtime, self.scaler = box, ctx, runtime, scaler
        #: a :class:`~ttm_torchdistill.run.data.fast_path.CachedTeacher` told each batch's indices, or None
        self.cached_teacher = cached_teacher
        #: the 0-indexed epoch being trained (for the teacher cache)
        self.epoch = 0
        #: with fp16: a device bool, True when the gradient scaler skipped the last step's update (else None)
        self.last_skipped: Optional[torch.Tensor] = None
        self.non_blocking = ctx.device.type == 'cuda'  # overlaps the copy with compute from pinned host memory

    def autocast(self):
        if self.runtime.amp == 'off':
            return nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=AUTOCAST_DTYPES[self.runtime.amp])

    def __call__(self, sample_batch: torch.Tensor, targets: torch.Tensor, supp_dict) -> torch.Tensor:
        """Forward, backward and update; returns the (unscaled, undetached) loss without reading it."""
        if self.cached_teacher is not None:
            self.cached_teacher.select(self.epoch, supp_dict['indices'])
        sample_batch = sample_batch.to(self.ctx.device, non_blocking=self.non_blocking)
        targets = targets.to(self.ctx.device, non_blocking=self.non_blocking)
        if self.runtime.channels_last and sample_batch.dim() == 4:
            sample_batch = sample_batch.contiguous(memory_format=torch.channels_last)
        if self.runtime.compile:
            mark_batch_static(sample_batch)
        with self.autocast():
            loss = self.box.forward_process(sample_batch, targets, supp_dict)
        if self.scaler is not None:
            self.last_skipped = scaled_post_forward(self.box, loss, self.scaler)
        else:
            self.box.post_forward_process(loss=loss)
        return loss
