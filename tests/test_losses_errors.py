"""Every bad input gets a ValueError/TypeError naming the parameter, what was expected and what came: the public
functions of every registered loss's variants, each spec's construction errors (tests/loss_specs.py), misspelt and
missing arguments of every registered loss, and the edge cases by name."""
import dataclasses
import inspect
import math

import pytest
import torch
from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT, get_mid_level_loss

import ttm_torchdistill  # noqa: F401
import ttm_torchdistill.functional as F
from loss_specs import LOGITS, REGISTERED, SPECS, build, call_function, make_inputs, spec_of, variant_params
from ttm_torchdistill.checks.signatures import accepted_arguments

S, T = torch.randn(4, 10), torch.randn(4, 10)
Y = torch.tensor([0, 1, 2, 3])


def _temperature_functions(per_sample_only=False):
    """pytest params of a call ``f(temperature, **options)`` for every variant with a temperature, and
    resolve_temperature."""
    params = []
    for key, variant in (p.values for p in variant_params('per_sample_temperature' if per_sample_only else None)):
        spec = SPECS[key]
        if not spec.views:
            continue
        x, y = make_inputs(spec, n=4, c=10, dtype=torch.float32)

        def call(temperature, *, _spec=spec, _variant=variant, _x=x, _y=y, **opts):
            return call_function(_spec, _variant, _x, _y, temperature=temperature, **opts)
        params.append(pytest.param(call, id=f'{key}-{variant.name}'))
    return params + [pytest.param(lambda temperature, **opts: F.resolve_temperature(S, T, temperature, **opts),
                                  id='resolve_temperature')]


BAD_NUMBERS = [
    (0.0, ValueError, r"temperature must be a positive number or 'max_logit', got 0\.0"),
    (-1, ValueError, r"temperature must be a positive number or 'max_logit', got -1"),
    (math.inf, ValueError, r"got inf"),
    (math.nan, ValueError, r"got nan"),
    ('maxlogit', ValueError, r"temperature must be a positive number or 'max_logit', got 'maxlogit'"),
    (True, TypeError, r"temperature must be a positive number or 'max_logit', got True \(bool\)"),
    (None, TypeError, r"got None \(NoneType\)"),
]
BAD_TENSORS = [
    (torch.tensor([1.0, -1.0, 1.0, 1.0]), ValueError, r'temperature must be positive and finite everywhere'),
    (torch.ones(3), ValueError, r'per-sample temperature must have shape \(4,\) or \(4, 1\) for 4 samples, got \(3,\)'),
]


@pytest.mark.parametrize('bad, error, message', BAD_NUMBERS)
@pytest.mark.parametrize('loss', _temperature_functions())
def test_bad_temperature(loss, bad, error, message):
    with pytest.raises(error, match=message):
        loss(bad)


@pytest.mark.parametrize('bad, error, message', BAD_TENSORS)
@pytest.mark.parametrize('loss', _temperature_functions(per_sample_only=True))
def test_bad_per_sample_temperature(loss, bad, error, message):
    with pytest.raises(error, match=message):
        loss(bad)


@pytest.mark.parametrize('loss', _temperature_functions())
def test_functional_teacher_only_max_needs_max_logit_and_a_bool(loss):
    with pytest.raises(ValueError, match=r"teacher_only_max=True needs temperature='max_logit', got 2\.0"):
        loss(2.0, teacher_only_max=True)
    with pytest.raises(TypeError, match=r"teacher_only_max must be True or False, got 'yes'"):
        loss('max_logit', teacher_only_max='yes')


@pytest.mark.parametrize('loss', _temperature_functions()[:-1])
def test_losses_have_no_return_temperature(loss):
    """One return type per loss: the temperature comes from resolve_temperature."""
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'return_temperature'"):
        loss('max_logit', return_temperature=True)


@pytest.mark.parametrize('key', [k for k in REGISTERED if k in SPECS
                                 and 'standardize' in inspect.signature(SPECS[k].function).parameters])
def test_functional_standardize_must_be_boolean(key):
    spec = spec_of(key)
    x, y = make_inputs(spec, n=4, c=10, dtype=torch.float32)
    for variant in spec.variants:
        with pytest.raises(TypeError, match=r"standardize must be True or False, got 'true'"):
            call_function(spec, dataclasses.replace(variant, kwargs={**variant.kwargs, 'standardize': 'true'}), x, y)


def _error_params():
    for key in REGISTERED:
        for case in (SPECS[key].errors if key in SPECS else ()):
            yield pytest.param(key, case, id=f'{key}-{case.id}')


@pytest.mark.parametrize('key, case', list(_error_params()))
def test_construction_errors(key, case):
    """Each spec's error cases, built by torchdistill's registry over the spec's minimal kwargs."""
    with pytest.raises(case.error, match=case.match):
        build(key, {**spec_of(key).required, **case.kwargs})


@pytest.mark.parametrize('key', REGISTERED)
def test_adapters_reject_misspelt_arguments(key):
    """The message names the class written in the config, not the private base the adapters share."""
    required = spec_of(key).required
    with pytest.raises(TypeError, match=rf"^{key} has no argument 'standardise'"):
        build(key, {**required, 'standardise': True})
    with pytest.raises(TypeError, match=rf"^{key} has no argument 'student_module_pth' \(did you mean "
                                        rf"'student_module_path'\?\); {key} accepts: .*student_module_path"):
        build(key, {**required, 'student_module_pth': 'fc'})


def _arguments():
    for key in REGISTERED:
        if key in SPECS:
            for name in accepted_arguments(MIDDLE_LEVEL_LOSS_DICT[key]).names:
                yield pytest.param(key, name, id=f'{key}-{name}')


@pytest.mark.parametrize('key, name', list(_arguments()))
def test_every_misspelt_argument_is_named_with_the_argument_meant(key, name):
    """Dropping the last letter of any argument (a required one included) gives its name back as the suggestion."""
    spec = spec_of(key)
    value = next(config[name] for config in spec.valid if name in config)
    kwargs = {k: v for k, v in spec.required.items() if k != name}
    kwargs[name[:-1]] = value
    with pytest.raises(TypeError, match=rf"^{key} has no argument '{name[:-1]}' \(did you mean '{name}'\?\); "
                                        rf"{key} accepts: "):
        build(key, kwargs)


@pytest.mark.parametrize('key, name', [(k, n) for k in REGISTERED
                                       for n in accepted_arguments(MIDDLE_LEVEL_LOSS_DICT[k]).required])
def test_a_missing_required_argument_is_named(key, name):
    kwargs = {k: v for k, v in spec_of(key).required.items() if k != name}
    with pytest.raises(TypeError, match=rf"^{key} needs '{name}', which is not given; {key} accepts: .*"
                                        rf"{name} \(required\)"):
        build(key, kwargs)


def _logit_calls():
    for key, variant in (p.values for p in variant_params()):
        spec = SPECS[key]
        if spec.inputs == LOGITS:
            def call(s, t, _spec=spec, _variant=variant):
                args = {'student': s, 'teacher': t, 'targets': Y}
                return _spec.function(*(args[a] for a in _spec.args), **_variant.kwargs, temperature=2.0)
            yield pytest.param(call, id=f'{key}-{variant.name}')


@pytest.mark.parametrize('loss', list(_logit_calls()))
def test_bad_logits(loss):
    with pytest.raises(ValueError, match=r'student_logits must be 2-D logits of shape \(N, C\), got shape \(10,\)'):
        loss(torch.randn(10), torch.randn(10))
    with pytest.raises(ValueError, match=r'teacher_logits must be 2-D logits .* got shape \(4, 10, 1\)'):
        loss(torch.randn(4, 10), torch.randn(4, 10, 1))
    with pytest.raises(ValueError, match=r'must have the same shape \(N, C\), got \(4, 10\) and \(4, 11\)'):
        loss(torch.randn(4, 10), torch.randn(4, 11))
    with pytest.raises(TypeError, match=r'student_logits must be a floating-point tensor, got dtype torch.int64'):
        loss(torch.ones(4, 10, dtype=torch.long), torch.randn(4, 10))
    with pytest.raises(TypeError, match=r'teacher_logits must be a torch.Tensor of shape \(N, C\), got list'):
        loss(torch.randn(2, 2), [[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r'at least 1 sample and 2 classes, got shape \(4, 1\)'):
        loss(torch.randn(4, 1), torch.randn(4, 1))


# ---- edge cases by name ----

def test_max_logit_temperature_teacher_only_max_must_be_a_bool():
    with pytest.raises(TypeError, match=r"teacher_only_max must be True or False, got 1"):
        F.max_logit_temperature(S, T, teacher_only_max=1)


def test_teacher_only_is_spelt_teacher_only_max_everywhere():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'teacher_only'"):
        F.max_logit_temperature(S, T, teacher_only=True)


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
