"""Every bad input gets a ValueError/TypeError naming the parameter, what was expected and what came."""
import math

import pytest
import torch
from torchdistill.losses.registry import get_mid_level_loss

import ttm_torchdistill  # noqa: F401
import ttm_torchdistill.functional as F

S, T = torch.randn(4, 10), torch.randn(4, 10)
Y = torch.tensor([0, 1, 2, 3])
TEMPERATURE_LOSSES = [
    lambda temperature: F.ttm_loss(S, T, temperature=temperature),
    lambda temperature: F.wttm_loss(S, T, temperature=temperature),
    lambda temperature: F.dist_loss(S, T, temperature=temperature),
    lambda temperature: F.kd_loss(S, T, temperature=temperature),
    lambda temperature: F.dkd_loss(S, T, Y, temperature=temperature),
    lambda temperature: F.resolve_temperature(S, T, temperature),
]
TEMPERATURE_IDS = ['ttm', 'wttm', 'dist', 'kd', 'dkd', 'resolve_temperature']
LOSS_KEYS = ['TTMLoss', 'WTTMLoss', 'ATDISTLoss', 'ATKDLoss', 'DKDLoss']


@pytest.mark.parametrize('bad, error, message', [
    (0.0, ValueError, r"temperature must be a positive number or 'max_logit', got 0\.0"),
    (-1, ValueError, r"temperature must be a positive number or 'max_logit', got -1"),
    (math.inf, ValueError, r"got inf"),
    (math.nan, ValueError, r"got nan"),
    ('maxlogit', ValueError, r"temperature must be a positive number or 'max_logit', got 'maxlogit'"),
    (True, TypeError, r"temperature must be a positive number or 'max_logit', got True \(bool\)"),
    (None, TypeError, r"got None \(NoneType\)"),
    (torch.tensor([1.0, -1.0, 1.0, 1.0]), ValueError, r'temperature must be positive and finite everywhere'),
    (torch.ones(3), ValueError, r'per-sample temperature must have shape \(4,\) or \(4, 1\) for 4 samples, got \(3,\)'),
])
@pytest.mark.parametrize('loss', TEMPERATURE_LOSSES, ids=TEMPERATURE_IDS)
def test_bad_temperature(loss, bad, error, message):
    with pytest.raises(error, match=message):
        loss(bad)


FUNCTIONS_WITH_TEACHER_ONLY_MAX = {
    'ttm': lambda **kw: F.ttm_loss(S, T, **kw),
    'wttm': lambda **kw: F.wttm_loss(S, T, **kw),
    'dist': lambda **kw: F.dist_loss(S, T, **kw),
    'kd': lambda **kw: F.kd_loss(S, T, **kw),
    'dkd': lambda **kw: F.dkd_loss(S, T, Y, **kw),
    'resolve_temperature': lambda temperature, **kw: F.resolve_temperature(S, T, temperature, **kw),
}


@pytest.mark.parametrize('name', sorted(FUNCTIONS_WITH_TEACHER_ONLY_MAX))
def test_functional_teacher_only_max_needs_max_logit_and_a_bool(name):
    fn = FUNCTIONS_WITH_TEACHER_ONLY_MAX[name]
    with pytest.raises(ValueError, match=r"teacher_only_max=True needs temperature='max_logit', got 2\.0"):
        fn(temperature=2.0, teacher_only_max=True)
    with pytest.raises(TypeError, match=r"teacher_only_max must be True or False, got 'yes'"):
        fn(temperature='max_logit', teacher_only_max='yes')


def test_max_logit_temperature_teacher_only_max_must_be_a_bool():
    with pytest.raises(TypeError, match=r"teacher_only_max must be True or False, got 1"):
        F.max_logit_temperature(S, T, teacher_only_max=1)


@pytest.mark.parametrize('name', sorted(set(FUNCTIONS_WITH_TEACHER_ONLY_MAX) - {'resolve_temperature'}))
def test_losses_have_no_return_temperature(name):
    """One return type per loss: the temperature comes from resolve_temperature."""
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'return_temperature'"):
        FUNCTIONS_WITH_TEACHER_ONLY_MAX[name](temperature='max_logit', return_temperature=True)


def test_teacher_only_is_spelt_teacher_only_max_everywhere():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'teacher_only'"):
        F.max_logit_temperature(S, T, teacher_only=True)


@pytest.mark.parametrize('loss', [lambda: F.kd_loss(S, T, standardize='true'),
                                  lambda: F.dkd_loss(S, T, Y, standardize='true')], ids=['kd', 'dkd'])
def test_functional_standardize_must_be_boolean(loss):
    with pytest.raises(TypeError, match=r"standardize must be True or False, got 'true'"):
        loss()


@pytest.mark.parametrize('key', LOSS_KEYS)
@pytest.mark.parametrize('bad, error, message', [
    (0, ValueError, r"temperature must be a positive number or 'max_logit', got 0"),
    ('auto', ValueError, r"got 'auto'"),
])
def test_adapters_check_temperature_at_construction(key, bad, error, message):
    with pytest.raises(error, match=message):
        get_mid_level_loss({'key': key, 'kwargs': {'temperature': bad}})


@pytest.mark.parametrize('key', LOSS_KEYS)
def test_adapters_reject_misspelt_arguments(key):
    """The message names the class written in the config, not the private base the adapters share."""
    with pytest.raises(TypeError, match=rf"^{key} has no argument 'standardise'"):
        get_mid_level_loss({'key': key, 'kwargs': {'temperature': 2.0, 'standardise': True}})
    with pytest.raises(TypeError, match=rf"^{key} has no argument 'student_module_pth' \(did you mean "
                                        rf"'student_module_path'\?\); {key} accepts: .*student_module_path"):
        get_mid_level_loss({'key': key, 'kwargs': {'temperature': 2.0, 'student_module_pth': 'fc'}})
    # a misspelt required argument is reported as missing (TTM/WTTM) or as unexpected (the others)
    with pytest.raises(TypeError, match="'temperature'|'temprature'"):
        get_mid_level_loss({'key': key, 'kwargs': {'temprature': 2.0}})


@pytest.mark.parametrize('key', LOSS_KEYS)
def test_teacher_only_max_needs_max_logit(key):
    with pytest.raises(ValueError, match=r"teacher_only_max=True needs temperature='max_logit', got 2\.0"):
        get_mid_level_loss({'key': key, 'kwargs': {'temperature': 2.0, 'teacher_only_max': True}})
    with pytest.raises(TypeError, match=r"teacher_only_max must be True or False, got 'yes'"):
        get_mid_level_loss({'key': key, 'kwargs': {'temperature': 'max_logit', 'teacher_only_max': 'yes'}})


@pytest.mark.parametrize('key, name', [('ATDISTLoss', 'beta'), ('ATDISTLoss', 'gamma'), ('DKDLoss', 'alpha'),
                                       ('DKDLoss', 'beta')])
def test_negative_or_non_numeric_weights(key, name):
    with pytest.raises(ValueError, match=rf'{name} must be a finite, non-negative number, got -0\.5'):
        get_mid_level_loss({'key': key, 'kwargs': {name: -0.5}})
    with pytest.raises(TypeError, match=rf"{name} must be a non-negative real number, got '1' \(str\)"):
        get_mid_level_loss({'key': key, 'kwargs': {name: '1'}})


@pytest.mark.parametrize('key', ['ATKDLoss', 'DKDLoss'])
def test_standardize_must_be_boolean(key):
    with pytest.raises(TypeError, match=r"standardize must be True or False, got 'true'"):
        get_mid_level_loss({'key': key, 'kwargs': {'standardize': 'true'}})


@pytest.mark.parametrize('bad', [-1, 2.5, True])
def test_dkd_warmup_epochs_must_be_non_negative_integer(bad):
    with pytest.raises(ValueError, match=rf'warmup_epochs must be a non-negative integer, got {bad!r}'):
        get_mid_level_loss({'key': 'DKDLoss', 'kwargs': {'warmup_epochs': bad}})


@pytest.mark.parametrize('loss', [F.ttm_loss, F.wttm_loss, F.dist_loss, F.kd_loss], ids=['ttm', 'wttm', 'dist', 'kd'])
def test_bad_logits(loss):
    with pytest.raises(ValueError, match=r'student_logits must be 2-D logits of shape \(N, C\), got shape \(10,\)'):
        loss(torch.randn(10), torch.randn(10), temperature=2.0)
    with pytest.raises(ValueError, match=r'teacher_logits must be 2-D logits .* got shape \(4, 10, 1\)'):
        loss(torch.randn(4, 10), torch.randn(4, 10, 1), temperature=2.0)
    with pytest.raises(ValueError, match=r'must have the same shape \(N, C\), got \(4, 10\) and \(4, 11\)'):
        loss(torch.randn(4, 10), torch.randn(4, 11), temperature=2.0)
    with pytest.raises(TypeError, match=r'student_logits must be a floating-point tensor, got dtype torch.int64'):
        loss(torch.ones(4, 10, dtype=torch.long), torch.randn(4, 10), temperature=2.0)
    with pytest.raises(TypeError, match=r'teacher_logits must be a torch.Tensor of shape \(N, C\), got list'):
        loss(torch.randn(2, 2), [[0.0, 1.0], [1.0, 0.0]], temperature=2.0)
    with pytest.raises(ValueError, match=r'at least 1 sample and 2 classes, got shape \(4, 1\)'):
        loss(torch.randn(4, 1), torch.randn(4, 1), temperature=2.0)


def test_dkd_bad_targets():
    with pytest.raises(ValueError, match=r'targets must be class indices in \[0, 9\], got values in \[0, 10\]'):
        F.dkd_loss(S, T, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r'targets must be class indices in \[0, 9\], got values in \[-1, 2\]'):
        F.dkd_loss(S, T, torch.tensor([-1, 0, 1, 2]))
    with pytest.raises(ValueError, match=r'targets must have shape \(4,\) to match the logits, got \(4, 1\)'):
        F.dkd_loss(S, T, Y.unsqueeze(1))
    with pytest.raises(TypeError, match=r'targets must be an integer tensor of class indices, got torch.float32'):
        F.dkd_loss(S, T, Y.float())


def test_dkd_warmup_needs_epoch():
    with pytest.raises(ValueError,
                       match=r'warmup_epochs=20 needs the current epoch \(counted from 1\), got epoch=None'):
        F.dkd_loss(S, T, Y, warmup_epochs=20)
    criterion = get_mid_level_loss({'key': 'DKDLoss', 'kwargs': {}})
    with pytest.raises(RuntimeError, match=r"DKDLoss\(warmup_epochs=20\) needs the current epoch: set "
                                           r"train.pre_epoch_process: 'eval_teacher_and_set_loss_epoch'"):
        criterion({'.': {'output': S}}, {'.': {'output': T}}, Y)
    with pytest.raises(ValueError, match=r'epoch must be a non-negative integer \(counted from 1\), got 1.5'):
        criterion.set_epoch(1.5)
    with pytest.raises(ValueError, match=r'DKDLoss needs the class targets'):
        criterion({'.': {'output': S}}, {'.': {'output': T}}, None)


def test_adapter_names_missing_io_entry():
    criterion = get_mid_level_loss({'key': 'TTMLoss', 'kwargs': {'temperature': 2.0, 'student_module_path': 'fc'}})
    with pytest.raises(KeyError, match=r"the student io_dict has no 'output' for module path 'fc'; it holds "
                                       r"\{'\.': \['output'\]\}"):
        criterion({'.': {'output': S}}, {'.': {'output': T}}, Y)


def test_negative_weights_in_functional():
    with pytest.raises(ValueError, match=r'beta must be a finite, non-negative number, got -1'):
        F.dist_loss(S, T, beta=-1)
    with pytest.raises(ValueError, match=r'alpha must be a finite, non-negative number, got nan'):
        F.dkd_loss(S, T, Y, alpha=math.nan)
