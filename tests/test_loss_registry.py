"""Registry-driven checks: every loss the plugin registers is tested here without a test of its own."""
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
from ttm_torchdistill import _registry
from conftest import REPO_ROOT

# The logit losses; the feature losses (ttm_torchdistill.feature_losses) have their registry checks in
# tests/test_feature_losses.py.
PLUGIN_LOSSES = sorted(k for k, v in MIDDLE_LEVEL_LOSS_DICT.items() if v.__module__ == 'ttm_torchdistill.losses')


#: Losses that read two views of each image (MLKD: weak and strong); the others read one.
TWO_VIEW_LOSSES = {'MLKDLoss'}


def io_dicts(key, student, teacher, path='.', io='output', teacher_path='.', teacher_io='output'):
    """The (student, teacher) io dicts a loss of ``key`` reads: the logits at ``path``/``io``; a two-view loss gets
    them as its weak view and a shifted copy as its strong view (its default paths, or the given weak ones)."""
    if key not in TWO_VIEW_LOSSES:
        return {path: {io: student}}, {teacher_path: {teacher_io: teacher}}
    weak = 'weak' if path == '.' else path
    teacher_weak = 'weak' if teacher_path == '.' else teacher_path
    return ({weak: {io: student}, 'strong': {'output': student.flip(0)}},
            {teacher_weak: {teacher_io: teacher}, 'strong': {'output': teacher.flip(0)}})


def temperature_shape(key, n):
    """Shape of ``last_temperature`` after a batch of ``n``: one row per view."""
    return (2, n) if key in TWO_VIEW_LOSSES else (n,)


def test_plugin_registers_the_documented_keys():
    assert PLUGIN_LOSSES == ['ATDISTLoss', 'ATKDLoss', 'DKDLoss', 'MLKDLoss', 'TTMLoss', 'WTTMLoss']


def _yaml_examples(cls):
    blocks = re.findall(r'\.\. code-block:: yaml\n\n(.*?)(?:\n\s*\n|\Z)', inspect.getdoc(cls), flags=re.S)
    return [yaml.safe_load(textwrap.dedent(block)) for block in blocks]


@pytest.mark.parametrize('key', PLUGIN_LOSSES)
def test_docstring_follows_house_order(key):
    doc = inspect.getdoc(MIDDLE_LEVEL_LOSS_DICT[key])
    for part in ('.. math::', 'https://github.com/', ':param temperature:', '.. code-block:: yaml'):
        assert part in doc, f'{key} docstring lacks {part!r}'


@pytest.mark.parametrize('key', PLUGIN_LOSSES)
def test_docstring_yaml_example_builds_and_runs(key):
    (example,) = _yaml_examples(MIDDLE_LEVEL_LOSS_DICT[key])
    (sub_term,) = example.values()
    assert sub_term['criterion']['key'] == key
    criterion = get_mid_level_loss(sub_term['criterion'])
    if hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(1)
    student = torch.randn(8, 10, requires_grad=True)
    teacher = torch.randn(8, 10, requires_grad=True)
    value = sub_term['weight'] * criterion(*io_dicts(key, student, teacher), torch.randint(0, 10, (8,)))
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value)
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize('key', PLUGIN_LOSSES)
def test_max_logit_records_per_sample_temperature(key):
    criterion = get_mid_level_loss({'key': key, 'kwargs': {'temperature': 'max_logit'}})
    if hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(100)
    assert criterion.last_temperature is None
    criterion(*io_dicts(key, torch.randn(6, 10), torch.randn(6, 10)), torch.zeros(6).long())
    assert criterion.last_temperature.shape == temperature_shape(key, 6)
    assert not criterion.last_temperature.requires_grad
    assert (criterion.last_temperature > 0).all()


@pytest.mark.parametrize('key', PLUGIN_LOSSES)
def test_last_temperature_is_the_resolved_temperature_and_stays_a_tensor(key):
    criterion = get_mid_level_loss({'key': key, 'kwargs': {'temperature': 'max_logit', 'teacher_only_max': True}})
    if hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(100)
    s, t = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64)
    criterion(*io_dicts(key, s, t), torch.arange(6))
    expected = F.resolve_temperature(s, t, 'max_logit', teacher_only_max=True)
    if key in TWO_VIEW_LOSSES:  # weak view, then the strong one (the same logits, flipped)
        expected = torch.stack([expected, expected.flip(0)])
    assert isinstance(criterion.last_temperature, torch.Tensor)
    assert criterion.last_temperature.device == s.device and criterion.last_temperature.dtype == torch.float64
    assert torch.equal(criterion.last_temperature, expected)
    fixed = get_mid_level_loss({'key': key, 'kwargs': {'temperature': 2.0}})
    if hasattr(fixed, 'set_epoch'):
        fixed.set_epoch(100)
    fixed(*io_dicts(key, s, t), torch.arange(6))
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
    """Each plugin loss's docstring example, plus the 'max_logit' temperature with both maxima."""
    for key in PLUGIN_LOSSES:
        (example,) = _yaml_examples(MIDDLE_LEVEL_LOSS_DICT[key])
        (sub_term,) = example.values()
        kwargs = sub_term['criterion'].get('kwargs', {})
        yield pytest.param(key, kwargs, id=f'{key}-example')
        for teacher_only_max in (False, True):
            yield pytest.param(key, dict(kwargs, temperature='max_logit', teacher_only_max=teacher_only_max),
                               id=f'{key}-max_logit' + ('-teacher_only_max' if teacher_only_max else ''))


@pytest.mark.parametrize('key, kwargs', list(_representative_kwargs()))
def test_adapter_step_reads_nothing_back_to_the_host(key, kwargs, monkeypatch):
    """No host-device synchronisation per training step: forward and backward read no tensor value."""
    criterion = get_mid_level_loss({'key': key, 'kwargs': kwargs})
    if hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(3)
    student = torch.randn(8, 10, requires_grad=True)
    teacher, targets = torch.randn(8, 10), torch.randint(0, 10, (8,))
    with count_host_reads(monkeypatch) as calls:
        loss = criterion(*io_dicts(key, student, teacher), targets)
        loss.backward()
    assert calls == []
    assert torch.isfinite(loss) and student.grad is not None


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


@pytest.mark.parametrize('key', PLUGIN_LOSSES)
def test_reads_logits_from_configured_module_path(key):
    criterion = get_mid_level_loss({'key': key, 'kwargs': {
        'temperature': 2.0, 'student_module_path': 'fc', 'student_module_io': 'input',
        'teacher_module_path': 'head', 'teacher_module_io': 'output'}})
    if hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(100)
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.arange(4)
    nested = criterion(*io_dicts(key, s, t, 'fc', 'input', 'head', 'output'), y)
    default = get_mid_level_loss({'key': key, 'kwargs': {'temperature': 2.0}})
    if hasattr(default, 'set_epoch'):
        default.set_epoch(100)
    torch.testing.assert_close(nested, default(*io_dicts(key, s, t), y))


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
    assert set(PLUGIN_LOSSES) <= added


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
