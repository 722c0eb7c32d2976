"""Independent checks of the loss math: a slow per-sample reference, gradcheck, identities, numerics."""
import math

import pytest
import torch
from torch.nn import functional as torch_F

import slow_reference as slow
import ttm_torchdistill.functional as F

# (name, fast function, slow reference, needs targets)
FAMILIES = {
    'ttm': (lambda s, t, y, T: F.ttm_loss(s, t, temperature=T), lambda s, t, y, T: slow.ttm(s, t, T)),
    'wttm': (lambda s, t, y, T: F.wttm_loss(s, t, temperature=T), lambda s, t, y, T: slow.ttm(s, t, T, weighted=True)),
    'kd': (lambda s, t, y, T: F.kd_loss(s, t, temperature=T), lambda s, t, y, T: slow.kd(s, t, T)),
    'kd_standardized': (lambda s, t, y, T: F.kd_loss(s, t, temperature=T, standardize=True),
                        lambda s, t, y, T: slow.kd(s, t, T, standardize=True)),
    'dkd': (lambda s, t, y, T: F.dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=T),
            lambda s, t, y, T: slow.dkd(s, t, y, 1.0, 8.0, T)),
    'dkd_standardized': (lambda s, t, y, T: F.dkd_loss(s, t, y, alpha=0.5, beta=2.0, temperature=T, standardize=True),
                         lambda s, t, y, T: slow.dkd(s, t, y, 0.5, 2.0, T, standardize=True)),
}
TEMPERATURES = [1.0, 4.0, 'max_logit']


def _logits(n=5, c=7, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(n, c, generator=g, dtype=dtype) * scale).requires_grad_()
    t = torch.randn(n, c, generator=g, dtype=dtype) * scale
    y = torch.randint(0, c, (n,), generator=g)
    return s, t, y


@pytest.mark.parametrize('temperature', TEMPERATURES)
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_matches_slow_per_sample_reference(family, temperature):
    fast, reference = FAMILIES[family]
    for seed, scale in ((0, 1.0), (1, 6.0)):
        s, t, y = _logits(seed=seed, scale=scale)
        value = fast(s, t, y, temperature)
        (grad,) = torch.autograd.grad(value, s)
        s2 = s.detach().clone().requires_grad_()
        expected = reference(s2, t, y, temperature)
        (expected_grad,) = torch.autograd.grad(expected, s2)
        torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_dist_matches_slow_reference(tau):
    s, t, _ = _logits(n=6, c=5, scale=4.0)
    value = F.dist_loss(s, t, beta=1.5, gamma=0.5, temperature=tau)
    (grad,) = torch.autograd.grad(value, s)
    s2 = s.detach().clone().requires_grad_()
    expected = slow.dist(s2, t, 1.5, 0.5, tau)
    (expected_grad,) = torch.autograd.grad(expected, s2)
    torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize('temperature', [2.0, 'per_sample'])
@pytest.mark.parametrize('name', ['ttm', 'wttm', 'dist', 'kd', 'kd_standardized', 'dkd', 'dkd_standardized'])
def test_gradcheck(name, temperature):
    s, t, y = _logits(n=3, c=5, scale=2.0, seed=3)
    if temperature == 'per_sample':
        # 'max_logit' is by definition gradient-free, so finite differences (which see T move) would disagree:
        # check the gradient at the per-sample temperatures it yields, held fixed.
        temperature = F.max_logit_temperature(s, t).squeeze(1)
    fns = {name: fast for name, (fast, _) in FAMILIES.items()}
    fns['dist'] = lambda s, t, y, T: F.dist_loss(s, t, temperature=T)
    assert torch.autograd.gradcheck(lambda x: fns[name](x, t, y, temperature), (s,))


ALL_LOSSES = {
    'ttm': lambda s, t, y, T: F.ttm_loss(s, t, temperature=T),
    'wttm': lambda s, t, y, T: F.wttm_loss(s, t, temperature=T),
    'dist': lambda s, t, y, T: F.dist_loss(s, t, temperature=T),
    'kd': lambda s, t, y, T: F.kd_loss(s, t, temperature=T),
    'kd_standardized': lambda s, t, y, T: F.kd_loss(s, t, temperature=T, standardize=True),
    'dkd': lambda s, t, y, T: F.dkd_loss(s, t, y, temperature=T),
}


@pytest.mark.parametrize('temperature', [3.0, 'max_logit'])
@pytest.mark.parametrize('name', sorted(ALL_LOSSES))
def test_invariant_to_shifting_each_row_of_logits(name, temperature):
    s, t, y = _logits(n=4, c=6)
    shift_s, shift_t = torch.randn(4, 1, dtype=s.dtype) * 50, torch.randn(4, 1, dtype=s.dtype) * 50
    loss = ALL_LOSSES[name]
    torch.testing.assert_close(loss(s + shift_s, t + shift_t, y, temperature), loss(s, t, y, temperature))


def test_ttm_at_temperature_one_is_kl_from_teacher_to_student():
    s, t, _ = _logits()
    expected = torch_F.kl_div(torch.log_softmax(s, 1), torch.log_softmax(t, 1), reduction='batchmean',
                              log_target=True)
    torch.testing.assert_close(F.ttm_loss(s, t, temperature=1.0), expected)
    # U_1(p) = sum_j p_j = 1, so WTTM equals TTM at T = 1
    torch.testing.assert_close(F.wttm_loss(s, t, temperature=1.0), expected)


@pytest.mark.parametrize('T', [1.5, 4.0, 10.0])
def test_ttm_decomposes_into_kd_plus_renyi_entropy(T):
    """Zheng & Yang Eq. 15: D(p_T||q) = T D(p_T||q_T) - (T-1) H_{1/T}(q) + (T-1) H(p_T)."""
    s, t, _ = _logits(n=1, c=8)
    p_t = torch.softmax(t / T, 1)
    q, q_t = torch.softmax(s, 1), torch.softmax(s / T, 1)
    kd = (p_t * (p_t.log() - q_t.log())).sum()
    alpha = 1 / T
    renyi = torch.log((q ** alpha).sum()) / (1 - alpha)
    shannon = -(p_t * p_t.log()).sum()
    torch.testing.assert_close(F.ttm_loss(s, t, temperature=T), T * kd - (T - 1) * renyi + (T - 1) * shannon)


def test_wttm_weight_is_teacher_power_sum():
    s, t, _ = _logits(n=1, c=9)
    gamma = 0.25
    u = (torch.softmax(t, 1) ** gamma).sum()
    torch.testing.assert_close(F.wttm_loss(s, t, temperature=1 / gamma), u * F.ttm_loss(s, t, temperature=1 / gamma))


def test_kd_is_tckd_plus_weighted_nckd():
    """Zhao et al. Eq. 5: KD = TCKD + (1 - p^t_target) NCKD, per sample."""
    s, t, y = _logits(n=1, c=6)
    p_target = torch.softmax(t / 4.0, 1)[0, y[0]].item()
    dkd = F.dkd_loss(s, t, y, alpha=1.0, beta=1.0 - p_target, temperature=4.0)
    torch.testing.assert_close(dkd, F.kd_loss(s, t, temperature=4.0))


@pytest.mark.parametrize('name', sorted(set(ALL_LOSSES) - {'dist'}))
def test_zero_when_student_equals_teacher(name):
    s, t, y = _logits(n=4, c=6)
    # TTM's target is the *transformed* teacher, so it vanishes at the student only at T = 1
    temperature = 1.0 if name in ('ttm', 'wttm') else 2.0
    for temperature in (temperature, 'max_logit') if name not in ('ttm', 'wttm') else (temperature,):
        value = ALL_LOSSES[name](t.clone(), t, y, temperature)
        torch.testing.assert_close(value, torch.zeros((), dtype=value.dtype), atol=1e-12, rtol=0)


def test_dist_is_zero_when_student_equals_teacher_up_to_its_eps():
    s, t, _ = _logits(n=4, c=6)
    torch.testing.assert_close(F.dist_loss(t.clone(), t, eps=0.0), torch.zeros((), dtype=t.dtype), atol=1e-12, rtol=0)
    # with the authors' eps in the denominator, 1 - rho = eps / (||a||^2 + eps) per relation: tiny, not zero
    value = F.dist_loss(t.clone(), t, temperature=2.0)
    assert 0 < value.item() < 1e-4


def test_max_logit_temperature_formula_and_options():
    s, t, _ = _logits(n=3, c=10)
    zs, zt = F.standardize_logits(s.detach()), F.standardize_logits(t)
    both = F.max_logit_temperature(s, t)
    teacher = F.max_logit_temperature(s, t, teacher_only_max=True)
    factor = (1 + math.sqrt(3)) / 2
    torch.testing.assert_close(both, factor * torch.maximum(zs.abs().amax(1), zt.abs().amax(1)).unsqueeze(1))
    torch.testing.assert_close(teacher, factor * zt.abs().amax(1, keepdim=True))
    assert both.shape == (3, 1) and not both.requires_grad
    # scale-free: multiplying the logits changes nothing
    torch.testing.assert_close(F.max_logit_temperature(s * 7, t * 7), both)
    # x = m / T solves x + x^2 / 2 = 1
    x = 1 / factor
    assert abs(x + x * x / 2 - 1) < 1e-12


def test_max_logit_temperature_of_constant_rows_is_one():
    s = torch.zeros(2, 5)
    t = torch.tensor([[1.0] * 5, [0.0, 1.0, 2.0, 3.0, 4.0]])
    temperature = F.max_logit_temperature(s, t)
    assert temperature[0].item() == 1.0 and temperature[1].item() > 1.0
    assert torch.isfinite(F.kd_loss(s, t, temperature='max_logit', standardize=True))


def test_teacher_only_max_uses_teacher_peak():
    s, t, _ = _logits(n=4, c=10)
    temperature = F.max_logit_temperature(s, t, teacher_only_max=True)
    torch.testing.assert_close(F.kd_loss(s, t, temperature='max_logit', teacher_only_max=True),
                               F.kd_loss(s, t, temperature=temperature))


# every loss with every option that changes how the temperature is used: (s, t, y, **temperature options)
WITH_TEMPERATURE_OPTIONS = {
    'ttm': lambda s, t, y, **kw: F.ttm_loss(s, t, **kw),
    'wttm': lambda s, t, y, **kw: F.wttm_loss(s, t, **kw),
    'dist': lambda s, t, y, **kw: F.dist_loss(s, t, beta=1.5, gamma=0.5, **kw),
    'kd': lambda s, t, y, **kw: F.kd_loss(s, t, **kw),
    'kd_standardized': lambda s, t, y, **kw: F.kd_loss(s, t, standardize=True, **kw),
    'dkd': lambda s, t, y, **kw: F.dkd_loss(s, t, y, **kw),
    'dkd_standardized': lambda s, t, y, **kw: F.dkd_loss(s, t, y, alpha=0.5, beta=2.0, standardize=True, **kw),
}


@pytest.mark.parametrize('teacher_only_max', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('name', sorted(WITH_TEMPERATURE_OPTIONS))
def test_resolved_temperature_gives_bit_identical_loss_and_gradient(name, dtype, teacher_only_max):
    """resolve_temperature(..., 'max_logit') passed back in is the same computation as 'max_logit' itself."""
    loss = WITH_TEMPERATURE_OPTIONS[name]
    s, t, y = _logits(n=6, c=10, scale=4.0, dtype=dtype)
    value = loss(s, t, y, temperature='max_logit', teacher_only_max=teacher_only_max)
    (grad,) = torch.autograd.grad(value, s)
    temperature = F.resolve_temperature(s, t, 'max_logit', teacher_only_max=teacher_only_max)
    resolved = loss(s, t, y, temperature=temperature)
    (resolved_grad,) = torch.autograd.grad(resolved, s)
    assert torch.equal(resolved, value) and torch.equal(resolved_grad, grad)


def test_resolve_temperature_shapes_and_values():
    s, t, _ = _logits(n=5, c=7)
    maximum = F.resolve_temperature(s, t, 'max_logit')
    assert maximum.shape == (5,) and maximum.dtype == torch.float64 and not maximum.requires_grad
    assert torch.equal(maximum, F.max_logit_temperature(s, t).squeeze(1))
    assert torch.equal(F.resolve_temperature(s, t, 'max_logit', teacher_only_max=True),
                       F.max_logit_temperature(s, t, teacher_only_max=True).squeeze(1))
    assert torch.equal(F.resolve_temperature(s, t, 3), torch.full((5,), 3.0, dtype=torch.float64))
    per_sample = torch.linspace(1, 2, 5, requires_grad=True).unsqueeze(1)
    resolved = F.resolve_temperature(s.float(), t.float(), per_sample)
    assert resolved.shape == (5,) and resolved.dtype == torch.float32 and not resolved.requires_grad
    torch.testing.assert_close(resolved, per_sample.detach().squeeze(1))
    # half-precision logits resolve in float32, the precision the losses compute in
    assert F.resolve_temperature(s.half(), t.half(), 'max_logit').dtype == torch.float32


def test_per_sample_temperature_tensor_equals_number_when_constant():
    s, t, y = _logits()
    for name, loss in ALL_LOSSES.items():
        torch.testing.assert_close(loss(s, t, y, torch.full((5,), 3.0, dtype=s.dtype)), loss(s, t, y, 3.0), msg=name)


def test_dkd_warmup_scales_linearly_then_saturates():
    s, t, y = _logits()
    full = F.dkd_loss(s, t, y)
    torch.testing.assert_close(F.dkd_loss(s, t, y, epoch=5, warmup_epochs=20), full * 0.25)
    torch.testing.assert_close(F.dkd_loss(s, t, y, epoch=40, warmup_epochs=20), full)


def test_teacher_logits_never_receive_gradients():
    s, t, y = _logits()
    t.requires_grad_()
    for name, loss in ALL_LOSSES.items():
        for temperature in (2.0, 'max_logit'):
            loss(s, t, y, temperature).backward()
            assert t.grad is None, name


def test_dist_single_sample_batch_drops_intra_term_with_warning():
    s, t, _ = _logits(n=1, c=10)
    with pytest.warns(RuntimeWarning, match='intra-class relation needs at least 2 samples'):
        value = F.dist_loss(s, t, beta=1.0, gamma=1.0, temperature=4.0)
    torch.testing.assert_close(value, F.dist_loss(s, t, beta=1.0, gamma=0.0, temperature=4.0))
    value.backward()
    assert torch.isfinite(s.grad).all()


def test_dist_constant_rows_are_finite():
    s = torch.zeros(3, 5, requires_grad=True)
    t = torch.randn(3, 5)
    value = F.dist_loss(s, t)
    value.backward()
    # rho = 0 for a constant row (eps in the denominator), so each relation term is 1
    torch.testing.assert_close(value, torch.tensor(2.0))
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize('temperature', [2.0, 'max_logit'])
@pytest.mark.parametrize('name', sorted(ALL_LOSSES))
def test_finite_for_logits_of_magnitude_100_in_float32(name, temperature):
    s, t, y = _logits(n=8, c=100, dtype=torch.float32)
    s = (torch.sign(s) * 100).detach().requires_grad_()
    t = torch.sign(t) * -100
    value = ALL_LOSSES[name](s, t, y, temperature)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('name', sorted(ALL_LOSSES))
def test_finite_under_autocast_and_half_inputs(name, dtype):
    layer = torch.nn.Linear(16, 100)
    x = torch.randn(8, 16) * 20
    _, _, y = _logits(n=8, c=100)
    with torch.autocast('cpu', dtype=dtype):
        s = layer(x) * 5
        t = (torch.randn(8, 100) * 100).to(dtype)  # teacher logits that underflow a half softmax
        value = ALL_LOSSES[name](s, t, y, 'max_logit' if 'standardized' in name else 0.2)
    assert value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(layer.weight.grad).all()
    reference = ALL_LOSSES[name](s.detach().float(), t.float(), y, 'max_logit' if 'standardized' in name else 0.2)
    torch.testing.assert_close(value.detach(), reference)
