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
in the same precision.

**Checks.** Every public function checks all of its arguments, so it is safe to call with anything. Most
checks read only metadata (types, shapes, dtypes); two read tensor values back to the host, which on
a GPU waits for the device: a temperature given as a tensor must be positive, and :func:`dkd_loss`'s
targets must be valid class indices. The torchdistill adapters in :mod:`ttm_torchdistill.losses` check
their hyperparameters once, at construction, and then call the same unchecked core as these functions,
with only the metadata checks per call and DKD's target range asserted on the device. The checks live in
:mod:`ttm_torchdistill.checks`, the unchecked core in :mod:`ttm_torchdistill._core.kernels` and
:mod:`ttm_torchdistill._core.mlkd`.

This module, its checks and its core import nothing but torch and the standard library.
"""
from typing import Optional

import torch
from torch import Tensor

from ._core import kernels
from ._core import mlkd as _mlkd
from ._core.kernels import MAX_LOGIT_FACTOR, standardize_logits
from .checks.tensors import check_logits, check_target_range, check_targets, check_two_views
from .checks.values import (
    MAX_LOGIT, Temperature, check_epoch, check_flag, check_non_negative, check_teacher_only_max, check_temperature,
    check_temperature_args, check_view_temperature, check_warmup_epochs,
)

#: ``check_weight(value, name)``: a finite, non-negative real number (the loss weights and the like).
check_weight = check_non_negative

__all__ = [
    'MAX_LOGIT', 'MAX_LOGIT_FACTOR', 'Temperature',
    'standardize_logits', 'max_logit_temperature', 'resolve_temperature',
    'check_temperature', 'check_teacher_only_max', 'check_weight', 'check_flag', 'check_warmup_epochs',
    'check_epoch', 'dkd_warmup_factor',
    'ttm_loss', 'wttm_loss', 'dist_loss', 'kd_loss', 'dkd_loss', 'mlkd_loss',
]


def dkd_warmup_factor(epoch: Optional[int], warmup_epochs: int) -> float:
    """DKD's linear warm-up factor ``min(epoch / warmup_epochs, 1)`` (epochs counted from 1, as mdistiller)."""
    if check_warmup_epochs(warmup_epochs) == 0:
        return 1.0
    if epoch is None:
        raise ValueError(f'warmup_epochs={warmup_epochs} needs the current epoch (counted from 1), got epoch=None')
    return kernels.warmup_factor(check_epoch(epoch), warmup_epochs)




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
    check_logits(student_logits, teacher_logits)
    check_flag(teacher_only_max, 'teacher_only_max')
    with torch.no_grad(), kernels.no_autocast(student_logits.device):
        student_logits, teacher_logits = kernels.working_precision(student_logits.detach(), teacher_logits.detach())
        return kernels.resolve(student_logits, teacher_logits, MAX_LOGIT, teacher_only_max, standardized=False)


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
    check_logits(student_logits, teacher_logits)
    temperature = check_temperature_args(temperature, teacher_only_max)
    with torch.no_grad(), kernels.no_autocast(student_logits.device):
        student_logits, teacher_logits = kernels.working_precision(student_logits.detach(), teacher_logits.detach())
        resolved = kernels.resolve(student_logits, teacher_logits, temperature, teacher_only_max, standardized=False)
        n = student_logits.shape[0]
        if isinstance(resolved, Tensor):
            return resolved.reshape(n)
        return torch.full((n,), resolved, dtype=student_logits.dtype, device=student_logits.device)





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
    check_logits(student_logits, teacher_logits)
    temperature = check_temperature_args(temperature, teacher_only_max)
    return kernels.evaluate(kernels.ttm, student_logits, teacher_logits, temperature, teacher_only_max, False,
                            weighted=False)[0]


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
    check_logits(student_logits, teacher_logits)
    temperature = check_temperature_args(temperature, teacher_only_max)
    return kernels.evaluate(kernels.ttm, student_logits, teacher_logits, temperature, teacher_only_max, False,
                            weighted=True)[0]


def dist_loss(student_logits: Tensor, teacher_logits: Tensor, *, beta: float = 1.0, gamma: float = 1.0,
              temperature: Temperature = 1.0, teacher_only_max: bool = False, eps: float = kernels.DIST_EPS) -> Tensor:
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
    beta, gamma = check_non_negative(beta, 'beta'), check_non_negative(gamma, 'gamma')
    eps = check_non_negative(eps, 'eps')
    check_logits(student_logits, teacher_logits)
    temperature = check_temperature_args(temperature, teacher_only_max)
    return kernels.evaluate(kernels.dist, student_logits, teacher_logits, temperature, teacher_only_max, False,
                            beta=beta, gamma=gamma, eps=eps)[0]


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
    check_logits(student_logits, teacher_logits)
    temperature = check_temperature_args(temperature, teacher_only_max)
    return kernels.evaluate(kernels.kd, student_logits, teacher_logits, temperature, teacher_only_max, standardize)[0]


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
    alpha, beta = check_non_negative(alpha, 'alpha'), check_non_negative(beta, 'beta')
    check_flag(standardize, 'standardize')
    factor = dkd_warmup_factor(epoch, warmup_epochs)
    check_logits(student_logits, teacher_logits)
    check_targets(targets, *student_logits.shape)
    check_target_range(targets, student_logits.shape[1])
    temperature = check_temperature_args(temperature, teacher_only_max)
    return kernels.evaluate(kernels.dkd, student_logits, teacher_logits, temperature, teacher_only_max, standardize,
                            targets=targets, alpha=alpha, beta=beta, factor=factor)[0]


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
    check_two_views(student_weak, teacher_weak, student_strong, teacher_strong)
    temperature = check_view_temperature(temperature, teacher_only_max)
    return _mlkd.evaluate(student_weak, teacher_weak, student_strong, teacher_strong, temperature, teacher_only_max,
                          standardize, code_faithful)[0]
