"""What the user sees while training: per-term losses, adaptive temperature, lr, img/s, ETA; and evaluation.

``WeightedSumLoss`` returns only its total; each sub-term's value is captured with a forward hook on the sub-term's
criterion module, so the breakdown costs no extra computation. Losses with the ``'max_logit'`` temperature expose
the last batch's per-sample temperatures as ``last_temperature`` (a 1-D tensor), summarised as mean/min/max. All of
it stays on the device until :class:`StepMeter` reads a window of steps back in one synchronisation.
"""
import datetime
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..processes import iter_loss_modules
from .distributed import DistContext, all_reduce_sum


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``'1:02:05'``."""
    return str(datetime.timedelta(seconds=int(max(seconds, 0.0))))


class LossTermRecorder:
    """Forward hooks recording each ``WeightedSumLoss`` sub-term's weighted value (its share of the total).

    The values stay on the device (detached tensors): reading them is left to :class:`StepMeter`, once per
    ``log_freq`` steps.

    :param criterion: the box's criterion; non-``WeightedSumLoss`` criteria record nothing.
    """

    def __init__(self, criterion: nn.Module):
        self.criterion = criterion
        self.values: Dict[str, torch.Tensor] = OrderedDict()
        self.handles = []
        for name, term in getattr(criterion, 'term_dict', dict()).items():
            module, weight = term
            if isinstance(module, nn.Module):
                self.handles.append(module.register_forward_hook(self._hook(name, weight)))

    def _hook(self, name, weight):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.numel() == 1:
                value = output.detach().reshape(())
                self.values[name] = value * float(weight) if isinstance(weight, (int, float)) else value
        return record

    def pop(self) -> Dict[str, torch.Tensor]:
        """Values recorded since the last call."""
        values, self.values = self.values, OrderedDict()
        return values

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def temperature_stats(criterion: nn.Module) -> Optional[torch.Tensor]:
    """``[mean, min, max]`` over every loss module's ``last_temperature``, on the device (None when none has one)."""
    temps = []
    for module in iter_loss_modules(criterion):
        value = getattr(module, 'last_temperature', None)
        if isinstance(value, torch.Tensor) and value.numel() > 0:
            temps.append(value.detach().float().flatten())
    if not temps:
        return None
    all_temps = torch.cat([t.to(temps[0].device) for t in temps])
    return torch.stack([all_temps.mean(), all_temps.min(), all_temps.max()])


@dataclass
class Window:
    """What :meth:`StepMeter.read` returns for the steps since the previous read (plain Python numbers)."""
    steps: int
    loss_sum: float
    nonfinite_steps: int
    term_means: Dict[str, float]
    temperatures: Optional[Tuple[float, float, float]]


class StepMeter:
    """Per-step numbers accumulated on the device and read back once per window (one host synchronisation).

    A training step must not wait for the device: ``loss.item()`` every step stalls the GPU's queue. Here the
    loss, each sub-term, the non-finite flag and the last temperatures are added into device tensors, and
    :meth:`read` copies them to the host in one ``tolist()`` (all-reducing the non-finite count across ranks in the
    same call, so a NaN on any rank stops every rank at the same step).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.steps = 0
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.nonfinite = torch.zeros((), dtype=torch.float64, device=self.device)
        self.terms: Dict[str, torch.Tensor] = OrderedDict()
        self.temperatures: Optional[torch.Tensor] = None

    def add(self, loss: torch.Tensor, terms: Dict[str, torch.Tensor], temperatures: Optional[torch.Tensor]) -> None:
        """Add one step (no synchronisation: every operation is queued on the device)."""
        loss = loss.detach().reshape(()).to(torch.float64)
        finite = torch.isfinite(loss)
        self.nonfinite += (~finite).to(torch.float64)
        # a non-finite step would turn the window's mean into nan: it is counted instead
        self.loss_sum += torch.where(finite, loss, torch.zeros_like(loss))
        for name, value in terms.items():
            value = value.reshape(()).to(torch.float64)
            total = self.terms.get(name)
            self.terms[name] = value if total is None else total + value
        if temperatures is not None:
            self.temperatures = temperatures
        self.steps += 1

    def read(self, ctx: DistContext) -> Window:
        """The window's numbers as Python values; starts a new window."""
        names = list(self.terms)
        parts = [self.loss_sum, self.nonfinite] + [self.terms[n] for n in names]
        if self.temperatures is not None:
            parts += list(self.temperatures.to(torch.float64))
        packed = torch.stack([p.to(self.device) for p in parts])
        if ctx.distributed:
            flag = packed[1:2].clone()
            torch.distributed.all_reduce(flag)
            packed = torch.cat([packed[:1], flag, packed[2:]])
        values = packed.tolist()
        steps = max(self.steps, 1)
        temps = tuple(values[2 + len(names):]) if self.temperatures is not None else None
        window = Window(steps=self.steps, loss_sum=values[0], nonfinite_steps=int(values[1]),
                        term_means={n: v / steps for n, v in zip(names, values[2:2 + len(names)])},
                        temperatures=temps)
        self._reset()
        return window


class EpochProgress:
    """Formats the periodic progress line from the windows read by :class:`StepMeter`; keeps the epoch's mean loss.

    :param epoch: 1-indexed epoch.
    :param num_epochs: total epochs of the run.
    :param steps: steps in this epoch.
    """

    def __init__(self, epoch: int, num_epochs: int, steps: int):
        self.epoch, self.num_epochs, self.steps = epoch, num_epochs, steps
        self.start = time.time()
        self.loss_sum, self.loss_count, self.skipped = 0.0, 0, 0
        self.window: Optional[Window] = None
        self.window_images, self.window_start = 0, time.time()
        self.images = 0  # of this process in the epoch (the summary's train_images multiplies by the world size)
        self.temps: Optional[Tuple[float, float, float]] = None

    def count_images(self, batch_size: int) -> None:
        self.window_images += batch_size
        self.images += batch_size

    def add_window(self, window: Window) -> None:
        """Take a window of steps read from the device."""
        self.loss_sum += window.loss_sum
        self.loss_count += window.steps - window.nonfinite_steps
        self.skipped += window.nonfinite_steps
        self.window = window
        if window.temperatures is not None:
            self.temps = window.temperatures

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.loss_count, 1)

    def line(self, step: int, lr: float, world_size: int) -> str:
        """The progress line after ``step`` (1-indexed), from the last window; resets the image counter."""
        now = time.time()
        window = self.window
        finite_steps = max(window.steps - window.nonfinite_steps, 1) if window is not None else 1
        loss = window.loss_sum / finite_steps if window is not None else float('nan')
        terms = ', '.join(f'{k} {v:.4f}' for k, v in window.term_means.items()) if window is not None else ''
        imgs = self.window_images * world_size / max(now - self.window_start, 1e-9)
        per_step = (now - self.start) / max(step, 1)
        eta_epoch = per_step * (self.steps - step)
        eta_total = eta_epoch + per_step * self.steps * (self.num_epochs - self.epoch)
        text = (f'Epoch {self.epoch}/{self.num_epochs}  step {step}/{self.steps}  '
                f'loss {loss:.4f}' + (f' ({terms})' if terms else ''))
        if self.temps is not None:
            text += f'  T mean {self.temps[0]:.3f} min {self.temps[1]:.3f} max {self.temps[2]:.3f}'
        if self.skipped:
            text += f'  skipped steps {self.skipped}'
        text += (f'  lr {lr:.6g}  {imgs:.1f} img/s  ETA epoch {format_duration(eta_epoch)} '
                 f'total {format_duration(eta_total)}')
        self.window_images, self.window_start = 0, now
        return text


@torch.no_grad()
def evaluate(model: nn.Module, data_loader, ctx: DistContext) -> Tuple[float, float, int]:
    """Top-1/top-5 accuracy (%) of ``model`` over ``data_loader``, summed over all ranks.

    :return: ``(top1, top5, number of samples seen)``.
    """
    was_training = model.training
    model.eval()
    # counted on the device and read once at the end: no synchronisation per batch
    counts = torch.zeros(3, dtype=torch.float64, device=ctx.device)
    for batch in data_loader:
        images, targets = batch[0], batch[1]
        images = images.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        outputs = model(images)
        k = min(5, outputs.shape[1])
        top = outputs.topk(k, dim=1).indices
        hits = top.eq(targets.view(-1, 1))
        counts += torch.stack([hits[:, :1].sum(), hits.sum(), torch.tensor(targets.shape[0], device=hits.device)])
    correct1, correct5, seen = all_reduce_sum(counts.tolist(), ctx)
    model.train(was_training)
    if seen == 0:
        return 0.0, 0.0, 0
    return 100.0 * correct1 / seen, 100.0 * correct5 / seen, int(seen)
