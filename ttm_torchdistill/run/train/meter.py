"""What a training step leaves on the device for the progress lines: the loss, its sub-terms, temperatures, skips.

``WeightedSumLoss`` returns only its total; each sub-term's value is captured with a forward hook on the sub-term's
criterion module, so the breakdown costs no extra computation. Losses with the ``'max_logit'`` temperature expose
the last batch's per-sample temperatures as ``last_temperature`` (a 1-D tensor), summarised as mean/min/max. All of
it stays on the device until :class:`StepMeter` reads a window of steps back in one synchronisation.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..._core.criterion_walk import iter_loss_modules
from ..machine.context import DistContext


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
    #: fp16: optimizer steps the gradient scaler skipped in this window, and in a row up to its end (across windows)
    skipped_steps: int = 0
    skipped_in_a_row: int = 0


class StepMeter:
    """Per-step numbers accumulated on the device and read back once per window (one host synchronisation).

    A training step must not wait for the device: ``loss.item()`` every step stalls the GPU's queue. Here the
    loss, each sub-term, the non-finite flag and the last temperatures are added into device tensors, and
    :meth:`read` copies them to the host in one ``tolist()`` (all-reducing the non-finite count across ranks in the
    same call, so a NaN on any rank stops every rank at the same step).
    """

    def __init__(self, device: torch.device):
        self.device = device
        # steps skipped in a row by the fp16 gradient scaler: carried from window to window until a step is taken
        self.skipped_in_a_row = torch.zeros((), dtype=torch.float64, device=device)
        self._reset()

    def _reset(self) -> None:
        self.steps = 0
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.nonfinite = torch.zeros((), dtype=torch.float64, device=self.device)
        self.skipped = torch.zeros((), dtype=torch.float64, device=self.device)
        self.terms: Dict[str, torch.Tensor] = OrderedDict()
        self.temperatures: Optional[torch.Tensor] = None

    def add(self, loss: torch.Tensor, terms: Dict[str, torch.Tensor], temperatures: Optional[torch.Tensor],
            skipped: Optional[torch.Tensor] = None) -> None:
        """Add one step (no synchronisation: every operation is queued on the device).

        :param skipped: fp16: True when the gradient scaler skipped this step's update (None: no update was due).
        """
        if skipped is not None:
            skipped = skipped.to(torch.float64)
            self.skipped += skipped
            self.skipped_in_a_row = (self.skipped_in_a_row + 1.0) * skipped
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
        parts = [self.loss_sum, self.nonfinite, self.skipped, self.skipped_in_a_row] + [self.terms[n] for n in names]
        if self.temperatures is not None:
            parts += list(self.temperatures.to(torch.float64))
        packed = torch.stack([p.to(self.device) for p in parts])
        if ctx.distributed:
            flag = packed[1:2].clone()
            torch.distributed.all_reduce(flag)
            packed = torch.cat([packed[:1], flag, packed[2:]])
        values = packed.tolist()
        steps = max(self.steps, 1)
        first_term = 4
        temps = tuple(values[first_term + len(names):]) if self.temperatures is not None else None
        window = Window(steps=self.steps, loss_sum=values[0], nonfinite_steps=int(values[1]),
                        term_means={n: v / steps for n, v in zip(names, values[first_term:first_term + len(names)])},
                        temperatures=temps, skipped_steps=int(values[2]), skipped_in_a_row=int(values[3]))
        self._reset()
        return window
