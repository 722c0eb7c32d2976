"""Every case of the golden losses.json (authors' code, float64) through the functional API and the
registered adapters built by torchdistill's registry: values and student-logit gradients to rel 1e-6."""
import pytest
import torch
from torchdistill.losses.registry import get_mid_level_loss

import ttm_torchdistill.functional as F
from conftest import load_reference

REFERENCE = load_reference('losses.json')
RTOL = 1e-6


def _functional(case, s, t, y):
    p = case['params']
    loss = case['loss']
    if loss in ('ttm', 'wttm'):
        fn = F.ttm_loss if loss == 'ttm' else F.wttm_loss
        return fn(s, t, temperature=1.0 / p['exponent'])
    if loss == 'dist':
        return F.dist_loss(s, t, beta=p['beta'], gamma=p['gamma'], temperature=p['tau'])
    if loss in ('kd', 'atkd'):
        return F.kd_loss(s, t, temperature=p['temperature'], standardize=p.get('standardize', False))
    if loss == 'dkd':
        return F.dkd_loss(s, t, y, alpha=p['alpha'], beta=p['beta'], temperature=p['temperature'],
                          standardize=p['standardize'])
    raise AssertionError(f'no mapping for reference loss {loss!r}: add one to this test')


def _registry_config(case):
    p = case['params']
    loss = case['loss']
    if loss in ('ttm', 'wttm'):
        return {'key': loss.upper() + 'Loss', 'kwargs': {'temperature': 1.0 / p['exponent']}}
    if loss == 'dist':
        return {'key': 'ATDISTLoss', 'kwargs': {'beta': p['beta'], 'gamma': p['gamma'], 'temperature': p['tau']}}
    if loss in ('kd', 'atkd'):
        return {'key': 'ATKDLoss', 'kwargs': {'temperature': p['temperature'],
                                              'standardize': p.get('standardize', False)}}
    if loss == 'dkd':
        # the reference has no warm-up (factor 1)
        return {'key': 'DKDLoss', 'kwargs': dict(p, warmup_epochs=0)}
    raise AssertionError(f'no mapping for reference loss {loss!r}: add one to this test')


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
    assert {c['loss'] for c in REFERENCE['cases']} <= {'ttm', 'wttm', 'dist', 'kd', 'atkd', 'dkd'}
    assert len(REFERENCE['cases']) > 0


@pytest.mark.parametrize('case', REFERENCE['cases'], ids=_case_id)
def test_functional_matches_reference(case):
    s, t, y = _inputs(case)
    value = _functional(case, s, t, y)
    value.backward()
    _assert_matches(case, value.detach(), s.grad)


@pytest.mark.parametrize('case', REFERENCE['cases'], ids=_case_id)
def test_registered_adapter_matches_reference(case):
    import ttm_torchdistill  # noqa: F401  (registers the losses)
    s, t, y = _inputs(case)
    criterion = get_mid_level_loss(_registry_config(case))
    value = criterion({'.': {'output': s}}, {'.': {'output': t}}, y)
    value.backward()
    _assert_matches(case, value.detach(), s.grad)
