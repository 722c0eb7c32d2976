r"""The distillation losses of the plugin as pure functions of logits.

Every loss takes student and teacher logits of shape :math:`(N, C)` and keyword-only hyperparameters,
and returns one thing: the loss averaged over the batch, a 0-dim tensor. Teacher logits never receive
gradients. The math runs in float32 (float64 inputs stay float64) with autocast disabled, so the losses
stay finite under bfloat16/float16 autocast and for logits as large as :math:`\pm 100`.

Temperatures are either a positive number, a per-sample tensor of shape :math:`(N,)` or
:math:`(N, 1)`, or the string ``'max_logit'`` for the adaptive temperature of Matsuyama et al. (2025),
see :func:`max_logit_temperature`.

**The temperature has its own function.** A caller who wants to see the temperatures a loss uses (to log
them, say) calls :func:`resolve_temperature` and passes the resulting :math:`(N,)` tensor to the loss
as its ``temperature``. This gives the same loss and gradient, bit for bit, as ``'max_logit'``: the
temperature is a function of the logits alone, computed without gradient from the same z-scored logits
in the same precision. Each loss therefore has a single return type, and no flag that changes it, rather
than a second family of ``*_with_temperature`` functions returning a named tuple: the temperature is an
input of the loss, not one of its results.

**Checks.** Every public function checks all of its arguments, so it is safe to call with anything. Most
checks read only metadata (types, shapes, dtypes); two read tensor values back to the host, which on
a GPU waits for the device: a temperature given as a tensor must be positive, and :func:`dkd_loss`'s
targets must be valid class indices. The torchdistill adapters in :mod:`ttm_torchdistill.losses` check
their hyperparameters once, at construction, and then call the same unchecked core as these functions,
with only the metadata checks per call and DKD's target range asserted on the device.

This module imports nothing but torch, the standard library and :mod:`ttm_torchdistill._mlkd` (MLKD's unchecked
core, which imports only torch).
"""
import math
import numbers
import warnings
from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import functional as F

from . import _mlkd

__all__ = [
    'MAX_LOGIT', 'MAX_LOGIT_FACTOR', 'Temperature',
    'standardize_logits', 'max_logit_temperature', 'resolve_temperature',
    'check_temperature', 'check_teacher_only_max', 'check_weight', 'check_flag', 'check_warmup_epochs',
    'check_epoch', 'dkd_warmup_factor',
    'ttm_loss', 'wttm_loss', 'dist_loss', 'kd_loss', 'dkd_loss', 'mlkd_loss',
]

MAX_LOGIT = 'max_logit'
#: :math:`(1+\sqrt{3})/2`: with :math:`x = m/T` this makes :math:`x + x^2/2 = 1` (Matsuyama et al., 2025).
MAX_LOGIT_FACTOR = (1.0 + math.sqrt(3.0)) / 2.0
#: Standardisation eps, added to the standard deviation as in the authors' code (Sun et al., 2024).
STANDARDIZE_EPS = 1e-7
#: DIST eps, added to the product of the norms as in the authors' ``dist_kd.py``.
DIST_EPS = 1e-8

Temperature = Union[float, str, Tensor]
#: A temperature after checking and resolution: a float, or an (N, 1) tensor in the working precision.
_Resolved = Union[float, Tensor]


# ----------------------------------------------------------------------------------------------
# Argument checks: each error names the parameter, what was expected and what was given.
# ----------------------------------------------------------------------------------------------

def _check_logits(student_logits: Tensor, teacher_logits: Tensor,
                  names: Tuple[str, str] = ('student_logits', 'teacher_logits')) -> None:
    """Types, dtypes and shapes of the logits: metadata only, never a read of the values."""
    for name, value in zip(names, (student_logits, teacher_logits)):
        if not isinstance(value, Tensor):
            raise TypeError(f'{name} must be a torch.Tensor of shape (N, C), got {type(value).__name__}')
        if not value.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, got dtype {value.dtype}')
        if value.dim() != 2:
            raise ValueError(f'{name} must be 2-D logits of shape (N, C), got shape {tuple(value.shape)}')
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f'{names[0]} and {names[1]} must have the same shape (N, C), got '
                         f'{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}')
    n, c = student_logits.shape
    if n < 1 or c < 2:
        raise ValueError(f'logits must have at least 1 sample and 2 classes, got shape {(n, c)}')


def check_weight(value: float, name: str) -> float:
    """Return ``value`` as a float if it is a finite, non-negative real number; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a non-negative real number, got {value!r} ({type(value).__name__})')
    if not math.isfinite(value) or value < 0:
        raise ValueError(f'{name} must be a finite, non-negative number, got {value!r}')
    return float(value)


def check_flag(value: bool, name: str) -> bool:
    """Return ``value`` if it is ``True`` or ``False``; raise ``TypeError`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, got {value!r}')
    return value


def check_temperature(temperature: Temperature, name: str = 'temperature') -> Temperature:
    """Validate a temperature: a positive finite number, ``'max_logit'`` or a positive tensor.

    A tensor's values are read back to the host to check them (on a GPU this waits for the device).

    :return: the temperature, as a float when it is a number.
    """
    if isinstance(temperature, str):
        if temperature != MAX_LOGIT:
            raise ValueError(f"{name} must be a positive number or '{MAX_LOGIT}', got {temperature!r}")
        return temperature
    if isinstance(temperature, Tensor):
        if not temperature.is_floating_point() or temperature.dim() > 2:
            raise ValueError(f'{name} as a tensor must be floating point of shape (N,) or (N, 1), '
                             f'got dtype {temperature.dtype} and shape {tuple(temperature.shape)}')
        if not bool((torch.isfinite(temperature) & (temperature > 0)).all()):
            raise ValueError(f'{name} must be positive and finite everywhere, got {temperature}')
        return temperature
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"{name} must be a positive number or '{MAX_LOGIT}', "
                        f'got {temperature!r} ({type(temperature).__name__})')
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{name} must be a positive number or '{MAX_LOGIT}', got {temperature!r}")
    return float(temperature)


def check_teacher_only_max(teacher_only_max: bool, temperature: Temperature) -> bool:
    """Return ``teacher_only_max`` if it is a bool that fits ``temperature`` (``True`` needs ``'max_logit'``)."""
    check_flag(teacher_only_max, 'teacher_only_max')
    if teacher_only_max and not isinstance(temperature, str):
        raise ValueError(f"teacher_only_max=True needs temperature='{MAX_LOGIT}', got {temperature!r}")
    return teacher_only_max


def _check_temperature_args(temperature: Temperature, teacher_only_max: bool) -> Temperature:
    temperature = check_temperature(temperature)
    check_teacher_only_max(teacher_only_max, temperature)
    return temperature


def _check_targets(targets: Tensor, n: int, c: int) -> None:
    """Type, dtype and shape of DKD's targets: metadata only (see the two range checks below)."""
    if not isinstance(targets, Tensor) or targets.dtype not in (torch.int64, torch.int32):
        raise TypeError('targets must be an integer tensor of class indices, got '
                        f'{getattr(targets, "dtype", type(targets).__name__)}')
    if targets.shape != (n,):
        raise ValueError(f'targets must have shape ({n},) to match the logits, got {tuple(targets.shape)}')


def _check_target_range(targets: Tensor, c: int) -> None:
    """Raise ``ValueError`` naming the offending range; reads the minimum and maximum back in one copy."""
    low, high = torch.stack(torch.aminmax(targets)).tolist()
    if low < 0 or high >= c:
        raise ValueError(f'targets must be class indices in [0, {c - 1}], got values in [{low}, {high}]')


def _assert_target_range_on_device(targets: Tensor, c: int) -> None:
    """The range check of the hot path: asserted by the device, without reading a value back.

    ``torch._assert_async`` raises ``RuntimeError`` at once on the CPU; on CUDA it queues a device-side
    assert, so a bad target surfaces as "device-side assert triggered" at a later CUDA call and leaves
    that process's CUDA context unusable: the same failure as ``F.cross_entropy`` (and DKD's own gather)
    with an out-of-range target, and the run stops either way.
    """
    _assert_async(((targets >= 0) & (targets < c)).all(), f'targets must be class indices in [0, {c - 1}]')


def _assert_async(condition: Tensor, message: str) -> None:
    # torch._assert_async has existed since torch 1.9; without it, gather's own bounds check still stops a run
    if hasattr(torch, '_assert_async'):
        torch._assert_async(condition, message)


def check_warmup_epochs(warmup_epochs: int) -> int:
    """Return ``warmup_epochs`` if it is a non-negative integer; raise otherwise."""
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f'warmup_epochs must be a non-negative integer, got {warmup_epochs!r}')
    return warmup_epochs


def check_epoch(epoch: int) -> int:
    """Return ``epoch`` if it is a non-negative integer (epochs count from 1); raise otherwise."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f'epoch must be a non-negative integer (counted from 1), got {epoch!r}')
    return epoch


def _warmup_factor(epoch: Optional[int], warmup_epochs: int) -> float:
    return 1.0 if warmup_epochs == 0 else min(epoch / warmup_epochs, 1.0)


def dkd_warmup_factor(epoch: Optional[int], warmup_epochs: int) -> float:
    """DKD's linear warm-up factor ``min(epoch / warmup_epochs, 1)`` (epochs counted from 1, as mdistiller)."""
    if check_warmup_epochs(warmup_epochs) == 0:
        return 1.0
    if epoch is None:
        raise ValueError(f'warmup_epochs={warmup_epochs} needs the current epoch (counted from 1), got epoch=None')
    return _warmup_factor(check_epoch(epoch), warmup_epochs)


# ----------------------------------------------------------------------------------------------
# Precision, standardisation and the max-logit adaptive temperature
# ----------------------------------------------------------------------------------------------

def _working_precision(*tensors: Tensor):
    # Half-precision softmax underflows to exact zeros; float64 inputs keep their precision.
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return tuple(t.to(dtype) for t in tensors)


def _no_autocast(device: torch.device):
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


def _peak_temperature(standardized_student: Tensor, standardized_teacher: Tensor, teacher_only_max: bool) -> Tensor:
    """The max-logit rule on already z-scored logits, shape (N, 1), without gradient."""
    with torch.no_grad():
        peak = standardized_teacher.detach().abs().amax(dim=1, keepdim=True)
        if not teacher_only_max:
            peak = torch.maximum(peak, standardized_student.detach().abs().amax(dim=1, keepdim=True))
        temperature = peak * MAX_LOGIT_FACTOR
        # constant logits have no peak: any T gives the same uniform teacher, and 0 would divide by zero
        return torch.where(temperature > 0, temperature, torch.ones_like(temperature))


def max_logit_temperature(student_logits: Tensor, teacher_logits: Tensor, *,
                          teacher_only_max: bool = False) -> Tensor:
    r"""Per-sample adaptive temperature from the maximum standardised logit.

    .. math::
        T_i = \frac{1 + \sqrt{3}}{2} \max_j \max\left(|\hat z^s_{ij}|, |\hat z^t_{ij}|\right)

    where :math:`\hat z` are the z-scored logits (:func:`standardize_logits`). With
    :math:`m_i = \max_j |\hat z_{ij}|` and :math:`x = m_i / T_i`, the factor makes
    :math:`x + x^2/2 = 1`. Computed without gradient.

    The temperature is always derived from z-scored logits, whatever the loss then softens: this keeps
    it invariant to the scale and shift of the logits. A row with no maximum to speak of (all standardised
    logits zero, i.e. constant logits in every model consulted) gets :math:`T_i = 1`: its teacher
    distribution is uniform at any temperature, and dividing by zero would give NaN.

    Matsuyama et al., "Adaptive Temperature Based on Logits Correlation in Knowledge Distillation",
    arXiv:2503.09030 (2025). Authors' code: https://github.com/kei813121/atkd (``calc_maxlogit_temp``).

    :param student_logits: :math:`z^s`, shape :math:`(N, C)`.
    :param teacher_logits: :math:`z^t`, shape :math:`(N, C)`.
    :param teacher_only_max: use :math:`\max_j |\hat z^t_{ij}|` only.
    :return: :math:`T`, shape :math:`(N, 1)` (broadcasts against the logits), in the working precision
        (float32 or float64). :func:`resolve_temperature` gives the same values with shape :math:`(N,)`.

    .. warning::
        The abstract says the method "only refers to the maximum logit generated by a teacher model";
        the authors' code takes the maximum over both models. The default follows the code;
        ``teacher_only_max=True`` follows the abstract.
    """
    _check_logits(student_logits, teacher_logits)
    check_flag(teacher_only_max, 'teacher_only_max')
    with torch.no_grad(), _no_autocast(student_logits.device):
        student_logits, teacher_logits = _working_precision(student_logits.detach(), teacher_logits.detach())
        return _resolve(student_logits, teacher_logits, MAX_LOGIT, teacher_only_max, standardized=False)


def _working_logits(student_logits: Tensor, teacher_logits: Tensor, standardize: bool) -> Tuple[Tensor, Tensor]:
    """Detach the teacher, move both to the working precision and optionally z-score them."""
    student_logits, teacher_logits = _working_precision(student_logits, teacher_logits.detach())
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    return student_logits, teacher_logits


def _resolve(student_logits: Tensor, teacher_logits: Tensor, temperature: Temperature, teacher_only_max: bool,
             standardized: bool) -> _Resolved:
    """A checked temperature as a float or an (N, 1) tensor of the working logits' dtype and device, no gradient.

    ``'max_logit'`` reads the z-scored logits: the given ones when ``standardized``, else z-scored here."""
    n = student_logits.shape[0]
    if isinstance(temperature, str):
        with torch.no_grad():
            if standardized:
                return _peak_temperature(student_logits, teacher_logits, teacher_only_max)
            return _peak_temperature(standardize_logits(student_logits.detach()),
                                     standardize_logits(teacher_logits.detach()), teacher_only_max)
    if isinstance(temperature, Tensor):
        if temperature.numel() != n or (temperature.dim() == 2 and temperature.shape[1] != 1):
            raise ValueError(f'a per-sample temperature must have shape ({n},) or ({n}, 1) for {n} samples, '
                             f'got {tuple(temperature.shape)}')
        return temperature.detach().reshape(n, 1).to(student_logits)  # dtype and device
    return temperature


def resolve_temperature(student_logits: Tensor, teacher_logits: Tensor, temperature: Temperature, *,
                        teacher_only_max: bool = False) -> Tensor:
    r"""The per-sample temperatures a loss of this module uses for these logits.

    .. math::
        T_i = \frac{1 + \sqrt{3}}{2} \max_j \max\left(|\hat z^s_{ij}|, |\hat z^t_{ij}|\right)
        \quad \text{(max-logit)}, \qquad T_i = T \quad \text{(a number } T\text{)}

    with :math:`\hat z` the z-scored logits (:func:`max_logit_temperature`); a tensor is returned as given.

    Passing the result back as the ``temperature`` of any loss here gives the same value and gradient, bit
    for bit, as passing ``temperature`` itself: this is how to log the adaptive temperature of a batch,
    ``T = resolve_temperature(s, t, 'max_logit'); loss = kd_loss(s, t, temperature=T)``. The max-logit
    rule reads z-scored logits whether or not the loss standardises, so one :math:`T` serves both.

    Matsuyama et al., "Adaptive Temperature Based on Logits Correlation in Knowledge Distillation",
    arXiv:2503.09030 (2025). Authors' code: https://github.com/kei813121/atkd (``calc_maxlogit_temp``).

    :param student_logits: :math:`z^s`, shape :math:`(N, C)`.
    :param teacher_logits: :math:`z^t`, shape :math:`(N, C)`.
    :param temperature: a positive number, ``'max_logit'``, or a positive tensor of shape :math:`(N,)` or
        :math:`(N, 1)`.
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher only.
    :return: :math:`T`, shape :math:`(N,)`, detached, on the logits' device in the working precision
        (float32, or float64 for float64 logits); a number is broadcast to every sample.
    """
    _check_logits(student_logits, teacher_logits)
    temperature = _check_temperature_args(temperature, teacher_only_max)
    with torch.no_grad(), _no_autocast(student_logits.device):
        student_logits, teacher_logits = _working_precision(student_logits.detach(), teacher_logits.detach())
        resolved = _resolve(student_logits, teacher_logits, temperature, teacher_only_max, standardized=False)
        n = student_logits.shape[0]
        if isinstance(resolved, Tensor):
            return resolved.reshape(n)
        return torch.full((n,), resolved, dtype=student_logits.dtype, device=student_logits.device)


# ----------------------------------------------------------------------------------------------
# The unchecked core, shared by the public functions below and the adapters of losses.py
# ----------------------------------------------------------------------------------------------

def _evaluate(kernel: Callable[..., Tensor], student_logits: Tensor, teacher_logits: Tensor,
              temperature: Temperature, teacher_only_max: bool, standardize: bool,
              **hyperparameters) -> Tuple[Tensor, _Resolved]:
    """Run ``kernel`` on the working logits with the temperature resolved once; return the loss and that
    temperature (a float or an (N, 1) tensor without gradient).

    Checks nothing: the caller has checked the logits (and targets) and the hyperparameters."""
    with _no_autocast(student_logits.device):
        student_logits, teacher_logits = _working_logits(student_logits, teacher_logits, standardize)
        temperature = _resolve(student_logits, teacher_logits, temperature, teacher_only_max, standardize)
        return kernel(student_logits, teacher_logits, temperature, **hyperparameters), temperature


def _kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row from log-probabilities (one fused kernel; log_p is finite by construction)."""
    return F.kl_div(log_q, log_p, reduction='none', log_target=True).sum(dim=1)


def _squared_per_sample(temperature: _Resolved) -> _Resolved:
    return temperature.squeeze(1) ** 2 if isinstance(temperature, Tensor) else temperature ** 2


def _transformed_teacher(teacher_logits: Tensor, temperature: _Resolved):
    """log of the power-transformed teacher sigma(gamma v) and log U_gamma(p^t), both in log space.

    p^gamma / sum p^gamma = sigma(gamma v), and log U = log sum_j p_j^gamma = lse(gamma v) - gamma lse(v), with
    gamma = 1/T. pow(softmax(v), gamma) would underflow to 0 in low precision and make U too small (and 0^gamma
    has an infinite derivative). One logsumexp serves both outputs.
    """
    scaled = teacher_logits / temperature
    log_norm = torch.logsumexp(scaled, dim=1, keepdim=True)
    log_u = log_norm - torch.logsumexp(teacher_logits, dim=1, keepdim=True) / temperature
    return scaled - log_norm, log_u.squeeze(1)


def _ttm(student_logits: Tensor, teacher_logits: Tensor, temperature: _Resolved, *, weighted: bool) -> Tensor:
    if weighted:
        log_p_hat, log_u = _transformed_teacher(teacher_logits, temperature)
        kl = log_u.exp() * _kl_rows(log_p_hat, F.log_softmax(student_logits, dim=1))
    else:
        kl = _kl_rows(F.log_softmax(teacher_logits / temperature, dim=1), F.log_softmax(student_logits, dim=1))
    return kl.mean()


def _pearson_rows(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """Pearson correlation of matching rows, eps added to the product of the norms (authors' code)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def _dist(student_logits: Tensor, teacher_logits: Tensor, temperature: _Resolved, *, beta: float, gamma: float,
          eps: float) -> Tensor:
    y_s = F.softmax(student_logits / temperature, dim=1)
    y_t = F.softmax(teacher_logits / temperature, dim=1)
    scale = _squared_per_sample(temperature)
    loss = beta * (scale * (1.0 - _pearson_rows(y_s, y_t, eps))).mean()
    if gamma > 0:
        if student_logits.shape[0] < 2:
            warnings.warn('DIST intra-class relation needs at least 2 samples per batch (it correlates each '
                          'class across the batch); got a batch of 1, so that term is left out for this '
                          'batch.', RuntimeWarning, stacklevel=4)
        else:
            mean_scale = scale.mean() if isinstance(scale, Tensor) else scale
            loss = loss + gamma * mean_scale * (1.0 - _pearson_rows(y_s.t(), y_t.t(), eps).mean())
    return loss


def _kd(student_logits: Tensor, teacher_logits: Tensor, temperature: _Resolved) -> Tensor:
    kl = _kl_rows(F.log_softmax(teacher_logits / temperature, dim=1),
                  F.log_softmax(student_logits / temperature, dim=1))
    return (_squared_per_sample(temperature) * kl).mean()


def _decouple(scaled_logits: Tensor, target: Tensor, non_target: Tensor):
    """log of the binary split (p_target, 1 - p_target) and log-softmax over the non-target classes.

    1 - p_target is taken as a logsumexp of the non-target logits, never as log1p(-p): a confident
    teacher has p_target close to 1, where the subtraction would lose every digit.
    """
    log_total = torch.logsumexp(scaled_logits, dim=1, keepdim=True)
    rest = scaled_logits.gather(1, non_target)
    log_rest = torch.logsumexp(rest, dim=1, keepdim=True)
    binary = torch.cat([scaled_logits.gather(1, target) - log_total, log_rest - log_total], dim=1)
    return binary, rest - log_rest


def _dkd(student_logits: Tensor, teacher_logits: Tensor, temperature: _Resolved, *, targets: Tensor, alpha: float,
         beta: float, factor: float) -> Tensor:
    n, c = student_logits.shape
    target = targets.long().unsqueeze(1)
    # column indices of the C-1 non-target classes of each row (gather is far cheaper than masked_select)
    columns = torch.arange(c - 1, device=student_logits.device).expand(n, c - 1)
    non_target = columns + (columns >= target).long()
    s_binary, s_rest = _decouple(student_logits / temperature, target, non_target)
    t_binary, t_rest = _decouple(teacher_logits / temperature, target, non_target)
    per_sample = alpha * _kl_rows(t_binary, s_binary) + beta * _kl_rows(t_rest, s_rest)
    return factor * (_squared_per_sample(temperature) * per_sample).mean()


# ----------------------------------------------------------------------------------------------
# The public losses: check every argument, then run the core
# ----------------------------------------------------------------------------------------------

def ttm_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: Temperature,
             teacher_only_max: bool = False) -> Tensor:
    r"""Transformed Teacher Matching: KL from the temperature-scaled teacher to the plain student.

    .. math::
        \mathcal{L}_{TTM} = \frac{1}{N}\sum_{i=1}^{N} D_{KL}\left(\hat p^t_i \,\|\, q_i\right), \quad
        \hat p^t_{ij} = \frac{(p^t_{ij})^{\gamma}}{\sum_k (p^t_{ik})^{\gamma}} = \sigma(\gamma v_i)_j, \quad
        q_i = \sigma(z_i), \quad \gamma = 1/T

    No :math:`T^2` factor: the paper's :math:`\beta` (Tables 8-10) is the weight of this term.

    Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching", ICLR 2024 (Eq. 2,
    Algorithm 1). Authors' code: https://github.com/zkxufo/TTM (``distiller_zoo/ttm.py``).

    :param student_logits: :math:`z`, shape :math:`(N, C)`.
    :param teacher_logits: :math:`v`, shape :math:`(N, C)`; detached.
    :param temperature: :math:`T = 1/\gamma` of the teacher-side power transform (the paper tunes
        :math:`\gamma`): a number, a per-sample tensor of shape :math:`(N,)`, or ``'max_logit'``
        (:func:`max_logit_temperature`).
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher only.
    :return: :math:`\mathcal{L}_{TTM}`, a 0-dim tensor.
    """
    _check_logits(student_logits, teacher_logits)
    temperature = _check_temperature_args(temperature, teacher_only_max)
    return _evaluate(_ttm, student_logits, teacher_logits, temperature, teacher_only_max, False, weighted=False)[0]


def wttm_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: Temperature,
              teacher_only_max: bool = False) -> Tensor:
    r"""Weighted TTM: each sample's TTM divergence weighted by the teacher's power sum.

    .. math::
        \mathcal{L}_{WTTM} = \frac{1}{N}\sum_{i=1}^{N} U_{\gamma}(p^t_i)\, D_{KL}\left(\hat p^t_i \,\|\, q_i\right),
        \qquad U_{\gamma}(p) = \sum_{j=1}^{C} p_j^{\gamma}, \quad p^t_i = \sigma(v_i), \quad \gamma = 1/T

    :math:`U_\gamma` uses the teacher softmax at temperature 1 (the normaliser of the power transform),
    carries no gradient and is not normalised by its batch mean (the paper does that for Fig. 1 only).
    It is computed in log space, :math:`\log U = \mathrm{lse}(\gamma v) - \gamma\,\mathrm{lse}(v)`.

    Zheng & Yang, ICLR 2024 (Eq. 23, Algorithm 1). Authors' code: https://github.com/zkxufo/TTM
    (``distiller_zoo/wttm.py``).

    :param student_logits: :math:`z`, shape :math:`(N, C)`.
    :param teacher_logits: :math:`v`, shape :math:`(N, C)`; detached.
    :param temperature: :math:`T = 1/\gamma`: a number, a per-sample tensor of shape :math:`(N,)`, or
        ``'max_logit'`` (per-sample :math:`T_i`, which then also sets the exponent of :math:`U`).
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher only.
    :return: :math:`\mathcal{L}_{WTTM}`, a 0-dim tensor.
    """
    _check_logits(student_logits, teacher_logits)
    temperature = _check_temperature_args(temperature, teacher_only_max)
    return _evaluate(_ttm, student_logits, teacher_logits, temperature, teacher_only_max, False, weighted=True)[0]


def dist_loss(student_logits: Tensor, teacher_logits: Tensor, *, beta: float = 1.0, gamma: float = 1.0,
              temperature: Temperature = 1.0, teacher_only_max: bool = False, eps: float = DIST_EPS) -> Tensor:
    r"""DIST: inter-class and intra-class Pearson relation between student and teacher predictions.

    .. math::
        Y^s = \sigma(Z^s/\tau), \quad Y^t = \sigma(Z^t/\tau), \quad
        \rho(u, v) = \frac{\sum_k (u_k - \bar u)(v_k - \bar v)}{\|u - \bar u\|\,\|v - \bar v\| + \epsilon}

    .. math::
        \mathcal{L}_{DIST} = \tau^2 \left(\beta \Big(1 - \frac{1}{N}\sum_{i} \rho(Y^s_{i,:}, Y^t_{i,:})\Big)
        + \gamma \Big(1 - \frac{1}{C}\sum_{j} \rho(Y^s_{:,j}, Y^t_{:,j})\Big)\right)

    With a per-sample temperature (``'max_logit'`` or a tensor) each row is softened by its own
    :math:`\tau_i`; the inter-class term is weighted per sample by :math:`\tau_i^2` and the intra-class term,
    which mixes all samples, by the batch mean of :math:`\tau_i^2`. With one number both reduce to the
    formula above.

    Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022 (Eqs. 8-9).
    Authors' code: https://github.com/hunto/image_classification_sota (``lib/models/losses/dist_kd.py``).

    :param student_logits: :math:`Z^s`, shape :math:`(N, C)`.
    :param teacher_logits: :math:`Z^t`, shape :math:`(N, C)`; detached.
    :param beta: :math:`\beta`, weight of the inter-class relation.
    :param gamma: :math:`\gamma`, weight of the intra-class relation.
    :param temperature: :math:`\tau` (the loss includes :math:`\tau^2`): a number, a per-sample tensor of
        shape :math:`(N,)`, or ``'max_logit'``.
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher only.
    :param eps: :math:`\epsilon`.
    :return: :math:`\mathcal{L}_{DIST}`, a 0-dim tensor.

    .. warning::
        The intra-class term correlates each class's probabilities across the mini-batch, so it depends on
        the per-process batch size (torchdistill's ``batch_size`` is per process; the authors used 32 per
        GPU on ImageNet and 64 on CIFAR-100). For a batch of one sample it is undefined (the authors' code
        returns a constant without gradient there): this function then drops the term and warns.

    .. note::
        :math:`\epsilon` is added to the product of the norms as in the authors' code. torchdistill's
        ``DISTLoss`` clamps each norm instead (``cosine_similarity``), which differs when a row is constant.
    """
    beta, gamma = check_weight(beta, 'beta'), check_weight(gamma, 'gamma')
    eps = check_weight(eps, 'eps')
    _check_logits(student_logits, teacher_logits)
    temperature = _check_temperature_args(temperature, teacher_only_max)
    return _evaluate(_dist, student_logits, teacher_logits, temperature, teacher_only_max, False, beta=beta,
                     gamma=gamma, eps=eps)[0]


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: Temperature = 4.0,
            standardize: bool = False, teacher_only_max: bool = False) -> Tensor:
    r"""Hinton KD, optionally on standardised logits and with the max-logit adaptive temperature.

    .. math::
        \mathcal{L}_{KD} = \frac{1}{N} \sum_{i=1}^{N} T_i^2\, D_{KL}\left(\sigma(z^t_i / T_i) \,\|\,
        \sigma(z^s_i / T_i)\right)

    where :math:`z` are the raw logits, or the z-scored logits :math:`\hat z` with ``standardize=True``,
    and :math:`T_i = T` for a fixed temperature. The :math:`T_i^2` factor multiplies each sample's divergence
    before the mean, as in the authors' code.

    Hinton et al., "Distilling the Knowledge in a Neural Network", 2015; Sun et al., "Logit Standardization
    in Knowledge Distillation", CVPR 2024; Matsuyama et al., "Adaptive Temperature Based on Logits
    Correlation in Knowledge Distillation", arXiv:2503.09030 (2025). Authors' code:
    https://github.com/kei813121/atkd (``distiller_zoo/kd.py``, ``helper/util.py``).

    :param student_logits: :math:`z^s`, shape :math:`(N, C)`.
    :param teacher_logits: :math:`z^t`, shape :math:`(N, C)`; detached.
    :param temperature: :math:`T`: a number, a per-sample tensor of shape :math:`(N,)`, or ``'max_logit'``
        (:func:`max_logit_temperature`).
    :param standardize: z-score both logits over the classes first (:func:`standardize_logits`).
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher only.
    :return: :math:`\mathcal{L}_{KD}`, a 0-dim tensor.

    .. warning::
        The abstract of Matsuyama et al. takes the temperature from the teacher's maximum logit only; the
        authors' code uses the maximum over both models. ``'max_logit'`` follows the code by default,
        ``teacher_only_max=True`` the abstract.
    """
    check_flag(standardize, 'standardize')
    _check_logits(student_logits, teacher_logits)
    temperature = _check_temperature_args(temperature, teacher_only_max)
    return _evaluate(_kd, student_logits, teacher_logits, temperature, teacher_only_max, standardize)[0]


def dkd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, *, alpha: float = 1.0,
             beta: float = 8.0, temperature: Temperature = 4.0, standardize: bool = False,
             teacher_only_max: bool = False, epoch: Optional[int] = None, warmup_epochs: int = 0) -> Tensor:
    r"""Decoupled KD: target-class (TCKD) and non-target-class (NCKD) divergences, each :math:`T^2`-scaled.

    .. math::
        \mathcal{L}_{DKD} = w(e) \frac{1}{N}\sum_{i=1}^{N} T_i^2 \left(\alpha\, D_{KL}(b^t_i \| b^s_i)
        + \beta\, D_{KL}(\tilde p^t_i \| \tilde p^s_i)\right), \qquad w(e) = \min(e / E_w, 1)

    where :math:`b_i = (p_{i,y_i}, 1 - p_{i,y_i})` is the binary target/non-target split of
    :math:`p_i = \sigma(z_i / T_i)` and :math:`\tilde p_i` the softmax over the non-target classes only.
    :math:`z` are the raw logits, or the z-scored logits with ``standardize=True``.

    The non-target softmax is computed on the non-target logits themselves; the authors subtract 1000
    from the target logit instead, which is the same up to :math:`e^{-1000}`.

    Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022. Authors' code:
    https://github.com/megvii-research/mdistiller (``mdistiller/distillers/DKD.py``); the max-logit
    temperature inside DKD follows https://github.com/kei813121/atkd (``distiller_zoo/dkd.py``).

    :param student_logits: :math:`z^s`, shape :math:`(N, C)`.
    :param teacher_logits: :math:`z^t`, shape :math:`(N, C)`; detached.
    :param targets: :math:`y`, class indices of shape :math:`(N,)`, int64 or int32. Their range is checked
        by reading the minimum and maximum back to the host (the ``DKDLoss`` adapter asserts it on the
        device instead).
    :param alpha: :math:`\alpha`, weight of TCKD.
    :param beta: :math:`\beta`, weight of NCKD.
    :param temperature: :math:`T`: a number, a per-sample tensor of shape :math:`(N,)`, or ``'max_logit'``.
    :param standardize: z-score both logits over the classes first.
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher only.
    :param epoch: :math:`e`, the current epoch counted from 1 (needed when ``warmup_epochs > 0``).
    :param warmup_epochs: :math:`E_w`; 0 disables the warm-up.
    :return: :math:`\mathcal{L}_{DKD}`, a 0-dim tensor.
    """
    alpha, beta = check_weight(alpha, 'alpha'), check_weight(beta, 'beta')
    check_flag(standardize, 'standardize')
    factor = dkd_warmup_factor(epoch, warmup_epochs)
    _check_logits(student_logits, teacher_logits)
    _check_targets(targets, *student_logits.shape)
    _check_target_range(targets, student_logits.shape[1])
    temperature = _check_temperature_args(temperature, teacher_only_max)
    return _evaluate(_dkd, student_logits, teacher_logits, temperature, teacher_only_max, standardize,
                     targets=targets, alpha=alpha, beta=beta, factor=factor)[0]


def _check_mlkd_views(student_weak: Tensor, teacher_weak: Tensor, student_strong: Tensor,
                      teacher_strong: Tensor) -> None:
    """Types, dtypes and shapes of MLKD's four logits (metadata only): each view a pair of (N, C), both views alike."""
    _check_logits(student_weak, teacher_weak, ('student_weak', 'teacher_weak'))
    _check_logits(student_strong, teacher_strong, ('student_strong', 'teacher_strong'))
    if student_weak.shape != student_strong.shape:
        raise ValueError('the weak and strong views must have the same shape (N, C) (two views of the same images), '
                         f'got {tuple(student_weak.shape)} and {tuple(student_strong.shape)}')


def _check_mlkd_temperature(temperature: Temperature, teacher_only_max: bool) -> Temperature:
    """A number or 'max_logit': a per-sample tensor would not say which view it belongs to."""
    if isinstance(temperature, Tensor):
        raise TypeError(f"MLKD's temperature must be a positive number or '{MAX_LOGIT}' (each view resolves its own "
                        f'per-sample temperatures), got a tensor of shape {tuple(temperature.shape)}')
    return _check_temperature_args(temperature, teacher_only_max)


def _evaluate_mlkd(student_weak: Tensor, teacher_weak: Tensor, student_strong: Tensor, teacher_strong: Tensor,
                   temperature: Temperature, teacher_only_max: bool, standardize: bool,
                   code_faithful: bool) -> Tuple[Tensor, Tuple[_Resolved, _Resolved]]:
    """MLKD on the working logits with each view's temperature resolved once; returns the loss and the weak and
    strong views' temperatures (floats or (N, 1) tensors without gradient).

    Checks nothing: the caller has checked the logits and the hyperparameters."""
    with _no_autocast(student_weak.device):
        views = _working_precision(student_weak, teacher_weak.detach(), student_strong, teacher_strong.detach())
        if standardize:
            views = tuple(standardize_logits(v) for v in views)
        sw, tw, ss, ts = views
        t_weak = _resolve(sw, tw, temperature, teacher_only_max, standardize)
        t_strong = _resolve(ss, ts, temperature, teacher_only_max, standardize)
        return _mlkd.mlkd(sw, tw, ss, ts, t_weak, t_strong, code_faithful), (t_weak, t_strong)


def mlkd_loss(student_weak: Tensor, teacher_weak: Tensor, student_strong: Tensor, teacher_strong: Tensor, *,
              temperature: Temperature = 4.0, standardize: bool = False, teacher_only_max: bool = False,
              code_faithful: bool = True) -> Tensor:
    r"""Multi-Level Logit Distillation (MLKD) on a weak and a strong view, as the authors' ``MLKD.forward`` returns it.

    With :math:`P_T(z) = \sigma(z / T)`, the five temperatures :math:`\mathcal{T}_v = (T_v, 3, 5, 2, 6)` of view
    :math:`v` (the configured or per-sample :math:`T_v`, then MLKD's fixed ones), :math:`w` the weak and :math:`s`
    the strong view:

    .. math::
        \mathrm{KD}_T(v) = \frac{1}{N}\sum_{i} T^2 D_{KL}\big(P_T(z^t_{v,i}) \,\|\, P_T(z^s_{v,i})\big), \quad
        \mathrm{BC}_T(v) = \frac{1}{N}\big\|P_T(Z^t_v) P_T(Z^t_v)^{\top} - P_T(Z^s_v) P_T(Z^s_v)^{\top}\big\|_F^2,
        \quad
        \mathrm{CC}_T(v) = \frac{1}{C}\big\|P_T(Z^t_v)^{\top} P_T(Z^t_v) - P_T(Z^s_v)^{\top} P_T(Z^s_v)\big\|_F^2

    .. math::
        \mathcal{L}_{MLKD} = \sum_{T \in \mathcal{T}_w} \Big(f_s\,\mathrm{KD}_T(w) + f_s\,\mathrm{BC}_T(w)
        + f_c\,\mathrm{CC}_T(w)\Big) + \sum_{T \in (T_s, 3, 5)} \mathrm{KD}_T(s) + \sum_{T \in (2, 6)} \mathrm{KD}_T(w)

    where :math:`f_s` is the fraction of samples whose top teacher probability :math:`\max_j \sigma(z^t_{w,i})_j`
    is at most its batch median, and :math:`f_c` the fraction of classes whose teacher probability summed over
    the batch, :math:`\sum_i \sigma(z^t_{w,i})_c`, is at most the median over classes (teacher softmax of the weak
    view at temperature 1, on the standardised logits with ``standardize=True``). Medians are linearly
    interpolated (``numpy.percentile``'s default) and computed on the device.

    ``temperature`` is :math:`T_v`: a number (the authors' ``--kd_T``, the same for both views) or
    ``'max_logit'``, a per-sample :math:`T_{v,i}` for each view from its own logits
    (:func:`max_logit_temperature`; with ``standardize=True`` this is the authors' ``--logit_stand
    --mlogit_temp``). The fixed temperatures 2, 3, 5 and 6 stay fixed. With ``standardize=True`` every term,
    the masks included, reads the z-scored logits (:func:`standardize_logits`).

    Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023. Authors' code:
    https://github.com/Jin-Ying/Multi-Level-Logit-Distillation (``mdistiller/distillers/KD_ours.py``); with logit
    standardisation (Sun et al., CVPR 2024) and the max-logit temperature (Matsuyama et al., arXiv:2503.09030):
    https://github.com/kei813121/atkd (``distiller_zoo/mlkd.py``), which this function reproduces.

    :param student_weak: :math:`Z^s_w`, the student's logits of the weak view, shape :math:`(N, C)`.
    :param teacher_weak: :math:`Z^t_w`, the teacher's logits of the weak view, shape :math:`(N, C)`; detached.
    :param student_strong: :math:`Z^s_s`, the student's logits of the strong view, shape :math:`(N, C)`.
    :param teacher_strong: :math:`Z^t_s`, the teacher's logits of the strong view, shape :math:`(N, C)`; detached.
    :param temperature: :math:`T_v`: a positive number or ``'max_logit'`` (a tensor is refused: it would not say
        which view it belongs to).
    :param standardize: z-score all four logits over the classes first.
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher only.
    :param code_faithful: reproduce the authors' code, quirks included (default); ``False`` gives the reading
        without the first two quirks below.
    :return: :math:`\mathcal{L}_{MLKD}`, a 0-dim tensor.

    .. warning::
        The authors' code (the same in the original MLKD repository, the logit-standardisation fork and the
        max-logit repository) differs from a plain reading of the method in three ways, reproduced by default:

        1. **The masks scale, they do not select.** Each weak-view term is reduced to a scalar first and then
           multiplied by the boolean mask and averaged, which gives the term times :math:`f_s` (or :math:`f_c`):
           every sample and class still contributes. ``code_faithful=False`` selects instead:
           :math:`\frac{1}{N}\sum_i m_i T^2 D_{KL,i}`, and the rows of the Gram differences that belong to the
           masked samples (:math:`\frac{1}{N}\sum_i m_i \sum_j (\cdot)_{ij}^2`) or classes
           (:math:`\frac{1}{C}\sum_c m_c \sum_{c'} (\cdot)_{cc'}^2`), the per-sample reading the authors' commented
           ``reduce=False`` points to.
        2. **The strong-view KD sum reads the weak view at** :math:`T = 2` **and** :math:`6`: its last two terms
           are the weak view's (unmasked) KD. ``code_faithful=False`` uses the strong view at all five
           temperatures.
        3. **The strong view's batch- and class-level terms are computed and left out of the sum.** Both modes
           leave them out (and do not compute them): no source says they were meant to count.

        The authors compute the medians with ``np.percentile`` on the host (a device synchronisation per step);
        here ``torch.quantile(..., interpolation='linear')`` computes the same threshold on the device, equal up
        to its rounding in the working precision. The logit-standardisation fork takes the masks and the batch-
        and class-level terms from the raw logits and standardises only inside KD; the max-logit repository,
        followed here, standardises all four logits before everything.

    .. note::
        The weights are applied outside: the authors' total is :math:`\gamma\,(\mathrm{CE}(z^s_w, y) +
        \mathrm{CE}(z^s_s, y)) + \beta\,\mathcal{L}_{MLKD}`.
    """
    check_flag(standardize, 'standardize')
    check_flag(code_faithful, 'code_faithful')
    _check_mlkd_views(student_weak, teacher_weak, student_strong, teacher_strong)
    temperature = _check_mlkd_temperature(temperature, teacher_only_max)
    return _evaluate_mlkd(student_weak, teacher_weak, student_strong, teacher_strong, temperature, teacher_only_max,
                          standardize, code_faithful)[0]
