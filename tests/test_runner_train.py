"""Runner end to end (in-process): tiny CIFAR-100 on disk, checkpoints + summary, test-only, smoke, teacher eval."""
import json
import os
import sys
import types

import pytest
import torch
import torchvision
from torchdistill.core.distillation import get_distillation_box
from torchdistill.models.registry import get_model

import runner_support as support
from ttm_torchdistill import cli
from ttm_torchdistill.run.config.loading import load_config
from ttm_torchdistill.run.machine.context import DistContext
from ttm_torchdistill.run.train.meter import StepMeter, temperature_stats
from ttm_torchdistill.run.train.progress import EpochProgress

CIFAR = os.path.join(support.CONFIG_DIR, 'runner_cifar100_wttm.yaml')
CIFAR_CE = os.path.join(support.CONFIG_DIR, 'runner_cifar100_ce.yaml')
IMAGENET = os.path.join(support.CONFIG_DIR, 'runner_ilsvrc2012_smoke.yaml')
TINY = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')
SUMMARY_KEYS = {'format', 'config', 'experiment', 'dataset', 'reference', 'seed', 'seed_drawn', 'sampler_seed',
                'world_size', 'epochs', 'best', 'config_digest', 'code_version', 'attempts', 'changed_mid_run',
                'selected_on', 'holdout',
                'overrides', 'config_sha256', 'planned_epochs',
                'last', 'test', 'checkpoints', 'wall_time_s', 'session_time_s', 'runtime'}
EPOCH_KEYS = {'epoch', 'lr', 'train_loss', 'val_top1', 'val_top5', 'epoch_time_s', 'train_time_s',
              'train_images'}


def ok(capsys, args):
    code = cli.main(args + ['--device', 'cpu'])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return captured.out


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """./resource/dataset/cifar100 in torchvision's format; only torchvision's md5 check is bypassed."""
    monkeypatch.chdir(tmp_path)
    support.write_tiny_cifar100('resource/dataset/cifar100', num_train=40, num_test=20)
    # The files exist but their md5 differ from the real archive's: check existence only.
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda fpath, md5=None: os.path.isfile(fpath))
    return tmp_path


def test_end_to_end_tiny_cifar100_train_summary_and_test_only(tiny_cifar, capsys):
    teacher_path = 'resource/ckpt/cifar100/teachers/resnet20_vanilla/ckpt_epoch_240.pth'
    os.makedirs(os.path.dirname(teacher_path))
    torch.manual_seed(1)
    teacher = get_model('resnet20', num_classes=100)
    # RepDistiller layout: {'model': state_dict, 'epoch': ..., 'accuracy': ...}
    torch.save({'model': teacher.state_dict(), 'epoch': 240, 'accuracy': 1.0}, teacher_path)
    out = ok(capsys, ['--config', CIFAR, '--seed', '0', '--run_log', 'log/run.log'])
    dst = './resource/ckpt/cifar100/wttm/resnet20_from_resnet20.pt'  # as written in the config
    last = './resource/ckpt/cifar100/wttm/resnet20_from_resnet20.last.pt'
    for path in (dst, last):
        assert os.path.isfile(path)
    assert not [f for f in os.listdir(os.path.dirname(dst)) if f.endswith('.tmp')]
    with open('resource/ckpt/cifar100/wttm/resnet20_from_resnet20.json') as fp:
        summary = json.load(fp)
    assert set(summary) == SUMMARY_KEYS
    assert summary['format'] == 1 and summary['config'] == CIFAR and summary['seed'] == 0 and not summary['seed_drawn']
    assert summary['world_size'] == 1 and summary['reference'] is None
    assert summary['overrides'] == [] and summary['planned_epochs'] == 2 and len(summary['config_sha256']) == 64
    assert summary['experiment'] == 'runner_cifar100_wttm' and summary['dataset'] is None
    assert [e['epoch'] for e in summary['epochs']] == [1, 2]
    assert all(set(e) == EPOCH_KEYS for e in summary['epochs'])
    # 40 training images, drop_last False: every image once per epoch; training is a part of the epoch
    assert [e['train_images'] for e in summary['epochs']] == [40, 40]
    assert all(0 < e['train_time_s'] <= e['epoch_time_s'] for e in summary['epochs'])
    best = max(summary['epochs'], key=lambda e: e['val_top1'])
    assert summary['best'] == {'epoch': best['epoch'], 'top1': best['val_top1'], 'top5': best['val_top5']}
    assert summary['last'] == {'epoch': 2, 'top1': summary['epochs'][-1]['val_top1'],
                               'top5': summary['epochs'][-1]['val_top5']}
    assert set(summary['test']) == {'student', 'teacher'} and set(summary['test']['teacher']) == {'top1', 'top5'}
    assert summary['checkpoints'] == {'best': dst, 'last': last}
    assert 0 < summary['wall_time_s'] < summary['session_time_s']  # training only; the session adds start-up, test
    assert summary['runtime'] == {'device_data': False, 'amp': 'off', 'channels_last': False, 'compile': False,
                                  'teacher_cache': None, 'holdout': None, 'holdout_seed': 0}
    saved = torch.load(last, weights_only=False)
    assert saved['epoch'] == 2 and set(saved['rng']) == {'python', 'numpy', 'torch', 'cuda'}
    assert {'model', 'optimizer', 'lr_scheduler', 'scaler', 'best_value'} <= set(saved)
    # Progress: sub-terms, lr, img/s, ETA; per-epoch validation line; the same lines in --run_log.
    log = open('log/run.log').read()
    for text in ('Epoch 1/2  step 2/3  loss ', '(ce ', ', wttm ', '  lr 0.05  ', ' img/s  ETA epoch ',
                 'Epoch 2/2 done in', 'val top-1', 'top-5'):
        assert text in out and text in log, text
    # -test_only reloads the best student and reproduces the test numbers of the training run.
    out = ok(capsys, ['--config', CIFAR, '-test_only'])
    student_line = [line for line in out.splitlines() if '[Student: resnet20] test top-1' in line][0]
    assert f'test top-1 {summary["test"]["student"]["top1"]:.2f}  top-5 {summary["test"]["student"]["top5"]:.2f}' \
        in student_line
    assert '[Teacher: resnet20] test top-1' in out
    out = ok(capsys, ['--config', CIFAR, '-test_only', '-student_only'])
    assert '[Teacher:' not in out


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('a smoke run tried to use the network')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', refuse)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', refuse)
    import urllib.request
    monkeypatch.setattr(urllib.request, 'urlopen', refuse)


@pytest.mark.parametrize('config', [CIFAR, CIFAR_CE, IMAGENET], ids=['cifar100-kd', 'cifar100-ce', 'imagenet-kd'])
def test_smoke_runs_offline_and_writes_nothing_in_place(config, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _no_network(monkeypatch)
    out = ok(capsys, ['--config', config, '--smoke'])
    assert 'Smoke run of' in out and 'passed' in out
    assert 'step 2/2' in out and 'Epoch 1/1 done' in out
    if config == CIFAR:  # its teacher checkpoint does not exist here: a warning, not an error
        assert 'smoke: models.teacher_model.src_ckpt: ' in out
        assert 'ckpt_epoch_240.pth not available; random weights' in out
    assert os.listdir(tmp_path) == []  # no data folder, no checkpoint, no log in the working folder


def test_smoke_uses_configured_input_size_and_classes(tmp_path, monkeypatch):
    from ttm_torchdistill.run.data.synthetic import build_smoke_datasets
    monkeypatch.chdir(tmp_path)
    loaded = load_config(IMAGENET)
    datasets = build_smoke_datasets(loaded, 1000, {'ilsvrc2012/train'})
    image, label = datasets['ilsvrc2012/train'][3]
    assert tuple(image.shape) == (3, 224, 224) and datasets['ilsvrc2012/train'].num_classes == 1000
    assert len(datasets['ilsvrc2012/train']) == 8 and len(datasets['ilsvrc2012/val']) == 4
    loaded = load_config(CIFAR)
    image, _ = build_smoke_datasets(loaded, None)['cifar100/test'][0]
    assert tuple(image.shape) == (3, 32, 32)
    assert os.listdir(tmp_path) == []


def test_set_overrides_apply_before_construction(tmp_path):
    loaded = load_config(TINY, ['train.num_epochs=7', 'train.scheduler.kwargs.milestones=[1, 5]',
                                'models.student_model.src_ckpt=null', 'train.optimizer.kwargs.lr=1e-3',
                                "datasets.tiny/val.init.kwargs={num_samples: 5, image_size: 4}"])
    config = loaded.config
    assert config['train']['num_epochs'] == 7
    assert config['train']['scheduler']['kwargs']['milestones'] == [1, 5]
    assert config['models']['student_model']['src_ckpt'] is None
    assert config['train']['optimizer']['kwargs']['lr'] == pytest.approx(1e-3)
    assert 'datasets' not in config  # datasets are built later, one by one
    val_node = dict(loaded.dataset_nodes)['tiny/val']
    assert len(loaded.loader.construct_document(val_node)) == 5
    # Through an alias (*val_sampler is shared by the val and test loaders) only the given path changes.
    loaded = load_config(TINY, ['test.test_data_loader.sampler.kwargs={shuffle: false}'])
    assert loaded.config['test']['test_data_loader']['sampler']['kwargs'] == {'shuffle': False}
    assert loaded.config['train']['val_data_loader']['sampler']['kwargs'] is None
    # A list index works as a path component.
    loaded = load_config(TINY, ['train.scheduler.kwargs.milestones.0=9'])
    assert loaded.config['train']['scheduler']['kwargs']['milestones'] == [9]


def test_teacher_batchnorm_buffers_bit_identical_after_an_epoch():
    """eval_teacher_pre_epoch_process keeps the teacher in eval mode; torchdistill's default does not."""
    def run_epoch(pre_epoch_process):
        torch.manual_seed(0)
        teacher, student = support.TinyBNNet(10, width=16), support.TinyBNNet(10, width=8)
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        train_config = {
            'num_epochs': 1,
            'train_data_loader': {'dataset_id': 'train', 'sampler': {'class_or_func': torch.utils.data.RandomSampler,
                                                                     'kwargs': {}},
                                  'kwargs': {'batch_size': 8}},
            'teacher': {'forward_proc': 'forward_batch_only', 'requires_grad': False},
            'student': {'forward_proc': 'forward_batch_only', 'requires_grad': True},
            'optimizer': {'key': 'SGD', 'kwargs': {'lr': 0.1}},
            'criterion': {'key': 'WeightedSumLoss', 'kwargs': {'sub_terms': {
                'kd': {'criterion': {'key': 'KDLoss', 'kwargs': {
                    'student_module_path': '.', 'student_module_io': 'output', 'teacher_module_path': '.',
                    'teacher_module_io': 'output', 'temperature': 4.0, 'alpha': 0.5}}, 'weight': 1.0},
                'epochs': {'criterion': {'key': 'test_runner_epoch_recorder', 'kwargs': {}}, 'weight': 1.0}}}},
        }
        if pre_epoch_process is not None:
            train_config['pre_epoch_process'] = pre_epoch_process
        box = get_distillation_box(teacher, student, {'train': support.TinyTensorDataset(32)}, train_config,
                                   torch.device('cpu'), None, False, 1)
        for epoch in range(2):
            box.pre_epoch_process(epoch=epoch)
            for images, targets, supp in box.train_data_loader:
                box.post_forward_process(loss=box.forward_process(images, targets, supp))
        recorder = box.criterion.term_dict['epochs'][0]
        same = all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
        return same, teacher.training, recorder.epochs

    same, training, epochs = run_epoch('eval_teacher_pre_epoch_process')
    assert same and not training
    assert epochs == [1, 2]  # 1-indexed epochs handed to set_epoch
    same, training, epochs = run_epoch(None)  # torchdistill's default: running statistics drift
    assert not same and training and epochs == []


def test_runner_keeps_teacher_buffers_bit_identical(tmp_path, monkeypatch, capsys):
    """Through the runner's own loop: the BatchNorm teacher is unchanged after two epochs of distillation."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(3)
    teacher = support.TinyBNNet(10, width=16)
    teacher.bn.running_mean.uniform_(-1, 1)  # buffers that batch statistics would visibly move
    torch.save({'model': teacher.state_dict()}, 'teacher.pt')
    ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=3', '--set',
                'train.pre_epoch_process=test_runner_dump_pre_epoch_process'])
    after_two_epochs = torch.load('teacher_rank0_epoch2.pt')
    assert after_two_epochs['bn.num_batches_tracked'].item() == 0
    for key, value in teacher.state_dict().items():
        assert torch.equal(after_two_epochs[key], value), key


def test_temperature_stats_and_progress_line():
    class MaxLogitLike(torch.nn.Module):
        def __init__(self, temps):
            super().__init__()
            self.last_temperature = temps

    class Weighted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.term_dict = {'a': (MaxLogitLike(torch.tensor([1.0, 3.0])), 1.0),
                              'b': (MaxLogitLike(torch.tensor([2.0])), 0.5), 'c': (MaxLogitLike(None), 1.0)}

    stats = temperature_stats(Weighted())
    assert stats.tolist() == pytest.approx([2.0, 1.0, 3.0])
    assert temperature_stats(torch.nn.CrossEntropyLoss()) is None
    progress = EpochProgress(epoch=2, num_epochs=5, steps=10)
    meter = StepMeter(torch.device('cpu'))
    meter.add(torch.tensor(3.0), {'ce': torch.tensor(1.0), 'wttm': torch.tensor(2.0)}, stats)
    meter.add(torch.tensor(5.0), {'ce': torch.tensor(2.0), 'wttm': torch.tensor(3.0)}, stats)
    progress.count_images(32)
    progress.add_window(meter.read(DistContext(False, 0, 1, torch.device('cpu'), None)))
    line = progress.line(2, 0.05, 1)
    assert line.startswith('Epoch 2/5  step 2/10  loss 4.0000 (ce 1.5000, wttm 2.5000)  T mean 2.000 min 1.000 '
                           'max 3.000  lr 0.05  ')
    assert ' img/s  ETA epoch ' in line and ' total ' in line
    assert progress.mean_loss == pytest.approx(4.0)


def test_progress_shows_adaptive_temperature(tmp_path, monkeypatch, capsys):
    """A 'max_logit' loss records per-sample temperatures; the progress line summarises them."""
    monkeypatch.chdir(tmp_path)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict()}, 'teacher.pt')
    kd = 'train.criterion.kwargs.sub_terms.kd.criterion'
    out = ok(capsys, ['--config', TINY, '--set', 'train.num_epochs=1', '--set',
                      f'{kd}={{key: WTTMLoss, kwargs: {{temperature: max_logit}}}}'])
    lines = [line for line in out.splitlines() if 'Epoch 1/1  step' in line]
    assert lines and all(' (ce ' in line and ', kd ' in line and '  T mean ' in line for line in lines)


def test_tracker_block_keeps_working(tmp_path, monkeypatch, capsys):
    """torchdistill 1.1.5's `tracker:` block: the runner feeds the configured engine (a stand-in for trackio)."""
    calls = []
    fake = types.ModuleType('trackio')
    fake.init = lambda **kwargs: calls.append(('init', kwargs))
    fake.log = lambda metrics, step=None: calls.append(('log', metrics))
    fake.finish = lambda: calls.append(('finish', None))
    monkeypatch.setitem(sys.modules, 'trackio', fake)
    monkeypatch.chdir(tmp_path)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict()}, 'teacher.pt')
    config = open(TINY).read() + "\ntracker:\n  engine: 'trackio'\n  kwargs: {project: 'p', name: 'n'}\n"
    with open('with_tracker.yaml', 'w') as fp:
        fp.write(config)
    ok(capsys, ['--config', 'with_tracker.yaml', '--set', 'train.num_epochs=1'])
    assert calls[0][0] == 'init' and calls[0][1]['project'] == 'p' and calls[-1][0] == 'finish'
    logged = [m for kind, m in calls if kind == 'log']
    assert any('train/loss' in m for m in logged) and any('val/acc1' in m for m in logged)
