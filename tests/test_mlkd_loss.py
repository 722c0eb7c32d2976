"""MLKD's loss: the slow reference written from the authors' code, the medians, gradcheck, identities, errors."""
import numpy as np
import pytest
import torch
from torchdistill.losses.registry import get_mid_level_loss

import slow_reference_mlkd as slow
import ttm_torchdistill.functional as F
from ttm_torchdistill._core import mlkd as _mlkd

# the authors' --kd_T, and their --logit_stand --mlogit_temp (plus this plugin's max-logit on raw logits)
MODES = [
    pytest.param(dict(temperature=4.0), id='T4'),
    pytest.param(dict(temperature=4.0, standardize=True), id='T4-standardized'),
    pytest.param(dict(temperature='max_logit', standardize=True), id='max_logit-standardized'),
    pytest.param(dict(temperature='max_logit'), id='max_logit-raw'),
    pytest.param(dict(temperature='max_logit', standardize=True, teacher_only_max=True), id='max_logit-teacher_only'),
]


def _views(n, c=10, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    sw, tw, ss, ts = (torch.randn(n, c, generator=g, dtype=dtype) * scale for _ in range(4))
    return sw.requires_grad_(), tw, ss.requires_grad_(), ts


def _value_and_grads(fn, sw, tw, ss, ts, **kwargs):
    sw, ss = sw.detach().clone().requires_grad_(), ss.detach().clone().requires_grad_()
    value = fn(sw, tw, ss, ts, **kwargs)
    return (value,) + torch.autograd.grad(value, (sw, ss))


def _assert_matches(fast, reference):
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize('n', [1, 2, 7, 8])
@pytest.mark.parametrize('mode', MODES)
def test_code_faithful_value_and_gradients_match_the_authors_forward(mode, n):
    for seed, scale in ((0, 1.0), (1, 5.0)):
        views = _views(n, seed=seed, scale=scale)
        _assert_matches(_value_and_grads(F.mlkd_loss, *views, **mode), _value_and_grads(slow.mlkd, *views, **mode))


@pytest.mark.parametrize('n', [1, 5, 8])
@pytest.mark.parametrize('mode', MODES)
def test_quirk_free_value_and_gradients_match_their_reference(mode, n):
    views = _views(n, seed=3)
    _assert_matches(_value_and_grads(F.mlkd_loss, *views, code_faithful=False, **mode),
                    _value_and_grads(slow.quirk_free, *views, **mode))


def test_hundred_classes_match_the_reference():
    views = _views(6, c=100, seed=4, scale=4.0)
    mode = dict(temperature='max_logit', standardize=True)
    _assert_matches(_value_and_grads(F.mlkd_loss, *views, **mode), _value_and_grads(slow.mlkd, *views, **mode))


def test_the_quirks_change_the_value():
    views = _views(8, seed=5)
    assert not torch.allclose(F.mlkd_loss(*views), F.mlkd_loss(*views, code_faithful=False))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('n', [1, 2, 3, 4, 7, 10, 64, 100])
def test_median_threshold_is_numpys_linear_percentile(n, dtype):
    g = torch.Generator().manual_seed(n)
    for values in (torch.rand(n, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g).to(dtype)):
        expected = values.le(float(np.percentile(values.numpy(), 50)))
        assert torch.equal(_mlkd.at_most_median(values), expected)


def test_median_ties_put_every_tied_sample_in_the_mask():
    # the teacher's weak view repeats one row four times: its confidence is the median of the six, tied four times
    g = torch.Generator().manual_seed(6)
    row = torch.randn(1, 10, generator=g, dtype=torch.float64)
    tw = torch.cat([row.repeat(4, 1), torch.randn(2, 10, generator=g, dtype=torch.float64) * 4])
    # two classes with identical teacher columns tie at the class median too
    tw[:, 7] = tw[:, 3]
    sample_mask, class_mask = _mlkd.confidence_masks(tw)
    confidence = torch.softmax(tw, 1).amax(1)
    assert float(np.percentile(confidence.numpy(), 50)) == confidence[0].item()
    assert sample_mask[:4].all() and sample_mask.sum() >= 4
    sw, _, ss, ts = _views(6, seed=7)
    for code_faithful in (True, False):
        reference = slow.mlkd if code_faithful else slow.quirk_free
        _assert_matches(_value_and_grads(F.mlkd_loss, sw, tw, ss, ts, code_faithful=code_faithful),
                        _value_and_grads(reference, sw, tw, ss, ts))
    assert torch.equal(class_mask, torch.softmax(tw, 1).sum(0).le(np.percentile(torch.softmax(tw, 1).sum(0), 50)))


def test_masks_come_from_the_weak_teacher_only():
    sw, tw, ss, ts = _views(7, seed=8)
    sample_mask, class_mask = _mlkd.confidence_masks(tw)
    assert sample_mask.sum() == 4 and class_mask.sum() == 5  # odd N = 7 and C = 10: the median and those below


@pytest.mark.parametrize('code_faithful', [True, False])
@pytest.mark.parametrize('per_sample', [False, True])
def test_gradcheck_of_the_core(code_faithful, per_sample):
    sw, tw, ss, ts = _views(4, c=5, seed=9, scale=2.0)
    if per_sample:  # resolved max-logit temperatures are (N, 1) tensors without gradient
        t_weak = F.resolve_temperature(sw, tw, 'max_logit').unsqueeze(1)
        t_strong = F.resolve_temperature(ss, ts, 'max_logit').unsqueeze(1)
    else:
        t_weak = t_strong = 3.5
    assert torch.autograd.gradcheck(
        lambda a, b: _mlkd.mlkd(a, tw, b, ts, t_weak, t_strong, code_faithful), (sw, ss))


@pytest.mark.parametrize('standardize', [False, True])
def test_gradcheck_of_the_public_function(standardize):
    sw, tw, ss, ts = _views(4, c=5, seed=10, scale=2.0)
    assert torch.autograd.gradcheck(
        lambda a, b: F.mlkd_loss(a, tw, b, ts, temperature=2.5, standardize=standardize), (sw, ss))


@pytest.mark.parametrize('code_faithful', [True, False])
@pytest.mark.parametrize('mode', MODES)
def test_zero_when_the_student_is_the_teacher(mode, code_faithful):
    _, tw, _, ts = _views(6, seed=11)
    value = F.mlkd_loss(tw.clone(), tw, ts.clone(), ts, code_faithful=code_faithful, **mode)
    torch.testing.assert_close(value, torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-12)


def test_teacher_gets_no_gradient_and_student_views_do():
    sw, tw, ss, ts = _views(5, seed=15)
    tw, ts = tw.requires_grad_(), ts.requires_grad_()
    F.mlkd_loss(sw, tw, ss, ts, temperature='max_logit', standardize=True).backward()
    assert tw.grad is None and ts.grad is None
    assert sw.grad.abs().sum() > 0 and ss.grad.abs().sum() > 0


def test_half_precision_inputs_under_autocast_give_a_finite_float32_loss():
    views = [v.detach().to(torch.bfloat16) * 30 for v in _views(8, seed=16)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = F.mlkd_loss(*views, temperature='max_logit', standardize=True)
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize('mode', MODES)
def test_adapter_equals_the_function_and_keeps_both_views_temperatures(mode):
    sw, tw, ss, ts = _views(5, seed=17)
    criterion = get_mid_level_loss({'key': 'MLKDLoss', 'kwargs': dict(mode)})
    value = criterion({'weak': {'output': sw}, 'strong': {'output': ss}},
                      {'weak': {'output': tw}, 'strong': {'output': ts}}, None)
    torch.testing.assert_close(value, F.mlkd_loss(sw, tw, ss, ts, **mode), rtol=0, atol=0)
    if mode['temperature'] == 'max_logit':
        standardize, only = mode.get('standardize', False), mode.get('teacher_only_max', False)
        expected = [F.resolve_temperature(s, t, 'max_logit', teacher_only_max=only) for s, t in ((sw, tw), (ss, ts))]
        assert criterion.last_temperature.shape == (2, 5) and not criterion.last_temperature.requires_grad
        # the temperature is read from z-scores either way (standardised once, or z-scored for the rule)
        torch.testing.assert_close(criterion.last_temperature, torch.stack(expected), rtol=1e-6 if standardize else 0,
                                   atol=0)
    else:
        assert criterion.last_temperature is None


def test_adapter_reads_the_configured_view_paths():
    sw, tw, ss, ts = _views(4, seed=18)
    criterion = get_mid_level_loss({'key': 'MLKDLoss', 'kwargs': {
        'student_module_path': 'fc', 'student_module_io': 'input', 'teacher_module_path': 'head',
        'student_strong_module_path': 'fc2', 'student_strong_module_io': 'input',
        'teacher_strong_module_path': 'head2', 'teacher_strong_module_io': 'output', 'code_faithful': False}})
    value = criterion({'fc': {'input': sw}, 'fc2': {'input': ss}}, {'head': {'output': tw}, 'head2': {'output': ts}},
                      None)
    torch.testing.assert_close(value, F.mlkd_loss(sw, tw, ss, ts, code_faithful=False), rtol=0, atol=0)


# ---- errors: each names the parameter, what was expected and what came ----

S4 = torch.randn(4, 10)


@pytest.mark.parametrize('args, kwargs, error, message', [
    ((S4.numpy(), S4, S4, S4), {}, TypeError, r'student_weak must be a torch.Tensor of shape \(N, C\), got ndarray'),
    ((S4, S4.long(), S4, S4), {}, TypeError, r'teacher_weak must be a floating-point tensor, got dtype torch.int64'),
    ((S4, S4, S4[0], S4), {}, ValueError, r'student_strong must be 2-D logits of shape \(N, C\), got shape \(10,\)'),
    ((S4, S4, S4, S4[:, :5]), {}, ValueError,
     r'student_strong and teacher_strong must have the same shape \(N, C\), got \(4, 10\) and \(4, 5\)'),
    ((S4, S4, S4[:3], S4[:3]), {}, ValueError,
     r'the weak and strong views must have the same shape \(N, C\) \(two views of the same images\), got \(4, 10\) '
     r'and \(3, 10\)'),
    ((S4[:, :1], S4[:, :1], S4[:, :1], S4[:, :1]), {}, ValueError,
     r'logits must have at least 1 sample and 2 classes, got shape \(4, 1\)'),
    ((S4,) * 4, {'temperature': torch.ones(4)}, TypeError,
     r"MLKD's temperature must be a positive number or 'max_logit' \(each view resolves its own per-sample "
     r'temperatures\), got a tensor of shape \(4,\)'),
    ((S4,) * 4, {'temperature': 0.0}, ValueError, r"temperature must be a positive number or 'max_logit', got 0\.0"),
    ((S4,) * 4, {'temperature': 'maxlogit'}, ValueError, r"got 'maxlogit'"),
    ((S4,) * 4, {'temperature': 4.0, 'teacher_only_max': True}, ValueError,
     r"teacher_only_max=True needs temperature='max_logit', got 4\.0"),
    ((S4,) * 4, {'standardize': 1}, TypeError, r'standardize must be True or False, got 1'),
    ((S4,) * 4, {'code_faithful': 'yes'}, TypeError, r"code_faithful must be True or False, got 'yes'"),
])
def test_function_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        F.mlkd_loss(*args, **kwargs)


def test_adapter_names_a_missing_view():
    criterion = get_mid_level_loss({'key': 'MLKDLoss', 'kwargs': {}})
    with pytest.raises(KeyError, match=r"the teacher io_dict has no 'output' for module path 'strong'; it holds "
                                       r"\{'weak': \['output'\]\}"):
        criterion({'weak': {'output': S4}, 'strong': {'output': S4}}, {'weak': {'output': S4}}, None)
    with pytest.raises(ValueError, match=r'the weak and strong views must have the same shape'):
        criterion({'weak': {'output': S4}, 'strong': {'output': S4[:2]}},
                  {'weak': {'output': S4}, 'strong': {'output': S4[:2]}}, None)
