"""Registry-driven checks: every loss the plugin registers is tested here without a test of its own."""
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
from ttm_torchdistill import _registry
from conftest import REPO_ROOT

# The logit losses; the feature losses (ttm_torchdistill.feature_losses) have their registry checks in
# tests/test_feature_losses.py.
PLUGIN_LOSSES = sorted(k for k, v in MIDDLE_LEVEL_LOSS_DICT.items() if v.__module__ == 'ttm_torchdistill.losses')


def test_plugin_registers_the_documented_keys():
    assert PLUGIN_LOSSES == ['ATDISTLoss', 'ATKDLoss', 'DKDLoss', 'TTMLoss', 'WTTMLoss']


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
    value = sub_term['weight'] * criterion({'.': {'output': student}}, {'.': {'output': teacher}},
                                           torch.randint(0, 10, (8,)))
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value)
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize('key', PLUGIN_LOSSES)
def test_max_logit_records_per_sample_temperature(key):
    criterion = get_mid_level_loss({'key': key, 'kwargs': {'temperature': 'max_logit'}})
    if hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(100)
    assert criterion.last_temperature is None
    criterion({'.': {'output': torch.randn(6, 10)}}, {'.': {'output': torch.randn(6, 10)}}, torch.zeros(6).long())
    assert criterion.last_temperature.shape == (6,) and not criterion.last_temperature.requires_grad
    assert (criterion.last_temperature > 0).all()


@pytest.mark.parametrize('key', PLUGIN_LOSSES)
def test_reads_logits_from_configured_module_path(key):
    criterion = get_mid_level_loss({'key': key, 'kwargs': {
        'temperature': 2.0, 'student_module_path': 'fc', 'student_module_io': 'input',
        'teacher_module_path': 'head', 'teacher_module_io': 'output'}})
    if hasattr(criterion, 'set_epoch'):
        criterion.set_epoch(100)
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.arange(4)
    nested = criterion({'fc': {'input': s}}, {'head': {'output': t}}, y)
    default = get_mid_level_loss({'key': key, 'kwargs': {'temperature': 2.0}})
    if hasattr(default, 'set_epoch'):
        default.set_epoch(100)
    torch.testing.assert_close(nested, default({'.': {'output': s}}, {'.': {'output': t}}, y))


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
