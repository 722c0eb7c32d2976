"""Bad input ends with one ``error:`` line on stderr, exit code 1, no traceback (runner called in-process)."""
import os
import shutil
import sys
import types
import urllib.error
import urllib.request

import pytest
import torch

import runner_support as support
from ttm_torchdistill import cli

TINY = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')
CIFAR = os.path.join(support.CONFIG_DIR, 'runner_cifar100_wttm.yaml')
NO_TEACHER_CKPT = ['--set', 'models.teacher_model.src_ckpt=teacher.pt']  # an existing file: the dataset is the first problem


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder holding a valid teacher checkpoint for runner_tiny_kd.yaml."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict(), 'epoch': 240}, 'teacher.pt')
    return tmp_path


def run_error(capsys, args):
    """Run the CLI expecting failure; return its single stderr line."""
    code = cli.main(args + ['--device', 'cpu'])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1, captured.err
    assert 'Traceback' not in captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith('error: ')
    return lines[0]


def write(path, text):
    with open(path, 'w') as fp:
        fp.write(text)
    return str(path)


def test_missing_config_file(workdir, capsys):
    line = run_error(capsys, ['--config', 'no/such/config.yaml'])
    assert 'config file not found: no/such/config.yaml' in line


def test_yaml_syntax_error_names_line(workdir, capsys):
    path = write(workdir / 'broken.yaml', 'models:\n  student_model:\n    key: [unclosed\ntrain: {}\n')
    line = run_error(capsys, ['--config', path])
    assert 'YAML syntax error' in line and 'line 4' in line


def test_unknown_loss_key_lists_plugin_keys_and_dependencies(workdir, capsys):
    text = open(TINY).read().replace("key: 'KDLoss'", "key: 'WTTMLos'").replace("  - name: 'runner_support'\n",
                                                                               "  - name: 'runner_support'\n", 1)
    text = text.replace("dependencies:\n  - name: 'runner_support'\n", '')
    path = write(workdir / 'bad_loss.yaml', text)
    # runner_support is still importable through the test session; only the YAML lacks `dependencies:`.
    line = run_error(capsys, ['--config', path])
    assert "unknown loss key 'WTTMLos' in train.criterion.kwargs.sub_terms.kd" in line
    assert 'ttm_torchdistill provides:' in line
    assert 'no `dependencies:` entry naming ttm_torchdistill' in line


def test_unknown_model_key(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set', 'models.student_model.key=cifar_resnet_nope'])
    assert "unknown model key 'cifar_resnet_nope' in models.student_model.key" in line
    assert 'ttm_torchdistill provides:' in line


def test_bad_loss_argument(workdir, capsys):
    kwargs = "{student_module_path: '.', student_module_io: output, teacher_module_path: '.', " \
             "teacher_module_io: output, temprature: 4.0}"
    kd = 'train.criterion.kwargs.sub_terms.kd.criterion'
    line = run_error(capsys, ['--config', TINY, '--set', f'{kd}.kwargs={kwargs}'])
    assert 'cannot set up training from `train:`' in line and "'temperature'" in line
    # The plugin's own argument check comes through as one line too.
    line = run_error(capsys, ['--config', TINY, '--set', f'{kd}={{key: WTTMLoss, kwargs: {{temperature: -1}}}}'])
    assert 'cannot set up training from `train:`: ValueError:' in line and '-1' in line


def test_bad_set_path_names_missing_component(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set', 'train.optimizer.kwargs.learning_rate=0.1'])
    assert "--set path 'train.optimizer.kwargs.learning_rate' does not exist" in line
    assert "no key 'learning_rate' under train.optimizer.kwargs" in line and 'lr' in line


def test_set_without_equals(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set', 'train.num_epochs'])
    assert '--set expects KEY=VALUE' in line


def test_missing_dataset_folder_without_download(workdir, capsys):
    # The root override must act before the dataset is built: the message names the overridden folder.
    missing = str(workdir / 'nowhere' / 'cifar100')
    line = run_error(capsys, ['--config', CIFAR, '--set', f'datasets.cifar100/train.init.kwargs.root={missing}']
                     + NO_TEACHER_CKPT)
    assert f"dataset 'cifar100/train' (torchvision.datasets.CIFAR100) could not be loaded from {missing}" in line
    assert 'cifar-100-python' in line and 'cifar-100-python.tar.gz' in line


def test_missing_dataset_folder_with_failing_download(workdir, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')
    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    line = run_error(capsys, ['--config', CIFAR, '--set', 'datasets.cifar100/train.init.kwargs.download=True']
                     + NO_TEACHER_CKPT)
    root = os.path.abspath('resource/dataset/cifar100')
    assert f'could not be loaded from {root}' in line
    assert 'downloading it failed' in line


def test_unknown_dataset_class_is_a_config_error(workdir, capsys):
    line = run_error(capsys, ['--config', CIFAR, '--set', 'datasets.cifar100/train.key=torchvision.datasets.CIFAR1000']
                     + NO_TEACHER_CKPT)
    assert "dataset 'cifar100/train' (torchvision.datasets.CIFAR1000) cannot be built from the config" in line
    assert 'CIFAR1000' in line


def test_other_runtime_errors_of_a_dataset_are_not_called_missing_data(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set', 'datasets.tiny/train.init.kwargs.num_samples=-1'])
    assert line.startswith("error: dataset 'tiny/train' (runner_support.TinyTensorDataset) cannot be built from the "
                           "config: RuntimeError: ")
    assert 'could not be loaded from' not in line


def test_missing_teacher_checkpoint_names_path(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set', 'models.teacher_model.src_ckpt=ckpt/typo.pt'])
    assert 'checkpoint not found: ckpt/typo.pt (models.teacher_model.src_ckpt)' in line


def test_missing_checkpoint_reported_before_datasets_are_built(workdir, capsys):
    # The CIFAR config's data folder is missing too: the checkpoint typo is reported first, before any download.
    line = run_error(capsys, ['--config', CIFAR, '--set', 'models.teacher_model.src_ckpt=typo.pth'])
    assert line.startswith('error: checkpoint not found: typo.pth (models.teacher_model.src_ckpt)')


def test_teacher_without_any_weights_is_an_error(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set', 'models.teacher_model.src_ckpt='])
    assert line.startswith('error: models.teacher_model has no src_ckpt and no pretrained weights: the student would '
                           'distil from a randomly initialised teacher')


def test_mismatched_teacher_checkpoint_names_keys(workdir, capsys):
    torch.save({'model': support.TinyBNNet(10, width=8).state_dict()}, 'narrow.pt')
    line = run_error(capsys, ['--config', TINY, '--set', 'models.teacher_model.src_ckpt=narrow.pt'])
    assert 'checkpoint narrow.pt (models.teacher_model.src_ckpt) does not match the model TinyBNNet' in line
    assert 'shape mismatch' in line and 'conv.weight (8, 3, 3, 3) vs (16, 3, 3, 3)' in line
    torch.save({'model': support.TinyLinearNet(10).state_dict()}, 'other.pt')
    line = run_error(capsys, ['--config', TINY, '--set', 'models.teacher_model.src_ckpt=other.pt'])
    assert 'missing keys: conv.weight' in line and 'unexpected keys: fc1.weight' in line


def test_resume_with_nothing_to_resume(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--resume'])
    assert '--resume: nothing to resume, no last-epoch checkpoint at ckpt/tiny_kd/student.last.pt' in line


def test_resume_with_start_epoch_is_refused(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--resume', '--start_epoch', '2'])
    assert line == 'error: --resume takes the epoch from the last-epoch checkpoint; drop --start_epoch'


def test_test_only_without_trained_student(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '-test_only'])
    assert '-test_only: no trained student at ckpt/tiny_kd/student.pt' in line


def test_non_finite_loss_names_epoch_step_and_keeps_last_checkpoint(workdir, capsys):
    # 4 steps per epoch, read every 2 (log_freq); the student's 6th training forward returns NaN: epoch 2, step 2,
    # seen at the read after step 2.
    line = run_error(capsys, ['--config', TINY, '--seed', '0', '--set', 'models.student_model.key=test_runner_nan_net',
                              '--set', 'models.student_model.kwargs={num_classes: 10, nan_from_call: 6}'])
    assert 'non-finite loss (nan or inf) in epoch 2, steps 1-2 of 4' in line
    assert 'last good checkpoint: ckpt/tiny_kd/student.last.pt' in line
    last = torch.load('ckpt/tiny_kd/student.last.pt', weights_only=False)
    assert last['epoch'] == 1
    assert all(torch.isfinite(v).all() for v in last['model'].values())


def test_cuda_requested_without_cuda(workdir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    code = cli.main(['--config', TINY, '--device', 'cuda'])
    assert code == 1
    assert capsys.readouterr().err.strip() == \
        'error: --device cuda requested but CUDA is not available (use --device cpu)'


def test_world_size_without_torchrun(workdir, capsys, monkeypatch):
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)
    line = run_error(capsys, ['--config', TINY, '--world_size', '2'])
    assert '--world_size 2 needs one process per rank: launch with torchrun --nproc_per_node=2' in line


def test_subcommand_missing_module_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, 'report', 'ttm_torchdistill._no_such_report_module')
    assert cli.main(['report', '--anything']) == 1
    err = capsys.readouterr().err.strip()
    assert err == ('error: the `report` subcommand is not available in this installation '
                   '(ttm_torchdistill._no_such_report_module is missing)')


def test_subcommands_dispatch_with_remaining_argv(monkeypatch):
    received = {}
    fake = types.ModuleType('fake_teachers')
    fake.main = lambda argv=None: received.setdefault('argv', argv) and 7
    monkeypatch.setitem(sys.modules, 'fake_teachers', fake)
    monkeypatch.setitem(cli.SUBCOMMANDS, 'fetch-teachers', 'fake_teachers')
    assert cli.main(['fetch-teachers', '--names', 'wrn_40_2']) == 7
    assert received['argv'] == ['--names', 'wrn_40_2']


def test_help_explains_flags_with_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(['--help'])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ('--config', '--device', '--run_log', '--seed', '--start_epoch', '-test_only', '-student_only',
                 '-log_config', '-disable_cudnn_benchmark', '--world_size', '--dist_url', '-adjust_lr', '--set',
                 '--resume', '--smoke', 'fetch-teachers', 'report', 'torchrun --nproc_per_node'):
        assert flag in out, flag
    assert '--set train.num_epochs=1' in out


def test_console_script_declared():
    text = open(os.path.join(support.REPO_ROOT, 'setup.cfg')).read()
    assert 'ttm-torchdistill = ttm_torchdistill.cli:main' in text
    assert shutil.which  # the entry point itself is exercised through cli.main above
