"""What the user sees while training: per-term losses, adaptive temperature, lr, img/s, ETA; and evaluation.

``WeightedSumLoss`` returns only its total; each sub-term's value is captured with a forward hook on the sub-term's
criterion module, so the breakdown costs no extra computation. Losses with the ``'max_logit'`` temperature expose
the last batch's per-sample temperatures as ``last_temperature`` (a 1-D tensor), summarised as mean/min/max.
"""
import datetime
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..processes import iter_loss_modules
from .distributed import DistContext, all_reduce_sum


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``'1:02:05'``."""
    return str(datetime.timedelta(seconds=int(max(seconds, 0.0))))


class LossTermRecorder:
    """Forward hooks recording each ``WeightedSumLoss`` sub-term's weighted value (its share of the total).

    :param criterion: the box's criterion; non-``WeightedSumLoss`` criteria record nothing.
    """

    def __init__(self, criterion: nn.Module):
        self.criterion = criterion
        self.values: Dict[str, float] = OrderedDict()
        self.handles = []
        for name, term in getattr(criterion, 'term_dict', dict()).items():
            module, weight = term
            if isinstance(module, nn.Module):
                self.handles.append(module.register_forward_hook(self._hook(name, weight)))

    def _hook(self, name, weight):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.numel() == 1:
                self.values[name] = float(weight) * output.detach().item() \
                    if isinstance(weight, (int, float)) else output.detach().item()
        return record

    def pop(self) -> Dict[str, float]:
        """Values recorded since the last call."""
        values, self.values = self.values, OrderedDict()
        return values

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def temperature_stats(criterion: nn.Module) -> Optional[Tuple[float, float, float]]:
    """Mean, min, max over every loss module's ``last_temperature`` (None when no module has one)."""
    temps = []
    for module in iter_loss_modules(criterion):
        value = getattr(module, 'last_temperature', None)
        if isinstance(value, torch.Tensor) and value.numel() > 0:
            temps.append(value.detach().float().flatten().cpu())
    if not temps:
        return None
    all_temps = torch.cat(temps)
    return all_temps.mean().item(), all_temps.min().item(), all_temps.max().item()


class EpochProgress:
    """Accumulates one epoch's per-step numbers and formats the periodic progress line.

    :param epoch: 1-indexed epoch.
    :param num_epochs: total epochs of the run.
    :param steps: steps in this epoch.
    """

    def __init__(self, epoch: int, num_epochs: int, steps: int):
        self.epoch, self.num_epochs, self.steps = epoch, num_epochs, steps
        self.start = time.time()
        self.loss_sum, self.loss_count = 0.0, 0
        self.window: Dict[str, List[float]] = OrderedDict()
        self.window_images, self.window_start = 0, time.time()
        self.temps: Optional[Tuple[float, float, float]] = None

    def update(self, loss: float, terms: Dict[str, float], batch_size: int,
               temps: Optional[Tuple[float, float, float]]) -> None:
        self.loss_sum += loss
        self.loss_count += 1
        self.window.setdefault('loss', []).append(loss)
        for name, value in terms.items():
            self.window.setdefault(name, []).append(value)
        self.window_images += batch_size
        if temps is not None:
            self.temps = temps

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.loss_count, 1)

    def line(self, step: int, lr: float, world_size: int) -> str:
        """The progress line after ``step`` (1-indexed); resets the averaging window."""
        now = time.time()
        means = {k: sum(v) / len(v) for k, v in self.window.items() if v}
        terms = ', '.join(f'{k} {v:.4f}' for k, v in means.items() if k != 'loss')
        imgs = self.window_images * world_size / max(now - self.window_start, 1e-9)
        per_step = (now - self.start) / max(step, 1)
        eta_epoch = per_step * (self.steps - step)
        eta_total = eta_epoch + per_step * self.steps * (self.num_epochs - self.epoch)
        text = (f'Epoch {self.epoch}/{self.num_epochs}  step {step}/{self.steps}  '
                f'loss {means.get("loss", float("nan")):.4f}' + (f' ({terms})' if terms else ''))
        if self.temps is not None:
            text += f'  T mean {self.temps[0]:.3f} min {self.temps[1]:.3f} max {self.temps[2]:.3f}'
        text += (f'  lr {lr:.6g}  {imgs:.1f} img/s  ETA epoch {format_duration(eta_epoch)} '
                 f'total {format_duration(eta_total)}')
        self.window = OrderedDict()
        self.window_images, self.window_start = 0, now
        return text


@torch.no_grad()
def evaluate(model: nn.Module, data_loader, ctx: DistContext) -> Tuple[float, float, int]:
    """Top-1/top-5 accuracy (%) of ``model`` over ``data_loader``, summed over all ranks.

    :return: ``(top1, top5, number of samples seen)``.
    """
    was_training = model.training
    model.eval()
    correct1 = correct5 = seen = 0.0
    for batch in data_loader:
        images, targets = batch[0], batch[1]
        images = images.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        outputs = model(images)
        k = min(5, outputs.shape[1])
        top = outputs.topk(k, dim=1).indices
        hits = top.eq(targets.view(-1, 1))
        correct1 += hits[:, :1].sum().item()
        correct5 += hits.sum().item()
        seen += targets.shape[0]
    correct1, correct5, seen = all_reduce_sum([correct1, correct5, seen], ctx)
    model.train(was_training)
    if seen == 0:
        return 0.0, 0.0, 0
    return 100.0 * correct1 / seen, 100.0 * correct5 / seen, int(seen)
