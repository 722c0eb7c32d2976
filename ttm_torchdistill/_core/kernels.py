r"""The unchecked core of the logit losses, shared by :mod:`ttm_torchdistill.functional` and the adapters of
:mod:`ttm_torchdistill.losses`.

Every function takes logits that are already checked (:mod:`ttm_torchdistill.checks`); :func:`evaluate` moves them
to the working precision (float32, float64 stays float64) with autocast off, standardises them when asked, resolves
the temperature once and runs a loss kernel. The public functions of :mod:`ttm_torchdistill.functional` check their
arguments on every call and then run the same code; the adapters check their hyperparameters once.

Imports nothing but torch and the standard library.
"""
import math
import warnings
from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import functional as F

from ..checks.values import Temperature

#: :math:`(1+\sqrt{3})/2`: with :math:`x = m/T` this makes :math:`x + x^2/2 = 1` (Matsuyama et al., 2025).
MAX_LOGIT_FACTOR = (1.0 + math.sqrt(3.0)) / 2.0
#: Standardisation eps, added to the standard deviation as in the authors' code (Sun et al., 2024).
STANDARDIZE_EPS = 1e-7
#: DIST eps, added to the product of the norms as in the authors' ``dist_kd.py``.
DIST_EPS = 1e-8
#: A temperature after checking and resolution: a float, or an (N, 1) tensor in the working precision.
Resolved = Union[float, Tensor]


def warmup_factor(epoch: Optional[int], warmup_epochs: int) -> float:
    return 1.0 if warmup_epochs == 0 else min(epoch / warmup_epochs, 1.0)


def working_precision(*tensors: Tensor):
    # Half-precision softmax underflows to exact zeros; float64 inputs keep their precision.
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return tuple(t.to(dtype) for t in tensors)


def no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def standardize_logits(logits: Tensor, eps: float = STANDARDIZE_EPS) -> Tensor:
    r"""Z-score each row of ``logits`` over the classes (logit standardisation).

    .. math::
        \hat z_{ij} = \frac{z_{ij} - \bar z_i}{\sigma_i + \epsilon}, \qquad
        \sigma_i = \sqrt{\tfrac{1}{C-1}\textstyle\sum_j (z_{ij} - \bar z_i)^2}

    Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024. Authors' code:
    https://github.com/sunshangquan/logit-standardization-KD (the unbiased standard deviation and ``eps``
    added after it follow that code, which Matsuyama et al. reuse).

    :param logits: :math:`z`, shape :math:`(N, C)`.
    :param eps: :math:`\epsilon`, added to the standard deviation.
    :return: :math:`\hat z`, shape :math:`(N, C)`.
    """
    std, mean = torch.std_mean(logits, dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


def peak_temperature(standardized_student: Tensor, standardized_teacher: Tensor, teacher_only_max: bool) -> Tensor:
    """The max-logit rule on already z-scored logits, shape (N, 1), without gradient."""
    with torch.no_grad():
        peak = standardized_teacher.detach().abs().amax(dim=1, keepdim=True)
        if not teacher_only_max:
            peak = torch.maximum(peak, standardized_student.detach().abs().amax(dim=1, keepdim=True))
        temperature = peak * MAX_LOGIT_FACTOR
        # constant logits have no peak: any T gives the same uniform teacher, and 0 would divide by zero
        return torch.where(temperature > 0, temperature, torch.ones_like(temperature))


def working_logits(student_logits: Tensor, teacher_logits: Tensor, standardize: bool) -> Tuple[Tensor, Tensor]:
    """Detach the teacher, move both to the working precision and optionally z-score them."""
    student_logits, teacher_logits = working_precision(student_logits, teacher_logits.detach())
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    return student_logits, teacher_logits


def resolve(student_logits: Tensor, teacher_logits: Tensor, temperature: Temperature, teacher_only_max: bool,
             standardized: bool) -> Resolved:
    """A checked temperature as a float or an (N, 1) tensor of the working logits' dtype and device, no gradient.

    ``'max_logit'`` reads the z-scored logits: the given ones when ``standardized``, else z-scored here."""
    n = student_logits.shape[0]
    if isinstance(temperature, str):
        with torch.no_grad():
            if standardized:
                return peak_temperature(student_logits, teacher_logits, teacher_only_max)
            return peak_temperature(standardize_logits(student_logits.detach()),
                                     standardize_logits(teacher_logits.detach()), teacher_only_max)
    if isinstance(temperature, Tensor):
        if temperature.numel() != n or (temperature.dim() == 2 and temperature.shape[1] != 1):
            raise ValueError(f'a per-sample temperature must have shape ({n},) or ({n}, 1) for {n} samples, '
                             f'got {tuple(temperature.shape)}')
        return temperature.detach().reshape(n, 1).to(student_logits)  # dtype and device
    return temperature


def evaluate(kernel: Callable[..., Tensor], student_logits: Tensor, teacher_logits: Tensor,
             temperature: Temperature, teacher_only_max: bool, standardize: bool,
              **hyperparameters) -> Tuple[Tensor, Resolved]:
    """Run ``kernel`` on the working logits with the temperature resolved once; return the loss and that
    temperature (a float or an (N, 1) tensor without gradient).

    Checks nothing: the caller has checked the logits (and targets) and the hyperparameters."""
    with no_autocast(student_logits.device):
        student_logits, teacher_logits = working_logits(student_logits, teacher_logits, standardize)
        temperature = resolve(student_logits, teacher_logits, temperature, teacher_only_max, standardize)
        return kernel(student_logits, teacher_logits, temperature, **hyperparameters), temperature


def kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row from log-probabilities (one fused kernel; log_p is finite by construction)."""
    return F.kl_div(log_q, log_p, reduction='none', log_target=True).sum(dim=1)


def squared_per_sample(temperature: Resolved) -> Resolved:
    return temperature.squeeze(1) ** 2 if isinstance(temperature, Tensor) else temperature ** 2


def transformed_teacher(teacher_logits: Tensor, temperature: Resolved):
    """log of the power-transformed teacher sigma(gamma v) and log U_gamma(p^t), both in log space.

    p^gamma / sum p^gamma = sigma(gamma v), and log U = log sum_j p_j^gamma = lse(gamma v) - gamma lse(v), with
    gamma = 1/T. pow(softmax(v), gamma) would underflow to 0 in low precision and make U too small (and 0^gamma
    has an infinite derivative). One logsumexp serves both outputs.
    """
    scaled = teacher_logits / temperature
    log_norm = torch.logsumexp(scaled, dim=1, keepdim=True)
    log_u = log_norm - torch.logsumexp(teacher_logits, dim=1, keepdim=True) / temperature
    return scaled - log_norm, log_u.squeeze(1)


def ttm(student_logits: Tensor, teacher_logits: Tensor, temperature: Resolved, *, weighted: bool) -> Tensor:
    if weighted:
        log_p_hat, log_u = transformed_teacher(teacher_logits, temperature)
        kl = log_u.exp() * kl_rows(log_p_hat, F.log_softmax(student_logits, dim=1))
    else:
        kl = kl_rows(F.log_softmax(teacher_logits / temperature, dim=1), F.log_softmax(student_logits, dim=1))
    return kl.mean()


def pearson_rows(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """Pearson correlation of matching rows, eps added to the product of the norms (authors' code)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist(student_logits: Tensor, teacher_logits: Tensor, temperature: Resolved, *, beta: float, gamma: float,
          eps: float) -> Tensor:
    y_s = F.softmax(student_logits / temperature, dim=1)
    y_t = F.softmax(teacher_logits / temperature, dim=1)
    scale = squared_per_sample(temperature)
    loss = beta * (scale * (1.0 - pearson_rows(y_s, y_t, eps))).mean()
    if gamma > 0:
        if student_logits.shape[0] < 2:
            warnings.warn('DIST intra-class relation needs at least 2 samples per batch (it correlates each '
                          'class across the batch); got a batch of 1, so that term is left out for this '
                          'batch.', RuntimeWarning, stacklevel=4)
        else:
            mean_scale = scale.mean() if isinstance(scale, Tensor) else scale
            loss = loss + gamma * mean_scale * (1.0 - pearson_rows(y_s.t(), y_t.t(), eps).mean())
    return loss


def kd(student_logits: Tensor, teacher_logits: Tensor, temperature: Resolved) -> Tensor:
    kl = kl_rows(F.log_softmax(teacher_logits / temperature, dim=1),
                  F.log_softmax(student_logits / temperature, dim=1))
    return (squared_per_sample(temperature) * kl).mean()


def decouple(scaled_logits: Tensor, target: Tensor, non_target: Tensor):
    """log of the binary split (p_target, 1 - p_target) and log-softmax over the non-target classes.

    1 - p_target is taken as a logsumexp of the non-target logits, never as log1p(-p): a confident
    teacher has p_target close to 1, where the subtraction would lose every digit.
    """
    log_total = torch.logsumexp(scaled_logits, dim=1, keepdim=True)
    rest = scaled_logits.gather(1, non_target)
    log_rest = torch.logsumexp(rest, dim=1, keepdim=True)
    binary = torch.cat([scaled_logits.gather(1, target) - log_total, log_rest - log_total], dim=1)
    return binary, rest - log_rest


def dkd(student_logits: Tensor, teacher_logits: Tensor, temperature: Resolved, *, targets: Tensor, alpha: float,
         beta: float, factor: float) -> Tensor:
    n, c = student_logits.shape
    target = targets.long().unsqueeze(1)
    # column indices of the C-1 non-target classes of each row (gather is far cheaper than masked_select)
    columns = torch.arange(c - 1, device=student_logits.device).expand(n, c - 1)
    non_target = columns + (columns >= target).long()
    s_binary, s_rest = decouple(student_logits / temperature, target, non_target)
    t_binary, t_rest = decouple(teacher_logits / temperature, target, non_target)
    per_sample = alpha * kl_rows(t_binary, s_binary) + beta * kl_rows(t_rest, s_rest)
    return factor * (squared_per_sample(temperature) * per_sample).mean()
