"""Registry-driven checks of the adapters: every loss the plugin registers is tested here from its spec
(tests/loss_specs.py), without a test of its own."""
import contextlib
import inspect
import re
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from torch import nn
from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT, get_mid_level_loss

import ttm_torchdistill  # noqa: F401
import ttm_torchdistill.functional as F
from conftest import REPO_ROOT
from loss_specs import REGISTERED, SPECS, build, io_dicts, make_inputs, spec_of
from ttm_torchdistill import _registry
from ttm_torchdistill.checks.signatures import accepted_arguments

def _valid_params():
    for key in REGISTERED:
        for n, kwargs in enumerate(SPECS[key].valid if key in SPECS else ()):
            yield pytest.param(key, kwargs, id=f'{key}-valid{n}')


def _yaml_examples(cls):
    blocks = re.findall(r'\.\. code-block:: yaml\n\n(.*?)(?:\n\s*\n|\Z)', inspect.getdoc(cls), flags=re.S)
    return [yaml.safe_load(textwrap.dedent(block)) for block in blocks]


def _doc_example(key):
    (example,) = _yaml_examples(MIDDLE_LEVEL_LOSS_DICT[key])
    (sub_term,) = example.values()
    return sub_term


@pytest.mark.parametrize('key', REGISTERED)
def test_docstring_follows_house_order(key):
    """Summary, math, the paper with the authors' code, the arguments, a YAML example; every argument documented."""
    doc = inspect.getdoc(MIDDLE_LEVEL_LOSS_DICT[key])
    positions = []
    for part in ('.. math::', 'https://github.com/', ':param ', '.. code-block:: yaml'):
        assert part in doc, f'{key} docstring lacks {part!r}'
        positions.append(doc.index(part))
    assert positions == sorted(positions), f'{key} docstring: math, authors\' code, :param, yaml example, in order'
    assert doc.index('.. math::') > 0 and not doc.startswith(('.. ', ':')), f'{key} docstring: one-line summary first'
    undocumented = [name for name in accepted_arguments(MIDDLE_LEVEL_LOSS_DICT[key]).names
                    if f':param {name}:' not in doc and f'``{name}``' not in doc]
    assert not undocumented, f'{key} docstring does not name its arguments {undocumented}'


@pytest.mark.parametrize('key', REGISTERED)
def test_docstring_yaml_example_builds_and_runs(key):
    spec = spec_of(key)
    sub_term = _doc_example(key)
    assert sub_term['criterion']['key'] == key
    criterion = build(key, sub_term['criterion'].get('kwargs', {}), epoch=1)
    x, y = make_inputs(spec, n=8, c=10, dtype=torch.float32)
    for name in x:
        x[name].requires_grad_()
    value = sub_term['weight'] * criterion(*io_dicts(criterion, x), y)
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value)
    assert all(x[name].grad is not None for name in x if name.startswith('student'))
    assert all(x[name].grad is None for name in x if name.startswith('teacher'))


@pytest.mark.parametrize('key, kwargs', list(_valid_params()))
def test_every_valid_configuration_builds_and_runs(key, kwargs):
    criterion = build(key, kwargs)
    x, y = make_inputs(spec_of(key), n=6, c=10, dtype=torch.float32)
    value = criterion(*io_dicts(criterion, x), y)
    assert value.dim() == 0 and torch.isfinite(value)
    for name, given in kwargs.items():  # the adapter keeps what it was given
        assert getattr(criterion, name) == given, name


def _paths(kwargs):
    return {k: v for k, v in kwargs.items() if k.endswith(('_module_path', '_module_io'))}


def _layout(io_dict):
    return {path: sorted(ios) for path, ios in io_dict.items()}


@pytest.mark.parametrize('key, kwargs', [p for p in _valid_params() if p.values[0] in SPECS
                                         and _paths(p.values[1]) != _paths(SPECS[p.values[0]].required)])
def test_module_paths_only_change_where_the_tensors_are_read(key, kwargs):
    """The same tensors read from the configured paths give the value read from the default paths."""
    spec = spec_of(key)
    default = {k: v for k, v in kwargs.items() if k not in _paths(kwargs)}
    default.update(_paths(spec.required))
    configured, plain = build(key, kwargs), build(key, default)
    x, y = make_inputs(spec, n=4, c=10)
    assert [_layout(d) for d in io_dicts(configured, x)] != [_layout(d) for d in io_dicts(plain, x)]
    torch.testing.assert_close(configured(*io_dicts(configured, x), y), plain(*io_dicts(plain, x), y))


@pytest.mark.parametrize('key', REGISTERED)
def test_adapter_never_sends_a_gradient_to_the_teacher(key):
    spec = spec_of(key)
    criterion = build(key, spec.required)
    x, y = make_inputs(spec, n=6, c=10)
    for name in x:
        x[name].requires_grad_()
    criterion(*io_dicts(criterion, x), y).backward()
    assert [name for name in x if x[name].grad is None] == [name for name in x if name.startswith('teacher')]


TEMPERATURE_LOSSES = [key for key in REGISTERED if key in SPECS and SPECS[key].views]


def _expected_temperature(spec, x, teacher_only_max):
    rows = [F.resolve_temperature(x[s], x[t], 'max_logit', teacher_only_max=teacher_only_max) for s, t in spec.views]
    return rows[0] if len(rows) == 1 else torch.stack(rows)


@pytest.mark.parametrize('key', TEMPERATURE_LOSSES)
def test_max_logit_records_per_sample_temperature(key):
    spec = spec_of(key)
    criterion = build(key, {**spec.required, 'temperature': 'max_logit'})
    assert criterion.last_temperature is None
    x, y = make_inputs(spec, n=6, c=10, dtype=torch.float32)
    criterion(*io_dicts(criterion, x), y)
    assert criterion.last_temperature.shape == ((6,) if len(spec.views) == 1 else (len(spec.views), 6))
    assert not criterion.last_temperature.requires_grad
    assert (criterion.last_temperature > 0).all()


@pytest.mark.parametrize('key', TEMPERATURE_LOSSES)
def test_last_temperature_is_the_resolved_temperature_and_stays_a_tensor(key):
    spec = spec_of(key)
    criterion = build(key, {**spec.required, 'temperature': 'max_logit', 'teacher_only_max': True})
    x, y = make_inputs(spec, n=6, c=10)
    criterion(*io_dicts(criterion, x), y)
    expected = _expected_temperature(spec, x, teacher_only_max=True)
    assert isinstance(criterion.last_temperature, torch.Tensor)
    assert criterion.last_temperature.device == expected.device and criterion.last_temperature.dtype == torch.float64
    assert torch.equal(criterion.last_temperature, expected)
    fixed = build(key, {**spec.required, 'temperature': 2.0})
    fixed(*io_dicts(fixed, x), y)
    assert fixed.last_temperature is None


# Every Python-level way of reading a tensor's value back to the host. On a GPU each one waits for the
# device (a host-device synchronisation); on these CPU tensors they are merely counted.
HOST_READS = ('item', 'tolist', '__bool__', '__int__', '__float__', '__index__', '__array__', 'cpu', 'numpy',
              'nonzero')


@contextlib.contextmanager
def count_host_reads(monkeypatch):
    calls = []
    with monkeypatch.context() as patch:
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(self, *args, __name=name, __original=original, **kwargs):
                calls.append(__name)
                return __original(self, *args, **kwargs)
            patch.setattr(torch.Tensor, name, counted)
        yield calls


def _representative_kwargs():
    """Each registered loss's docstring example, plus the 'max_logit' temperature with both maxima."""
    for key in REGISTERED:
        kwargs = _doc_example(key)['criterion'].get('kwargs', {})
        yield pytest.param(key, kwargs, id=f'{key}-example')
        if key not in TEMPERATURE_LOSSES:
            continue
        for teacher_only_max in (False, True):
            yield pytest.param(key, dict(kwargs, temperature='max_logit', teacher_only_max=teacher_only_max),
                               id=f'{key}-max_logit' + ('-teacher_only_max' if teacher_only_max else ''))


@pytest.mark.parametrize('key, kwargs', list(_representative_kwargs()))
def test_adapter_step_reads_nothing_back_to_the_host(key, kwargs, monkeypatch):
    """No host-device synchronisation per training step: forward and backward read no tensor value."""
    criterion = build(key, kwargs, epoch=3)
    x, targets = make_inputs(spec_of(key), n=8, c=10, dtype=torch.float32)
    with count_host_reads(monkeypatch) as calls:
        loss = criterion(*io_dicts(criterion, x), targets)
        loss.backward()
    assert calls == []
    assert torch.isfinite(loss) and all(x[name].grad is not None for name in x if name.startswith('student'))


def test_host_read_counter_sees_the_checks_of_the_functional_api(monkeypatch):
    """The functional API reads back a tensor temperature and DKD's target range: the counter must see it."""
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.arange(4)
    with count_host_reads(monkeypatch) as calls:
        F.dkd_loss(s, t, y)
    assert calls == ['tolist']
    with count_host_reads(monkeypatch) as calls:
        F.kd_loss(s, t, temperature=torch.full((4,), 2.0))
    assert calls == ['__bool__']
    with count_host_reads(monkeypatch) as calls:
        F.kd_loss(s, t, temperature='max_logit', standardize=True)
    assert calls == []


def test_dkd_adapter_asserts_target_range_on_the_device():
    criterion = get_mid_level_loss({'key': 'DKDLoss', 'kwargs': {'warmup_epochs': 0}})
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    for bad in ([0, 1, 2, 10], [-1, 0, 1, 2]):
        with pytest.raises(RuntimeError, match=r'targets must be class indices in \[0, 9\]'):
            criterion({'.': {'output': s}}, {'.': {'output': t}}, torch.tensor(bad))
    with pytest.raises(ValueError, match=r'targets must have shape \(4,\) to match the logits, got \(4, 1\)'):
        criterion({'.': {'output': s}}, {'.': {'output': t}}, torch.arange(4).unsqueeze(1))
    with pytest.raises(TypeError, match=r'targets must be an integer tensor of class indices, got torch.float32'):
        criterion({'.': {'output': s}}, {'.': {'output': t}}, torch.arange(4).float())


def test_importing_the_plugin_leaves_every_existing_entry_untouched():
    script = textwrap.dedent('''
        import torchdistill.core, torchdistill.losses, torchdistill.models, torchdistill.datasets, torchdistill.optim
        from torchdistill.losses import registry as losses
        from torchdistill.models import registry as models
        from torchdistill.core.interfaces import registry as procs
        tables = [getattr(m, name) for m in (losses, models, procs) for name in dir(m) if name.endswith('_DICT')]
        before = [dict(t) for t in tables]
        import ttm_torchdistill
        changed = [(k, t) for b, t in zip(before, tables) for k in b if t[k] is not b[k]]
        added = sorted(k for b, t in zip(before, tables) for k in t if k not in b)
        assert not changed, changed
        print(','.join(added))
    ''')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    added = set(result.stdout.strip().split(','))
    assert set(REGISTERED) <= added


def test_registering_a_taken_loss_key_is_refused():
    class DISTLoss(nn.Module):
        pass

    with pytest.raises(KeyError, match=r"mid-level loss key 'DISTLoss' is already registered to "
                                       r"torchdistill\.losses\.mid_level\.DISTLoss; refusing to replace it"):
        _registry.mid_level_loss()(DISTLoss)
    with pytest.raises(KeyError, match=r"mid-level loss key 'MSELoss' would be shadowed by the torch.nn loss"):
        _registry.mid_level_loss('MSELoss')(DISTLoss)
    assert MIDDLE_LEVEL_LOSS_DICT['DISTLoss'].__module__ == 'torchdistill.losses.mid_level'


def test_registering_a_torchvision_model_name_is_refused():
    def resnet18():
        return nn.Identity()

    with pytest.raises(KeyError, match=r"model key 'resnet18' would be shadowed by torchvision\.models\.resnet18"):
        _registry.model()(resnet18)


def test_registering_the_same_definition_again_is_allowed():
    cls = MIDDLE_LEVEL_LOSS_DICT['TTMLoss']
    assert _registry.mid_level_loss()(cls) is cls
