r"""Math of the feature-level losses combined with WTTM: ITRD's two terms and the embedding normalisation.

Plain functions of tensors (imports only torch, and the checks of :mod:`ttm_torchdistill.checks`), used by
:mod:`ttm_torchdistill.feature_losses`.

* ITRD: Miles, Lopez-Rodriguez & Mikolajczyk, "Information Theoretic Representation Distillation", BMVC 2022
  (arXiv:2112.00459). Authors' code: https://github.com/roymiles/ITRD (``distiller_zoo/IT.py``), copied unchanged
  into the TTM authors' repository (https://github.com/zkxufo/TTM, ``distiller_zoo/itrd.py``). The paper body could
  not be read here; the formulas below are those of the authors' code.
* The L2 normalisation of CRD's embedding heads: Tian, Krishnan & Isola, "Contrastive Representation
  Distillation", ICLR 2020 (https://github.com/HobbitLong/RepDistiller, ``crd/criterion.py``).

CRD's memory-bank NCE loss itself is torchdistill's ``CRDLoss``, which computes what RepDistiller computes (see
``docs/crd_itrd.md``).
"""
import torch
from torch import Tensor

from .checks.tensors import check_feature_pair
from .checks.values import check_alpha_it, check_non_negative

__all__ = ['l2_normalize', 'itrd_correlation_loss', 'itrd_mutual_information_loss', 'itrd_loss']


def l2_normalize(x: Tensor, power: float = 2.0) -> Tensor:
    r"""Row-wise :math:`x / (\sum_j x_j^p)^{1/p}` of CRD's ``Normalize`` layer (no eps, as in RepDistiller)."""
    return x / x.pow(power).sum(1, keepdim=True).pow(1.0 / power)


def itrd_correlation_loss(student: Tensor, teacher: Tensor, alpha_it: float, eps: float = 0.0) -> Tensor:
    r"""ITRD correlation term on the embedded student features and the teacher features.

    .. math::
        \hat f_{:,k} = \frac{f_{:,k} - \mathrm{mean}_b f_{b,k}}{\mathrm{std}_b f_{b,k} + \epsilon},\quad
        c_k = \frac{1}{N}\sum_b \hat f^s_{b,k}\hat f^t_{b,k},\quad
        \mathcal{L}_{corr} = \log_2 \sum_k \left(|1 - c_k|^2\right)^{\alpha}

    The standard deviation is the unbiased one (``Tensor.std``) while :math:`c_k` divides by :math:`N`, as in the
    authors' code, so :math:`c_k \le (N-1)/N`.

    :param student: :math:`(N, D)` embedded student features.
    :param teacher: :math:`(N, D)` teacher features.
    :param alpha_it: :math:`\alpha`, Renyi's order.
    :param eps: added to the standard deviations; 0 as in the authors' code (a constant feature column then
        gives NaN there too).
    :return: the scalar loss.
    """
    check_feature_pair(student, teacher, same_width=True)
    alpha_it = check_alpha_it(alpha_it)
    eps = check_non_negative(eps, 'eps')
    n = student.shape[0]
    s = (student - student.mean(0)) / (student.std(0) + eps)
    t = (teacher - teacher.mean(0)) / (teacher.std(0) + eps)
    c = (s * t).sum(0) / n
    return torch.log2((1.0 - c).abs().pow(2.0).pow(alpha_it).sum())


def itrd_mutual_information_loss(student: Tensor, teacher: Tensor) -> Tensor:
    r"""ITRD mutual-information term: trace-normalised Gram matrices of the L2-normalised features.

    .. math::
        G^s = \tilde f^s {\tilde f^{s\top}},\ G^t = \tilde f^t {\tilde f^{t\top}},\ G^{st} = G^s \odot G^t,\quad
        \mathcal{L}_{MI} = \left\|\frac{G^s}{\mathrm{tr}\,G^s}\right\|_F^2
            - \left\|\frac{G^{st}}{\mathrm{tr}\,G^{st}}\right\|_F^2

    with :math:`\tilde f` the row-wise L2-normalised features (``F.normalize``: norms clamped at 1e-12).

    :param student: :math:`(N, D_s)` student features (embedded or not, see
        :class:`~ttm_torchdistill.feature_losses.ITRDLoss`).
    :param teacher: :math:`(N, D_t)` teacher features; :math:`D_s` and :math:`D_t` may differ.
    :return: the scalar loss.
    """
    check_feature_pair(student, teacher, same_width=False)
    s = torch.nn.functional.normalize(student, dim=1)
    t = torch.nn.functional.normalize(teacher, dim=1)
    g_s = s @ s.t()
    g_st = g_s * (t @ t.t())
    g_s = g_s / torch.trace(g_s)
    g_st = g_st / torch.trace(g_st)
    return g_s.pow(2).sum() - g_st.pow(2).sum()


def itrd_loss(student_embedded: Tensor, student_mutual: Tensor, teacher: Tensor, lambda_corr: float,
              lambda_mutual: float, alpha_it: float, eps: float = 0.0) -> Tensor:
    r""":math:`\lambda_{corr}\mathcal{L}_{corr} + \lambda_{MI}\mathcal{L}_{MI}` (the authors' ``loss_kd``).

    Computed in float32 (float64 inputs stay float64) with autocast disabled: under bf16/fp16 autocast the
    features arrive in half precision, and the mutual-information term is a difference of nearly equal squared
    norms, which half precision would cancel to noise.

    :param student_embedded: :math:`(N, D_t)` embedded student features (correlation term).
    :param student_mutual: :math:`(N, D)` student features for the mutual-information term.
    :param teacher: :math:`(N, D_t)` teacher features.
    :param lambda_corr: :math:`\lambda_{corr}` (``--lambda_corr``, 2 in the TTM runs); 0 skips the term.
    :param lambda_mutual: :math:`\lambda_{MI}` (``--lambda_mutual``, 1 or 0 in the TTM runs); 0 skips the term
        (the authors' code computes a term and multiplies it by 0: the same value unless that term is not finite).
    :param alpha_it: :math:`\alpha` of the correlation term.
    :param eps: see :func:`itrd_correlation_loss`.
    """
    lambda_corr = check_non_negative(lambda_corr, 'lambda_corr')
    lambda_mutual = check_non_negative(lambda_mutual, 'lambda_mutual')
    alpha_it = check_alpha_it(alpha_it)
    with torch.autocast(device_type=student_embedded.device.type, enabled=False):
        student_embedded, student_mutual, teacher = _full_precision(student_embedded, student_mutual, teacher)
        return _itrd(student_embedded, student_mutual, teacher, lambda_corr, lambda_mutual, alpha_it, eps)


def _full_precision(*features: Tensor):
    # float64 stays float64 (exactness tests); everything else is computed in float32
    dtype = torch.float64 if any(f.dtype == torch.float64 for f in features) else torch.float32
    return tuple(f.to(dtype) for f in features)


def _itrd(student_embedded: Tensor, student_mutual: Tensor, teacher: Tensor, lambda_corr: float,
          lambda_mutual: float, alpha_it: float, eps: float) -> Tensor:
    loss = student_embedded.new_zeros(())
    if lambda_corr > 0:
        loss = loss + lambda_corr * itrd_correlation_loss(student_embedded, teacher, alpha_it, eps=eps)
    if lambda_mutual > 0:
        loss = loss + lambda_mutual * itrd_mutual_information_loss(student_mutual, teacher)
    return loss
