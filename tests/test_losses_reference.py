"""Every case of the golden losses.json (authors' code, float64) through the functional API and the
registered adapters built by torchdistill's registry: values and student-logit gradients to rel 1e-6. Which loss
computes a reference case, with which arguments, is its spec's ``golden`` (tests/loss_specs.py)."""
import pytest
import torch

from conftest import load_reference
from loss_specs import REGISTERED, SPECS, build, io_dicts

REFERENCE = load_reference('losses.json')
RTOL = 1e-6


def _spec_of_case(case):
    """``(key, spec)`` of the registered loss whose spec maps this reference loss (``LossSpec.golden``)."""
    owners = [(key, SPECS[key]) for key in REGISTERED if key in SPECS and case['loss'] in SPECS[key].golden]
    assert len(owners) == 1, (f"reference loss {case['loss']!r} is mapped by {len(owners)} specs: give exactly one "
                              f'LossSpec.golden an entry for it in tests/loss_specs.py')
    return owners[0]


def _kwargs(case):
    key, spec = _spec_of_case(case)
    return key, spec, spec.golden[case['loss']](case['params'])


def _case_id(case):
    params = ','.join(f'{k}={v}' for k, v in sorted(case['params'].items()))
    return f"{case['loss']}[{params}]-input{case['input']}"


def _inputs(case):
    data = REFERENCE['inputs'][case['input']]
    s = torch.tensor(data['student_logits'], dtype=torch.float64, requires_grad=True)
    t = torch.tensor(data['teacher_logits'], dtype=torch.float64)
    y = torch.tensor(data['targets'], dtype=torch.int64) if 'targets' in data else None
    return s, t, y


def _assert_matches(case, value, grad):
    expected_grad = torch.tensor(case['grad_student'], dtype=torch.float64)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, torch.tensor(case['loss_value'], dtype=torch.float64), rtol=RTOL, atol=0)
    # gradients: relative to the largest entry, so entries near zero do not demand impossible precision
    scale = expected_grad.abs().max().item()
    torch.testing.assert_close(grad, expected_grad, rtol=RTOL, atol=RTOL * scale)


def test_reference_covers_every_loss_family():
    golden = {name for key in REGISTERED if key in SPECS for name in SPECS[key].golden}
    assert {c['loss'] for c in REFERENCE['cases']} <= golden
    assert len(REFERENCE['cases']) > 0


@pytest.mark.parametrize('key', [k for k in REGISTERED if k in SPECS and SPECS[k].golden])
def test_every_golden_mapping_of_a_spec_has_cases(key):
    names = {c['loss'] for c in REFERENCE['cases']}
    unused = sorted(set(SPECS[key].golden) - names)
    assert not unused, f'SPECS[{key!r}].golden maps {unused}, which tests/fixtures/losses.json does not hold'


@pytest.mark.parametrize('case', REFERENCE['cases'], ids=_case_id)
def test_functional_matches_reference(case):
    _, spec, kwargs = _kwargs(case)
    s, t, y = _inputs(case)
    inputs = {'student': s, 'teacher': t, 'targets': y}
    value = spec.function(*(inputs[name] for name in spec.args), **kwargs)
    value.backward()
    _assert_matches(case, value.detach(), s.grad)


@pytest.mark.parametrize('case', REFERENCE['cases'], ids=_case_id)
def test_registered_adapter_matches_reference(case):
    key, spec, kwargs = _kwargs(case)
    s, t, y = _inputs(case)
    criterion = build(key, {**spec.required, **kwargs}, epoch=None)
    value = criterion(*io_dicts(criterion, {'student': s, 'teacher': t}), y)
    value.backward()
    _assert_matches(case, value.detach(), s.grad)
