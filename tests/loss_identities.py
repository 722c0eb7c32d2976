"""Identities of single losses, each a check without arguments that a spec lists (``LossSpec.identities`` in
``tests/loss_specs.py``); ``tests/test_losses_properties.py`` runs every one of a registered loss.

The identities every logit loss shares (shift invariance, zero loss when the student is the teacher, ...) are
generic tests there; these are the ones a paper states for its own loss, checked against other functions of the
package or a formula written out here.
"""
import math

import torch

import ttm_torchdistill.feature_functional as FF
import ttm_torchdistill.functional as F


def _logits(n, c, seed=0, scale=3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(n, c, generator=g, dtype=dtype) * scale).requires_grad_()
    t = torch.randn(n, c, generator=g, dtype=dtype) * scale
    y = torch.randint(0, c, (n,), generator=g)
    return s, t, y


def _kl_from_teacher_to_student(s, t):
    return torch.nn.functional.kl_div(torch.log_softmax(s, 1), torch.log_softmax(t, 1), reduction='batchmean',
                                      log_target=True)


def ttm_at_temperature_one_is_kl_from_teacher_to_student():
    s, t, _ = _logits(5, 7)
    torch.testing.assert_close(F.ttm_loss(s, t, temperature=1.0), _kl_from_teacher_to_student(s, t))


def ttm_is_kd_minus_renyi_entropy_plus_shannon_entropy():
    """Zheng & Yang Eq. 15: D(p_T||q) = T D(p_T||q_T) - (T-1) H_{1/T}(q) + (T-1) H(p_T)."""
    s, t, _ = _logits(1, 8)
    for T in (1.5, 4.0, 10.0):
        p_t = torch.softmax(t / T, 1)
        q, q_t = torch.softmax(s, 1), torch.softmax(s / T, 1)
        kd = (p_t * (p_t.log() - q_t.log())).sum()
        alpha = 1 / T
        renyi = torch.log((q ** alpha).sum()) / (1 - alpha)
        shannon = -(p_t * p_t.log()).sum()
        torch.testing.assert_close(F.ttm_loss(s, t, temperature=T), T * kd - (T - 1) * renyi + (T - 1) * shannon,
                                   msg=f'T = {T}')


def wttm_at_temperature_one_is_kl_from_teacher_to_student():
    """U_1(p) = sum_j p_j = 1, so WTTM equals TTM, the KL from teacher to student, at T = 1."""
    s, t, _ = _logits(5, 7)
    torch.testing.assert_close(F.wttm_loss(s, t, temperature=1.0), _kl_from_teacher_to_student(s, t))


def wttm_weight_is_the_teacher_power_sum():
    s, t, _ = _logits(1, 9)
    gamma = 0.25
    u = (torch.softmax(t, 1) ** gamma).sum()
    torch.testing.assert_close(F.wttm_loss(s, t, temperature=1 / gamma), u * F.ttm_loss(s, t, temperature=1 / gamma))


def dist_is_zero_when_student_equals_teacher_up_to_its_eps():
    _, t, _ = _logits(4, 6)
    torch.testing.assert_close(F.dist_loss(t.clone(), t, eps=0.0), torch.zeros((), dtype=t.dtype), atol=1e-12, rtol=0)
    # with the authors' eps in the denominator, 1 - rho = eps / (||a||^2 + eps) per relation: tiny, not zero
    value = F.dist_loss(t.clone(), t, temperature=2.0)
    assert 0 < value.item() < 1e-4


def standardized_kd_ignores_a_positive_scale_and_a_shift_of_each_row():
    """Logit standardisation z-scores each row, and the max-logit temperature reads the z-scores."""
    s, t, _ = _logits(6, 10)
    g = torch.Generator().manual_seed(1)
    scale = lambda: 0.5 + torch.rand(6, 1, generator=g, dtype=s.dtype) * 3  # noqa: E731
    shift = lambda: torch.randn(6, 1, generator=g, dtype=s.dtype) * 10  # noqa: E731
    moved_s, moved_t = s * scale() + shift(), t * scale() + shift()
    for temperature in (4.0, 'max_logit'):
        torch.testing.assert_close(F.kd_loss(moved_s, moved_t, temperature=temperature, standardize=True),
                                   F.kd_loss(s, t, temperature=temperature, standardize=True), rtol=1e-6, atol=1e-9,
                                   msg=f'temperature {temperature!r}')


def kd_is_tckd_plus_weighted_nckd():
    """Zhao et al. Eq. 5: KD = TCKD + (1 - p^t_target) NCKD, per sample."""
    s, t, y = _logits(1, 6, scale=1.0)
    p_target = torch.softmax(t / 4.0, 1)[0, y[0]].item()
    dkd = F.dkd_loss(s, t, y, alpha=1.0, beta=1.0 - p_target, temperature=4.0)
    torch.testing.assert_close(dkd, F.kd_loss(s, t, temperature=4.0))


def dkd_warmup_scales_linearly_then_saturates():
    s, t, y = _logits(5, 7)
    full = F.dkd_loss(s, t, y)
    torch.testing.assert_close(F.dkd_loss(s, t, y, epoch=5, warmup_epochs=20), full * 0.25)
    torch.testing.assert_close(F.dkd_loss(s, t, y, epoch=40, warmup_epochs=20), full)


def _views(n, c=10, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, c, generator=g, dtype=torch.float64) * scale for _ in range(4))


def mlkd_with_the_weak_view_matched_leaves_the_strong_view_kd():
    """With the student equal to the teacher on the weak view, only the strong-view KD terms remain (Hinton KD,
    checked against the authors' numbers elsewhere)."""
    _, tw, ss, ts = _views(6, seed=12)
    for code_faithful in (True, False):
        value = F.mlkd_loss(tw.clone(), tw, ss, ts, temperature=4.0, code_faithful=code_faithful)
        temperatures = (4.0, 3.0, 5.0) if code_faithful else (4.0, 3.0, 5.0, 2.0, 6.0)
        expected = sum(F.kd_loss(ss, ts, temperature=t) for t in temperatures)
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12, msg=f'code_faithful={code_faithful}')


def standardized_mlkd_ignores_a_positive_scale_and_a_shift_of_each_row():
    views = _views(6, seed=13)
    g = torch.Generator().manual_seed(14)
    moved = [v * (0.5 + torch.rand(6, 1, generator=g, dtype=v.dtype) * 3)
             + torch.randn(6, 1, generator=g, dtype=v.dtype) * 10 for v in views]
    for temperature in (4.0, 'max_logit'):
        torch.testing.assert_close(F.mlkd_loss(*moved, temperature=temperature, standardize=True),
                                   F.mlkd_loss(*views, temperature=temperature, standardize=True), rtol=1e-6,
                                   atol=1e-9, msg=f'temperature {temperature!r}')


def _features(n, d, seed, scale=1.0):
    return (torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale)


def itrd_correlation_of_perfectly_correlated_features_is_log2_of_d_over_n_to_the_2_alpha():
    # c_k = (N - 1) / N for identical standardised columns (unbiased std, mean over N): log2(D / N^(2 alpha))
    n, d, alpha = 8, 5, 1.5
    t = _features(n, d, 11)
    s = (t * 3.0 + 2.0).requires_grad_()  # a positive affine map per column standardises to the same values
    value = FF.itrd_correlation_loss(s, t, alpha)
    assert math.isclose(value.item(), math.log2(d) - 2 * alpha * math.log2(n), rel_tol=1e-12)


def itrd_correlation_ignores_the_scale_and_shift_of_teacher_columns():
    s, t = _features(6, 4, 12).requires_grad_(), _features(6, 4, 13)
    scaled = t * torch.tensor([1.0, 5.0, 0.1, 2.0], dtype=torch.float64) - 7.0
    torch.testing.assert_close(FF.itrd_correlation_loss(s, scaled, 1.5), FF.itrd_correlation_loss(s, t, 1.5))


def itrd_mutual_is_zero_for_a_rank_one_teacher_and_ignores_row_scale():
    s = _features(6, 4, 14).requires_grad_()
    t = torch.ones(6, 3, dtype=torch.float64)  # every pair of teacher samples has cosine 1: G_st = G_s
    assert abs(FF.itrd_mutual_information_loss(s, t).item()) <= 1e-15
    t = _features(6, 3, 15)
    rows = torch.arange(1.0, 7.0, dtype=torch.float64)[:, None]
    torch.testing.assert_close(FF.itrd_mutual_information_loss(s * rows, t / rows),
                               FF.itrd_mutual_information_loss(s, t))

