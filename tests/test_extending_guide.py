"""docs/extending.md runs as written: the example package's files are the guide's blocks and its config trains with the
runner (B); the loss the guide adds to the plugin passes every loss test once its blocks are in place (A)."""
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT

import runner_support as support
import ttm_torchdistill.functional as F
from conftest import REPO_ROOT
from guide_blocks import guide_blocks
from guide_plugin_example import MODULES, SPECS_PATH

EXAMPLE = REPO_ROOT / 'docs' / 'examples' / 'my_kd_loss'
CONFIG = str(EXAMPLE / 'reverse_kd_wrn_16_2_from_wrn_40_2.yaml')
SUB_TERM = 'train.criterion.kwargs.sub_terms.reverse_kd.criterion'


def test_the_guide_marks_the_blocks_the_tests_run():
    assert [b.path for b in guide_blocks('file')] == ['docs/examples/my_kd_loss/my_kd_loss/__init__.py',
                                                      'docs/examples/my_kd_loss/pyproject.toml']
    assert len(guide_blocks('part of')) == 2
    assert sorted(b.path for b in guide_blocks('add to')) == sorted(list(MODULES) + [SPECS_PATH])


@pytest.mark.parametrize('block', guide_blocks('file'), ids=lambda b: b.path)
def test_the_example_package_is_the_code_the_guide_shows(block):
    assert (REPO_ROOT / block.path).read_text() == block.code


class _TagsAsData(yaml.SafeLoader):
    """Reads torchdistill's tags (``!import_call``, ...) as plain data: nothing is imported or called."""


_TagsAsData.add_multi_constructor('!', lambda loader, suffix, node: (
    loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode) else
    loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else
    loader.construct_scalar(node)))


def _is_part(part, whole):
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _is_part(v, whole[k]) for k, v in part.items())
    return part == whole


@pytest.mark.parametrize('block', guide_blocks('part of'), ids=lambda b: b.code.split(':')[0])
def test_the_config_excerpts_are_the_example_config(block):
    whole = yaml.load((REPO_ROOT / block.path).read_text(), Loader=_TagsAsData)
    assert _is_part(yaml.load(block.code, Loader=_TagsAsData), whole)


@pytest.fixture
def example_package(monkeypatch):
    """docs/examples/my_kd_loss importable; afterwards its registration and module are gone again."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert 'ReverseKDLoss' not in MIDDLE_LEVEL_LOSS_DICT
    yield
    MIDDLE_LEVEL_LOSS_DICT.pop('ReverseKDLoss', None)
    sys.modules.pop('my_kd_loss', None)


def test_the_example_loss_is_kd_with_student_and_teacher_exchanged(example_package):
    import my_kd_loss
    assert MIDDLE_LEVEL_LOSS_DICT['ReverseKDLoss'] is my_kd_loss.ReverseKDLoss
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(6, 10, generator=g, dtype=torch.float64) * 3).requires_grad_()
    t = (torch.randn(6, 10, generator=g, dtype=torch.float64) * 3).requires_grad_()
    for temperature in (1.0, 4):
        value = my_kd_loss.ReverseKDLoss(temperature=temperature)({'.': {'output': s}}, {'.': {'output': t}})
        torch.testing.assert_close(value, F.kd_loss(t.detach(), s.detach(), temperature=temperature))
    value.backward()
    assert s.grad is not None and t.grad is None
    for bad in (0, -1.0, 'high', True):
        with pytest.raises(ValueError, match=rf'^temperature must be a positive number, got {re.escape(repr(bad))}$'):
            my_kd_loss.ReverseKDLoss(temperature=bad)


def test_the_runner_names_the_example_package_keys_and_arguments(example_package, tmp_path, monkeypatch, capsys):
    """What the guide says of a misspelt key and argument, before anything is built (the package is imported by the
    config's dependencies:)."""
    monkeypatch.chdir(tmp_path)
    args = ['--config', CONFIG, '--smoke', '--device', 'cpu', '--set']
    line = support.cli_error(capsys, args + [f'{SUB_TERM}.key=ReverseKDLos'])
    assert "unknown loss key 'ReverseKDLos' in train.criterion.kwargs.sub_terms.reverse_kd (did you mean " \
           "'ReverseKDLoss'?)" in line
    assert 'my_kd_loss provides: ReverseKDLoss; ' in line
    line = support.cli_error(capsys, args + [f'{SUB_TERM}.kwargs={{temprature: 4.0}}'])
    assert line == (f"error: {SUB_TERM}.kwargs: ReverseKDLoss has no argument 'temprature' (did you mean "
                    "'temperature'?); ReverseKDLoss accepts: temperature, student_module_path, student_module_io, "
                    "teacher_module_path, teacher_module_io")


def test_the_example_config_runs_with_the_runner(tmp_path):
    result = support.run_cli(['--config', CONFIG, '--smoke', '--device', 'cpu'], cwd=str(tmp_path), timeout=300,
                             extra_env={'PYTHONPATH': os.pathsep.join([support.REPO_ROOT, str(EXAMPLE)])})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert 'Loss = 0.1 * CrossEntropyLoss() + 0.9 * ReverseKDLoss()' in output
    assert re.search(r'step 2/2 .*\(ce [\d.]+, reverse_kd [\d.]+\)', output)
    assert re.search(r'Smoke run of \S+reverse_kd_wrn_16_2_from_wrn_40_2\.yaml passed', output)
    assert os.listdir(tmp_path) == []  # a smoke run writes nothing outside its temporary folder


# what the loss tests check for the guide's new loss, at least (a test name and a part of its id)
EXPECTED = ['test_every_registered_loss_has_a_complete_spec', 'test_docstring_follows_house_order[',
            'test_docstring_yaml_example_builds_and_runs[', 'test_every_valid_configuration_builds_and_runs[',
            'test_adapter_step_reads_nothing_back_to_the_host[', 'test_matches_slow_per_sample_reference[',
            'test_registered_adapter_computes_the_public_function[', 'test_gradcheck[', 'test_identity[',
            'test_resolved_temperature_gives_bit_identical_loss_and_gradient[', 'test_construction_errors[',
            'test_every_misspelt_argument_is_named_with_the_argument_meant[', 'test_bad_temperature[']


def test_the_loss_the_guide_adds_to_the_plugin_passes_every_loss_test():
    """Part A's blocks, run in the modules they are added to (tests/guide_plugin_example.py), then the loss tests of
    the new key. Left out: the README and losses.md rows and the module's __all__ and docstring, which the guide
    shows but does not write into those files."""
    tests = ['tests/test_loss_specs.py', 'tests/test_loss_registry.py', 'tests/test_losses_properties.py',
             'tests/test_losses_errors.py']
    command = [sys.executable, '-m', 'pytest', '-v', '-p', 'no:cacheprovider', '-p', 'guide_plugin_example', *tests,
               '-k', '(ATReverseKDLoss or complete_spec) and not readme and not losses_doc and not exports_it']
    result = subprocess.run(command, cwd=support.REPO_ROOT, env=support.subprocess_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    passed = [line for line in result.stdout.splitlines() if line.endswith('PASSED') or ' PASSED ' in line]
    for name in EXPECTED:
        assert any(name in line and ('ATReverseKDLoss' in line or '[' not in name) for line in passed), name
    assert int(re.search(r'(\d+) passed', result.stdout).group(1)) >= 60


def test_the_readme_and_the_docs_link_the_guide():
    assert '](docs/extending.md)' in (REPO_ROOT / 'README.md').read_text()
    assert '](extending.md)' in (REPO_ROOT / 'docs' / 'losses.md').read_text()
