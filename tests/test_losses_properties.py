"""Independent checks of the loss math, for every variant of every registered loss (tests/loss_specs.py): a slow
per-sample reference, gradcheck, the adapter against the public function, generic identities and numerics; then each
spec's own identities, and the edge cases by name."""
import math

import pytest
import torch

import ttm_torchdistill.functional as F
from loss_specs import (
    REGISTERED, SPECS, call_adapter, call_function, make_inputs, options, students, variant_params,
)


def _logits(n=5, c=7, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(n, c, generator=g, dtype=dtype) * scale).requires_grad_()
    t = torch.randn(n, c, generator=g, dtype=dtype) * scale
    y = torch.randint(0, c, (n,), generator=g)
    return s, t, y


def _value_and_student_grads(spec, variant, x, y, function=None, **opts):
    """The value and the gradients of the student inputs, on fresh copies of them."""
    x = {n: t.detach().clone().requires_grad_() if n.startswith('student') else t for n, t in x.items()}
    value = (function or (lambda x, y, **o: call_function(spec, variant, x, y, **o)))(x, y, **opts)
    return (value,) + torch.autograd.grad(value, [x[n] for n in students(x)])


@pytest.mark.parametrize('key, variant, temperature',
                         variant_params('slow_reference', lambda spec: spec.reference_temperatures))
def test_matches_slow_per_sample_reference(key, variant, temperature):
    spec = SPECS[key]
    reference = lambda x, y, **opts: variant.reference(x, y, **variant.kwargs, **opts)  # noqa: E731
    for seed, scale in ((0, 1.0), (1, 6.0)):
        x, y = make_inputs(spec, seed=seed, scale=scale)
        fast = _value_and_student_grads(spec, variant, x, y, **options(temperature))
        expected = _value_and_student_grads(spec, variant, x, y, reference, **options(temperature))
        torch.testing.assert_close(fast[0], expected[0], rtol=1e-9, atol=1e-12)
        for grad, expected_grad in zip(fast[1:], expected[1:]):
            torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-12)


def _per_sample(spec, x):
    """'max_logit' resolved for the first view, as a fixed (N,) tensor."""
    (student, teacher), = spec.views
    return F.max_logit_temperature(x[student], x[teacher]).squeeze(1)


def _gradcheck_temperatures(spec):
    return spec.temperatures(2.0, 'per_sample') if spec.holds('per_sample_temperature') else spec.temperatures(2.0)


@pytest.mark.parametrize('key, variant, temperature', variant_params('gradcheck', _gradcheck_temperatures))
def test_gradcheck(key, variant, temperature):
    spec = SPECS[key]
    x, y = make_inputs(spec, n=3, c=5, scale=2.0, seed=3)
    if temperature == 'per_sample':
        # 'max_logit' is by definition gradient-free, so finite differences (which see T move) would disagree:
        # check the gradient at the per-sample temperatures it yields, held fixed.
        temperature = _per_sample(spec, x)
    names = students(x)

    def function(*tensors):
        return call_function(spec, variant, {**x, **dict(zip(names, tensors))}, y, **options(temperature))
    assert torch.autograd.gradcheck(function, tuple(x[n] for n in names))


@pytest.mark.parametrize('key, variant, temperature',
                         variant_params(None, lambda spec: spec.temperatures(2.0, 'max_logit')))
def test_registered_adapter_computes_the_public_function(key, variant, temperature):
    spec = SPECS[key]
    x, y = make_inputs(spec, n=6, c=10, seed=2)
    adapter = _value_and_student_grads(spec, variant, x, y,
                                       lambda x, y, **opts: call_adapter(key, spec, variant, x, y, **opts),
                                       **options(temperature))
    function = _value_and_student_grads(spec, variant, x, y, **options(temperature))
    for got, expected in zip(adapter, function):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize('key, variant, temperature',
                         variant_params('shift_invariant', lambda spec: spec.temperatures(3.0, 'max_logit')))
def test_invariant_to_shifting_each_row_of_logits(key, variant, temperature):
    spec = SPECS[key]
    x, y = make_inputs(spec, n=4, c=6)
    g = torch.Generator().manual_seed(5)
    shifted = {n: t + torch.randn(4, 1, generator=g, dtype=t.dtype) * 50 for n, t in x.items()}
    torch.testing.assert_close(call_function(spec, variant, shifted, y, **options(temperature)),
                               call_function(spec, variant, x, y, **options(temperature)))


@pytest.mark.parametrize('key, variant, temperature',
                         variant_params('zero_at_teacher', lambda spec: spec.zero_temperatures))
def test_zero_when_student_equals_teacher(key, variant, temperature):
    spec = SPECS[key]
    x, y = make_inputs(spec, n=4, c=6)
    for student, teacher in spec.views:
        x[student] = x[teacher].clone()
    value = call_function(spec, variant, x, y, **options(temperature))
    torch.testing.assert_close(value, torch.zeros((), dtype=value.dtype), atol=1e-12, rtol=0)


@pytest.mark.parametrize('key, variant, temperature',
                         variant_params('teacher_gets_no_gradient', lambda spec: spec.temperatures(2.0, 'max_logit')))
def test_teacher_logits_never_receive_gradients(key, variant, temperature):
    spec = SPECS[key]
    x, y = make_inputs(spec)
    for name in x:
        x[name].requires_grad_()
    call_function(spec, variant, x, y, **options(temperature)).backward()
    assert [n for n in x if x[n].grad is None] == [n for n in x if n.startswith('teacher')]


@pytest.mark.parametrize('teacher_only_max', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('key, variant', variant_params('per_sample_temperature'))
def test_resolved_temperature_gives_bit_identical_loss_and_gradient(key, variant, dtype, teacher_only_max):
    """resolve_temperature(..., 'max_logit') passed back in is the same computation as 'max_logit' itself."""
    spec = SPECS[key]
    x, y = make_inputs(spec, n=6, c=10, scale=4.0, dtype=dtype)
    value = _value_and_student_grads(spec, variant, x, y, temperature='max_logit', teacher_only_max=teacher_only_max)
    (student, teacher), = spec.views
    temperature = F.resolve_temperature(x[student], x[teacher], 'max_logit', teacher_only_max=teacher_only_max)
    resolved = _value_and_student_grads(spec, variant, x, y, temperature=temperature)
    for got, expected in zip(resolved, value):
        assert torch.equal(got, expected)


@pytest.mark.parametrize('key, variant', variant_params('per_sample_temperature'))
def test_per_sample_temperature_tensor_equals_number_when_constant(key, variant):
    spec = SPECS[key]
    x, y = make_inputs(spec)
    per_sample = torch.full((5,), 3.0, dtype=torch.float64)
    torch.testing.assert_close(call_function(spec, variant, x, y, temperature=per_sample),
                               call_function(spec, variant, x, y, temperature=3.0))


@pytest.mark.parametrize('key, variant, temperature',
                         variant_params('finite_at_100', lambda spec: spec.temperatures(2.0, 'max_logit')))
def test_finite_for_logits_of_magnitude_100_in_float32(key, variant, temperature):
    spec = SPECS[key]
    x, y = make_inputs(spec, n=8, c=100, dtype=torch.float32)
    x = {n: (torch.sign(t) * (100 if n.startswith('student') else -100)).detach() for n, t in x.items()}
    for name in students(x):
        x[name].requires_grad_()
    value = call_function(spec, variant, x, y, **options(temperature))
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(x[n].grad).all() for n in students(x))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('key, variant, temperature',
                         variant_params('finite_under_autocast', lambda spec: spec.temperatures(0.2, 'max_logit')))
def test_finite_under_autocast_and_half_inputs(key, variant, temperature, dtype):
    spec = SPECS[key]
    g = torch.Generator().manual_seed(7)
    _, y = make_inputs(spec, n=8, c=100)
    layers = {n: torch.nn.Linear(16, 100) for n in spec.inputs if n.startswith('student')}
    features = torch.randn(8, 16, generator=g) * 20
    with torch.autocast('cpu', dtype=dtype):
        x = {n: layers[n](features) * 5 if n in layers else (torch.randn(8, 100, generator=g) * 100).to(dtype)
             for n in spec.inputs}  # teacher logits that underflow a half softmax
        value = call_function(spec, variant, x, y, **options(temperature))
    assert value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(layer.weight.grad).all() for layer in layers.values())
    full = {n: t.detach().float() for n, t in x.items()}
    torch.testing.assert_close(value.detach(), call_function(spec, variant, full, y, **options(temperature)))


def _identity_params():
    for key in REGISTERED:
        for check in (SPECS[key].identities if key in SPECS else ()):
            yield pytest.param(check, id=f'{key}-{check.__name__}')


@pytest.mark.parametrize('check', list(_identity_params()))
def test_identity(check):
    check()


# ---- the max-logit temperature, and edge cases by name ----

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
