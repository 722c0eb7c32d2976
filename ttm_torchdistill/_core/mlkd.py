r"""The unchecked core of Multi-Level Logit Distillation (MLKD), as the authors' ``MLKD.forward`` computes it.

Every function takes logits that are already checked, in the working precision, standardised when asked, with
the teacher detached and the temperatures resolved (a float or an :math:`(N, 1)` tensor). The checks, the
precision, the standardisation and the temperatures are the job of
:func:`ttm_torchdistill.functional.mlkd_loss` and of the ``MLKDLoss`` adapter.

Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023
(https://github.com/Jin-Ying/Multi-Level-Logit-Distillation, ``KD_ours.py``); with logit standardisation and the
max-logit temperature as in Matsuyama et al. (2025),
https://github.com/kei813121/atkd (``distiller_zoo/mlkd.py``).

This module imports nothing but torch (and the shared core, :mod:`ttm_torchdistill._core.kernels`).
"""
from typing import Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from ..checks.values import Temperature
from . import kernels

#: The fixed temperatures MLKD adds to the configured one ("prediction augmentation"), in the authors' order.
EXTRA_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)
#: The extra temperatures at which the authors' strong-view KD sum reads the weak view's logits.
WEAK_LOGITS_IN_STRONG_SUM = (2.0, 6.0)

Resolved = kernels.Resolved


def at_most_median(values: Tensor) -> Tensor:
    """``values <= median(values)``, the median linearly interpolated (``numpy.percentile``'s default).

    Computed on the device with ``torch.quantile``: nothing is read back to the host (the authors' code copies the
    values to numpy for ``np.percentile(values, 50)``). Ties with the median count as at most the median.
    """
    return values <= torch.quantile(values, 0.5, interpolation='linear')


def confidence_masks(teacher_weak: Tensor) -> Tuple[Tensor, Tensor]:
    """The authors' two masks from the weak view's teacher softmax at temperature 1, without gradient.

    :return: ``(sample_mask (N,), class_mask (C,))``, bool: samples whose top teacher probability is at most the
        batch median, and classes whose teacher probability summed over the batch is at most the median over classes.
    """
    with torch.no_grad():
        probabilities = F.softmax(teacher_weak, dim=1)
        return at_most_median(probabilities.amax(dim=1)), at_most_median(probabilities.sum(dim=0))


def _square(temperature: Resolved) -> Resolved:
    return temperature.squeeze(1) ** 2 if isinstance(temperature, Tensor) else temperature ** 2


def instance_kd(student: Tensor, teacher: Tensor, temperature: Resolved) -> Tensor:
    r"""Per-sample :math:`T_i^2\,D_{KL}(\sigma(z^t_i/T_i)\,\|\,\sigma(z^s_i/T_i))`, shape :math:`(N,)`."""
    kl = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                  reduction='none', log_target=True).sum(dim=1)
    return _square(temperature) * kl


def batch_gram_rows(student: Tensor, teacher: Tensor, temperature: Resolved) -> Tensor:
    r"""Row sums of :math:`(P^t P^{t\top} - P^s P^{s\top})^2` (the :math:`N \times N` batch-level Gram matrices of
    :math:`P = \sigma(z/T)`), shape :math:`(N,)`: row :math:`i` belongs to sample :math:`i`."""
    p_s, p_t = F.softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1)
    return ((p_t @ p_t.t() - p_s @ p_s.t()) ** 2).sum(dim=1)


def class_gram_rows(student: Tensor, teacher: Tensor, temperature: Resolved) -> Tensor:
    r"""Row sums of :math:`(P^{t\top} P^t - P^{s\top} P^s)^2` (the :math:`C \times C` class-level Gram matrices),
    shape :math:`(C,)`: row :math:`c` belongs to class :math:`c`."""
    p_s, p_t = F.softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1)
    return ((p_t.t() @ p_t - p_s.t() @ p_s) ** 2).sum(dim=1)


def mlkd(student_weak: Tensor, teacher_weak: Tensor, student_strong: Tensor, teacher_strong: Tensor,
         temperature_weak: Resolved, temperature_strong: Resolved, code_faithful: bool) -> Tensor:
    r"""The MLKD term: instance-level KD on both views, batch- and class-level consistency on the weak view.

    With :math:`\mathcal{T}_v = (T_v, 3, 5, 2, 6)`, :math:`f_s` the fraction of samples and :math:`f_c` the
    fraction of classes at most their median confidence (:func:`confidence_masks`), the code-faithful value is

    .. math::
        f_s \sum_{T \in \mathcal{T}_w} \Big(\overline{KD}_T(w) + \tfrac{1}{N} B_T(w)\Big)
        + f_c \sum_{T \in \mathcal{T}_w} \tfrac{1}{C} G_T(w)
        + \sum_{T \in (T_s, 3, 5)} \overline{KD}_T(s) + \sum_{T \in (2, 6)} \overline{KD}_T(w)

    where :math:`\overline{KD}_T(v)` is the batch mean of :func:`instance_kd` on view :math:`v`, and :math:`B_T`,
    :math:`G_T` the sums of :func:`batch_gram_rows` and :func:`class_gram_rows`. With ``code_faithful=False`` the
    masks select rows (:math:`\frac{1}{N}\sum_i m_i KD_{T,i}`, :math:`\frac{1}{N}\sum_i m_i B_{T,i}`,
    :math:`\frac{1}{C}\sum_c m_c G_{T,c}`) and the strong-view KD sum reads the strong view at all five
    temperatures. The strong view's batch- and class-level terms, which the authors compute and leave out of the
    sum, are not computed.
    """
    n, c = student_weak.shape
    sample_mask, class_mask = confidence_masks(teacher_weak)
    sample_mask, class_mask = sample_mask.to(student_weak.dtype), class_mask.to(student_weak.dtype)
    temperatures_weak = (temperature_weak,) + EXTRA_TEMPERATURES
    kd_weak = sum(instance_kd(student_weak, teacher_weak, t) for t in temperatures_weak)
    batch_weak = sum(batch_gram_rows(student_weak, teacher_weak, t) for t in temperatures_weak)
    class_weak = sum(class_gram_rows(student_weak, teacher_weak, t) for t in temperatures_weak)
    if code_faithful:
        # The authors multiply each already-reduced term by the mask and take the mean: the term times the
        # fraction of the mask that is true.
        masked = sample_mask.mean() * (kd_weak.mean() + batch_weak.sum() / n) + class_mask.mean() * class_weak.sum() / c
    else:
        masked = (sample_mask * kd_weak).mean() + (sample_mask * batch_weak).sum() / n \
            + (class_mask * class_weak).sum() / c
    strong = instance_kd(student_strong, teacher_strong, temperature_strong).mean()
    for t in EXTRA_TEMPERATURES:
        view = (student_weak, teacher_weak) if code_faithful and t in WEAK_LOGITS_IN_STRONG_SUM \
            else (student_strong, teacher_strong)
        strong = strong + instance_kd(*view, t).mean()
    return masked + strong


def evaluate(student_weak: Tensor, teacher_weak: Tensor, student_strong: Tensor, teacher_strong: Tensor,
             temperature: Temperature, teacher_only_max: bool, standardize: bool,
             code_faithful: bool) -> Tuple[Tensor, Tuple[Resolved, Resolved]]:
    """MLKD on the working logits with each view's temperature resolved once; returns the loss and the weak and
    strong views' temperatures (floats or (N, 1) tensors without gradient).

    Checks nothing: the caller has checked the logits and the hyperparameters."""
    with kernels.no_autocast(student_weak.device):
        views = kernels.working_precision(student_weak, teacher_weak.detach(), student_strong, teacher_strong.detach())
        if standardize:
            views = tuple(kernels.standardize_logits(v) for v in views)
        sw, tw, ss, ts = views
        t_weak = kernels.resolve(sw, tw, temperature, teacher_only_max, standardize)
        t_strong = kernels.resolve(ss, ts, temperature, teacher_only_max, standardize)
        return mlkd(sw, tw, ss, ts, t_weak, t_strong, code_faithful), (t_weak, t_strong)
