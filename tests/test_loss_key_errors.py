"""A misspelt loss key is one ``error:`` line naming the closest registered key and every registered key by package,
read from torchdistill's registries after the config's ``dependencies:`` are imported (command line, in-process)."""
import sys
import textwrap

import pytest
from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT

import runner_support as support

TINY = f'{support.CONFIG_DIR}/runner_tiny_kd.yaml'
KD = 'train.criterion.kwargs.sub_terms.kd'


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder with the teacher checkpoint of runner_tiny_kd.yaml, and a package ``my_loss_package``
    (importable, not imported) that registers ``MyLoss`` with torchdistill's own decorator."""
    folder = support.prepare_tiny_run_folder(str(tmp_path / 'run'))
    monkeypatch.chdir(folder)
    (tmp_path / 'my_loss_package.py').write_text(textwrap.dedent('''
        from torch import nn
        from torchdistill.losses.registry import register_mid_level_loss

        @register_mid_level_loss
        class MyLoss(nn.Module):
            def forward(self, student_io_dict, teacher_io_dict, targets=None):
                return 0.0
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield folder
    MIDDLE_LEVEL_LOSS_DICT.pop('MyLoss', None)
    sys.modules.pop('my_loss_package', None)


def _error(capsys, key, *more):
    return support.cli_error(capsys, ['--config', TINY, '--device', 'cpu', '--set', f'{KD}.criterion.key={key}',
                                      *more])


def test_a_misspelt_plugin_key_names_the_closest_and_every_registered_key_by_package(workdir, capsys):
    line = _error(capsys, 'WTTMLos')
    assert line.startswith(f"error: unknown loss key 'WTTMLos' in {KD} (did you mean 'WTTMLoss'?); registered: ")
    for listed in ('ttm_torchdistill provides: ATDISTLoss, ATKDLoss, DKDLoss, ITRDLoss, MLKDLoss, TTMLoss, WTTMLoss',
                   'torchdistill provides: ATLoss, ', ' DISTLoss, ', ' KDLoss, ', 'torch provides: BCELoss, ',
                   ' CrossEntropyLoss, ', 'runner_support provides: test_runner_epoch_recorder'):
        assert listed in line, listed
    # torchdistill fills its torch.nn table with every class of torch.nn.modules.loss, imports included
    assert ' Tensor' not in line and ' Module' not in line and '_Loss' not in line


def test_a_misspelt_torchdistill_key_names_it(workdir, capsys):
    line = _error(capsys, 'KDLos')
    assert "unknown loss key 'KDLos' in train.criterion.kwargs.sub_terms.kd (did you mean 'KDLoss'?)" in line


def test_the_keys_of_a_package_named_under_dependencies_are_read_when_it_is_imported(workdir, capsys):
    assert 'MyLoss' not in MIDDLE_LEVEL_LOSS_DICT
    deps = "dependencies=[{name: runner_support}, {name: my_loss_package}]"
    line = _error(capsys, 'MyLos', '--set', deps)
    assert "unknown loss key 'MyLos' in train.criterion.kwargs.sub_terms.kd (did you mean 'MyLoss'?)" in line
    assert 'my_loss_package provides: MyLoss; ' in line
    # the package is not named: its key is unknown, and the message says where keys come from
    MIDDLE_LEVEL_LOSS_DICT.pop('MyLoss')
    sys.modules.pop('my_loss_package')
    line = _error(capsys, 'MyLoss')
    assert "unknown loss key 'MyLoss' in train.criterion.kwargs.sub_terms.kd" in line
    assert 'my_loss_package' not in line
    assert line.endswith("another package's keys are listed once the config's `dependencies:` imports it")


def test_no_suggestion_when_nothing_is_close(workdir, capsys):
    line = _error(capsys, 'Zzzzzz')
    assert line.startswith(f"error: unknown loss key 'Zzzzzz' in {KD}; registered: ")


def test_a_misspelt_high_level_key_names_the_closest(workdir, capsys):
    line = support.cli_error(capsys, ['--config', TINY, '--device', 'cpu', '--set',
                                      'train.criterion.key=WeightedSumLos'])
    assert line == ("error: unknown high-level loss key 'WeightedSumLos' in train.criterion.key (did you mean "
                    "'WeightedSumLoss'?); available: WeightedSumLoss")
