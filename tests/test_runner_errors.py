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
# an existing file: the dataset is the first problem
NO_TEACHER_CKPT = ['--set', 'models.teacher_model.src_ckpt=teacher.pt']


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


WTTM = 'train.criterion.kwargs.sub_terms.wttm.criterion'
WTTM_ARGUMENTS = ('temperature', 'teacher_only_max', 'student_module_path', 'student_module_io',
                  'teacher_module_path', 'teacher_module_io')


def test_misspelt_loss_argument_names_path_key_argument_suggestion_and_valid_arguments(workdir, capsys):
    # Reported by the signature check before the (missing) CIFAR-100 data is looked at.
    line = run_error(capsys, ['--config', CIFAR, '--set', f'{WTTM}.kwargs={{temprature: 10.0}}'] + NO_TEACHER_CKPT)
    assert line.startswith(f'error: {WTTM}.kwargs: WTTMLoss has no argument ')
    assert "'temprature' (did you mean 'temperature'?)" in line
    accepts = line.split('WTTMLoss accepts: ')[1]
    for name in WTTM_ARGUMENTS:  # the private base's keyword arguments are WTTMLoss's too
        assert name in accepts, name
    assert 'temperature (required)' in accepts
    assert '_LogitDistillationLoss' not in line and 'TTMLoss.__init__' not in line


def test_unknown_loss_argument_never_names_a_private_class(workdir, capsys):
    line = run_error(capsys, ['--config', CIFAR, '--set',
                              f'{WTTM}.kwargs={{temperature: max_logit, teacher_only_mx: true}}'] + NO_TEACHER_CKPT)
    assert f"{WTTM}.kwargs: WTTMLoss has no argument 'teacher_only_mx' (did you mean 'teacher_only_max'?)" in line
    assert 'needs' not in line  # nothing required is missing
    assert '_LogitDistillationLoss' not in line


def test_misspelt_argument_of_a_torchdistill_loss_with_open_kwargs(workdir, capsys):
    # torchdistill's KDLoss takes **kwargs: the misspelling is reported because `temperature` is then missing.
    kwargs = "{student_module_path: '.', student_module_io: output, teacher_module_path: '.', " \
             "teacher_module_io: output, temprature: 4.0}"
    kd = 'train.criterion.kwargs.sub_terms.kd.criterion'
    line = run_error(capsys, ['--config', TINY, '--set', f'{kd}.kwargs={kwargs}'])
    assert f"{kd}.kwargs: KDLoss has no argument 'temprature' (did you mean 'temperature'?)" in line
    assert 'KDLoss accepts: ' in line and 'temperature (required)' in line


def test_value_rejected_by_a_loss_names_its_sub_term(workdir, capsys):
    # The signature fits; WTTMLoss refuses the value when the box builds it (the build-time fallback).
    kd = 'train.criterion.kwargs.sub_terms.kd.criterion'
    line = run_error(capsys, ['--config', TINY, '--set', f'{kd}={{key: WTTMLoss, kwargs: {{temperature: -1}}}}'])
    assert line.startswith(f"error: {kd}: loss 'WTTMLoss' rejected its kwargs: ValueError: ")
    assert '-1' in line


def test_misspelt_model_optimizer_and_process_names(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set', 'models.student_model.kwargs={num_classes: 10, widht: 8}'])
    assert "models.student_model.kwargs: test_runner_tiny_bn_net has no argument 'widht' (did you mean 'width'?)" \
        in line and 'accepts: num_classes, width' in line
    line = run_error(capsys, ['--config', TINY, '--set', 'train.optimizer.kwargs={lr: 0.1, momentun: 0.9}'])
    assert "train.optimizer.kwargs: SGD has no argument 'momentun' (did you mean 'momentum'?)" in line
    line = run_error(capsys, ['--config', TINY, '--set', 'train.pre_epoch_process=eval_teacher_pre_epoch_proces'])
    assert "train.pre_epoch_process: unknown pre-epoch-process 'eval_teacher_pre_epoch_proces' (did you mean " \
           "'eval_teacher_pre_epoch_process'?)" in line
    line = run_error(capsys, ['--config', TINY, '--set', 'train.criterion.kwargs.sub_terms.ce.criterion_wrapper.key='
                                                         'SimpleLossWraper'])
    assert "unknown loss wrapper 'SimpleLossWraper' (did you mean 'SimpleLossWrapper'?)" in line


def test_sub_term_without_weight(workdir, capsys):
    line = run_error(capsys, ['--config', TINY, '--set',
                              'train.criterion.kwargs.sub_terms.kd={criterion: {key: KDLoss, kwargs: {}}}'])
    assert 'train.criterion.kwargs.sub_terms.kd must be a mapping with `criterion:` and `weight:`' in line


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


TEACHER_CKPT = 'models.teacher_model.src_ckpt'


def test_missing_teacher_checkpoint_suggests_fetch_teachers_only_for_fetchable_teachers(workdir, capsys):
    line = run_error(capsys, ['--config', CIFAR, '--set', 'models.teacher_model.key=cifar_wrn_40_2',
                              '--set', f'{TEACHER_CKPT}=gone/wrn.pth'])
    assert line.startswith(f'error: checkpoint not found: gone/wrn.pth ({TEACHER_CKPT}); fetch it with: '
                           f'python -m ttm_torchdistill fetch-teachers --names wrn_40_2 (it writes ')
    assert 'wrn_40_2_vanilla/ckpt_epoch_240.pth' in line
    # A torchvision teacher: no fetch-teachers, but how to get weights.
    line = run_error(capsys, ['--config', CIFAR, '--set', 'models.teacher_model.key=resnet18',
                              '--set', f'{TEACHER_CKPT}=gone/r18.pth'])
    assert 'fetch-teachers' not in line
    assert "no public checkpoint of 'resnet18' is fetched by this package" in line
    assert 'configs/cifar100/ce/' in line and 'models.teacher_model.kwargs.weights' in line
    # A plugin model without a public checkpoint: train it; no torchvision hint.
    line = run_error(capsys, ['--config', CIFAR, '--set', 'models.teacher_model.key=cifar_resnet8x4',
                              '--set', f'{TEACHER_CKPT}=gone/r8x4.pth'])
    assert 'fetch-teachers' not in line and 'configs/cifar100/ce/' in line and 'kwargs.weights' not in line


def test_pickled_checkpoint_is_one_plain_sentence(workdir, capsys):
    import argparse
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict(), 'args': argparse.Namespace(lr=0.1)},
               'pickled.pt')
    line = run_error(capsys, ['--config', TINY, '--set', f'{TEACHER_CKPT}=pickled.pt'])
    assert line == (f'error: checkpoint pickled.pt ({TEACHER_CKPT}) holds a pickled argparse.Namespace object, which '
                    f'only loads by running code stored in the file (torch.load(weights_only=True) refuses it); if '
                    f'you trust the file, rerun with --allow_pickle; otherwise re-save only its weights where it was '
                    f'made, torch.save(model.state_dict(), PATH), and point {TEACHER_CKPT} at that file')
    assert '\x1b' not in line


@pytest.mark.parametrize('download', [False, True])
def test_cifar100_files_that_fail_the_checksum_ask_official_or_own(workdir, capsys, monkeypatch, download):
    """Files with CIFAR-100's names but not the official archive's md5: damaged official files, or one's own data.
    The message offers both ways out and never advises deleting files the runner did not download."""
    support.write_tiny_cifar100('resource/dataset/cifar100')

    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')
    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    line = run_error(capsys, ['--config', CIFAR, '--set', f'datasets.cifar100/train.init.kwargs.download={download}']
                     + NO_TEACHER_CKPT)
    folder = os.path.abspath('resource/dataset/cifar100/cifar-100-python')
    assert "the files there are not torchvision's official CIFAR100 (checksum mismatch: " in line
    assert os.path.join(folder, 'train') in line and os.path.join(folder, 'meta') in line
    assert 'if they are the official files, they are damaged: download them again' in line
    assert ("if they are your own data in CIFAR100's format (a subset, a relabelled copy, another data set exported "
            "to it), use key 'ttm_torchdistill.datasets.CIFAR100Format' for this dataset, which reads them without "
            "the checksum") in line
    assert 'rm ' not in line and 'delete' not in line and 'not there' not in line


OWN_DATA = ['--set', 'datasets.*.key=ttm_torchdistill.datasets.CIFAR100Format']


def _own_cifar100_with_a_resnet20_teacher():
    from torchdistill.models.registry import get_model
    support.write_tiny_cifar100('resource/dataset/cifar100')
    torch.manual_seed(1)
    torch.save({'model': get_model('resnet20', num_classes=100).state_dict()}, 'teacher.pt')


@pytest.mark.parametrize('runtime', [[], ['--device-data']], ids=['stock', 'device-data'])
def test_own_data_in_cifar100_format_trains_with_its_key(workdir, capsys, runtime):
    """The same files read with the plugin's key (set for both splits with one wildcard --set): no checksum, no
    patching of torchvision, the stock and the device data paths."""
    _own_cifar100_with_a_resnet20_teacher()
    code = cli.main(['--config', CIFAR, '--device', 'cpu', '--seed', '0', '--set', 'train.num_epochs=1']
                    + OWN_DATA + NO_TEACHER_CKPT + runtime)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert 'Epoch 1/1 done' in captured.out


def test_own_data_feeds_cache_teacher(workdir, capsys):
    _own_cifar100_with_a_resnet20_teacher()
    code = cli.main(['cache-teacher', '--config', CIFAR, '--device', 'cpu', '--seed', '0', '--epochs', '1',
                     '--out', 'cache'] + OWN_DATA + NO_TEACHER_CKPT)
    assert code == 0, capsys.readouterr().err
    assert os.path.isfile(os.path.join('cache', 'metadata.json'))


def test_device_data_refuses_an_image_folder_before_building_anything(workdir, capsys, monkeypatch):
    """The dataset class is read from the config: no folder scan first, and under --smoke the message still names
    ImageFolder (not the synthetic stand-in)."""
    built = []
    monkeypatch.setattr('ttm_torchdistill.run.prepare.build_real_datasets', lambda loaded: built.append(1))
    monkeypatch.setattr('ttm_torchdistill.run.prepare.build_smoke_datasets', lambda *a, **k: built.append(1))
    imagenet = os.path.join(support.CONFIG_DIR, 'runner_ilsvrc2012_smoke.yaml')
    for extra in ([], ['--smoke']):
        line = run_error(capsys, ['--config', imagenet, '--device-data'] + extra)
        assert line.startswith("error: runtime.device_data: dataset 'ilsvrc2012/train' "
                               "(torchvision.datasets.ImageFolder, train.train_data_loader) is not supported by the "
                               "device data path: expected torchvision.datasets.CIFAR10 or CIFAR100"), line
    assert built == []


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


def test_a_frozen_crd_teacher_head_is_refused_when_the_box_is_built(workdir, capsys):
    """requires_grad: False on the teacher freezes its PenultimateEmbedding head and runs the teacher under no_grad,
    where the wrapper's own forward-time check cannot see it: the runner checks the optimizer instead."""
    config = os.path.join(support.REPO_ROOT, 'configs', 'cifar100', 'wttm_crd', 'vgg8_from_vgg13.yaml')
    line = run_error(capsys, ['--config', config, '--smoke', '--set', 'train.teacher.requires_grad=False',
                              '--set', 'train.teacher.frozen_modules=[]'])
    assert line == ("error: train.teacher.auxiliary_model_wrapper (PenultimateEmbedding): embed.linear.weight, "
                    "embed.linear.bias would not be trained (frozen, so not in the optimizer) and would stay at its "
                    "random initialisation; set requires_grad: True and frozen_modules: ['model'] in train.teacher "
                    "(the teacher's own weights stay frozen, the head is trained); or give the wrapper trainable: "
                    "False if a fixed head is intended")
    # as shipped, the head is trained; a wrapper saying trainable: False is left alone
    fixed_head = ('train.teacher.auxiliary_model_wrapper.kwargs={input_module_path: classifier, out_features: 128, '
                  'trainable: False}')
    assert cli.main(['--config', config, '--smoke', '--device', 'cpu', '--set', 'train.teacher.requires_grad=False',
                     '--set', fixed_head]) == 0


def test_itrd_nan_from_a_constant_feature_column_names_eps(workdir, capsys):
    """eps 0 (the authors' code) gives NaN when a teacher feature column is constant; the stop says what to do."""
    teacher = support.TinyBNNet(10, width=16)
    with torch.no_grad():  # channel 3 of the pooled features is relu(0) = 0 for every image: a dead channel
        teacher.conv.weight[3] = 0.0
        teacher.bn.weight[3], teacher.bn.bias[3] = 0.0, 0.0
    torch.save({'model': teacher.state_dict()}, 'teacher.pt')
    line = run_error(capsys, ['--config', os.path.join(support.CONFIG_DIR, 'runner_tiny_itrd.yaml'), '--seed', '0'])
    assert line.startswith('error: non-finite loss (nan or inf) in epoch 1, steps 1-2 of 4; ')
    assert line.endswith("; ITRDLoss with eps 0 divides by zero when a feature column is constant over the batch (a "
                         "dead ReLU channel, as in the authors' code); set eps > 0 (e.g. 1e-6) in its kwargs")


def test_an_offline_torchvision_weights_download_says_which_file_goes_where(workdir, monkeypatch):
    """torchvision downloads pretrained weights when the model is built; offline, the message names the model, the
    weights enum, the file and the hub-cache folder torch looks in first."""
    from ttm_torchdistill.errors import RunError
    from ttm_torchdistill.run.model_loading.build import build_model
    monkeypatch.setenv('TORCH_HOME', str(workdir / 'torch_home'))

    def offline(*args, **kwargs):
        raise urllib.error.URLError('[Errno -2] Name or service not known')
    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    entry = {'key': 'resnet18', 'kwargs': {'weights': 'IMAGENET1K_V1'}}
    with pytest.raises(RunError) as raised:
        build_model(entry, 'models.teacher_model', {'models': {'teacher_model': entry}}, False)
    folder = os.path.join(str(workdir / 'torch_home'), 'hub', 'checkpoints')
    assert str(raised.value) == (
        "models.teacher_model: torchvision's pretrained weights ResNet18_Weights.IMAGENET1K_V1 for resnet18 could not "
        "be downloaded (URLError: <urlopen error [Errno -2] Name or service not known>); without network, copy "
        "resnet18-f37072fd.pth (from https://download.pytorch.org/models/resnet18-f37072fd.pth) into "
        f"{folder} (the hub cache, $TORCH_HOME/hub/checkpoints with TORCH_HOME ~/.cache/torch by default), where "
        "torch looks before downloading")
