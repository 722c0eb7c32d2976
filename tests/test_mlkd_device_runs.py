"""MLKD's two views on the fast path (``--device-data``, ``--teacher-cache``), on a tiny CIFAR-100 in torchvision's
on-disk format with test-only BatchNorm nets (tests/configs/runner_tiny_cifar_mlkd.yaml):

* the device loader yields both views of every sample, each from its own per-sample stream, whatever the batch size
  and shard, each view a batch in the run's memory format;
* the MLKD loss and the student's gradients on the device path equal the stock path's on the same images (the live
  teacher bit for bit; the weak view's logits from a teacher cache to float32 rounding);
* a run reading the cache (the weak view from it, the teacher live on the strong view) killed with SIGKILL after an
  epoch and resumed ends bit for bit as the uninterrupted run; a steady epoch reads the device once per window;
* two gloo processes under torchrun train it with ``--device-data``;
* the shipped mlkd/ and mlkd_at/ configs pass ``--smoke --device-data``; a strong view the device path cannot make
  is refused in one line.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

import runner_support as support
from ttm_torchdistill.run.data.device_dataset import DeviceDataset, DeviceView
from ttm_torchdistill.run.data.device_loader import DeviceLoader
from ttm_torchdistill.run.data.device_transforms import translate_transform
from ttm_torchdistill.views.augment import StrongAugment, StrongAugmentPlan
from ttm_torchdistill.views.device_augment import OP_NAMES

pytestmark = pytest.mark.usefixtures('one_torch_thread')

CONFIG = os.path.join(support.CONFIG_DIR, 'runner_tiny_cifar_mlkd.yaml')
LAST = os.path.join('ckpt', 'student.last.pt')
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
run_ok, run_error = support.cli_ok, support.cli_error


def _weak() -> T.Compose:
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


def _strong() -> T.Compose:
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), StrongAugment(2), T.ToTensor(),
                      T.Normalize(MEAN, STD)])


def _two_views(n=40, memory_format=torch.contiguous_format):
    images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = DeviceDataset(images, [i % 10 for i in range(n)], translate_transform(_weak()), seed=3,
                         memory_format=memory_format)
    return images, data, DeviceView(data, translate_transform(_strong()), 'strong')


def _collect(loader):
    views, indices = [], []
    for batch, _, supp in loader:
        views.append(batch)
        indices.append(supp['indices'])
    return torch.cat(views), torch.cat(indices)


@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last], ids=['nchw', 'nhwc'])
def test_the_loader_yields_both_views_per_sample_whatever_the_batch_and_shard(memory_format):
    _, data, strong = _two_views(memory_format=memory_format)
    loader = DeviceLoader(data, 8, shuffle=True, second_view=strong)
    batch, _, supp = next(iter(loader))
    assert batch.shape == (8, 2, 3, 32, 32)
    for view in batch.unbind(1):  # each view one batch in the run's memory format, as TwoViewModel hands it on
        assert view.is_contiguous(memory_format=memory_format)
    assert torch.equal(batch[:, 0], data.augment(0, supp['indices']))
    assert torch.equal(batch[:, 1], strong.augment(0, supp['indices']))
    # the weak view draws what a single-view run draws; the strong view has a stream of its own
    alone = DeviceDataset(data.images.cpu(), data.targets.cpu(), translate_transform(_weak()), seed=3)
    assert torch.equal(alone.augment(0, supp['indices']), batch[:, 0])
    assert strong.stream_seed(0) != data.view.stream_seed(0)
    loader.set_epoch(0)
    views, order = _collect(loader)
    by_sample = views[order.argsort()]
    for batch_size, world_size in ((5, 1), (3, 2)):
        shards = [DeviceLoader(data, batch_size, shuffle=True, distributed=world_size > 1, rank=rank,
                               world_size=world_size, second_view=strong) for rank in range(world_size)]
        for shard in shards:
            shard.set_epoch(0)
            shard_views, shard_order = _collect(shard)
            assert torch.equal(shard_views, by_sample[shard_order]), (batch_size, world_size)
    loader.set_epoch(1)
    later, later_order = _collect(loader)
    assert not torch.equal(later[later_order.argsort()][:, 1], by_sample[:, 1])  # fresh strong draws each epoch


@pytest.fixture
def cifar_folder(tmp_path, monkeypatch):
    """The tiny CIFAR-100 (40 training, 20 test images) and the teacher checkpoint the config reads."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TTM_TEST_PROBE', 'no_md5')  # the config's probes module: CIFAR's md5 check off
    support.write_tiny_cifar100('data/cifar100', num_train=40, num_test=20)
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda fpath, md5=None: os.path.isfile(fpath))
    torch.manual_seed(7)
    torch.save({'model': support.TinyBNNet(100, width=8).state_dict()}, 'teacher.pt')
    return tmp_path


def _session(flags):
    from ttm_torchdistill.run.machine.context import init_distributed
    from ttm_torchdistill.run.options import RunOptions
    from ttm_torchdistill.run.prepare import prepare
    from ttm_torchdistill.run.train import loop
    opts = RunOptions(config=CONFIG, device='cpu', seed=0, runtime_flags=flags, overwrite=True,
                      overrides=['train.pre_epoch_process=eval_teacher_and_set_loss_epoch'])
    ctx = init_distributed('cpu', 1, 'env://')
    prepared = prepare(opts, ctx)
    session = loop.open_session(prepared, opts, ctx)
    session.start_epoch(prepared, 0)
    return prepared, session


def _pil_views(raw: np.ndarray, weak_params, strong_params) -> torch.Tensor:
    """One item as TwoViewDataset makes it with torchvision's PIL transforms, on the device path's draws."""
    out = []
    for params, strong in ((weak_params, False), (strong_params, True)):
        img = TF.crop(TF.pad(Image.fromarray(raw), 4), int(params[0][0]), int(params[0][1]), 32, 32)
        img = TF.hflip(img) if bool(params[1]) else img
        if strong:
            values = params[2].tolist()
            ops = tuple((OP_NAMES[int(values[i])], values[2 + i]) for i in range(2))
            img = StrongAugment.apply(img, StrongAugmentPlan(ops, values[4], (values[5], values[6])))
        out.append(TF.normalize(TF.to_tensor(img), MEAN, STD))
    return torch.stack(out)


def _loss_and_gradients(prepared, session, batch, targets, indices):
    box = session.box
    if session.step_fn.cached_teacher is not None:
        session.step_fn.cached_teacher.select(0, indices)
    box.optimizer.zero_grad()
    loss = box.forward_process(batch, targets, {'indices': indices})
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in prepared.student.parameters()]


def test_loss_and_gradients_equal_the_stock_path_on_the_same_images(cifar_folder, capsys):
    """The device path's first batch, and the same samples made by torchvision's PIL transforms on the same draws
    (the crops, flips and strong plans the device path drew) and batched as the stock loader batches them: the same
    images, and through each path's box (student and teacher in TwoViewModel, CE on both views + MLKD) the same loss
    and gradients; with the weak view's teacher logits from a complete cache, equal to float32 rounding."""
    run_ok(capsys, ['cache-teacher', '--config', CONFIG, '--views', 'all', '--out', 'cache', '--device', 'cpu'])
    stock = _session({})
    device = _session({'device_data': True})
    cached = _session({'device_data': True, 'teacher_cache': 'cache'})
    batch, targets, supp = next(iter(device[1].box.train_data_loader))
    indices = supp['indices']
    loader = device[1].box.train_data_loader
    weak = [p for p in loader.dataset.augmentation_params(0)]
    strong = loader.second_view.augmentation_params(0)
    raw = loader.dataset.images.numpy()
    pil = torch.stack([_pil_views(raw[i], [None if p is None else p[i] for p in weak],
                                  [None if p is None else p[i] for p in strong]) for i in indices.tolist()])
    assert torch.equal(batch, pil)
    for session in (device, cached):
        session[0].student.load_state_dict(stock[0].student.state_dict())
    expected = _loss_and_gradients(*stock, pil, targets, indices)
    got = _loss_and_gradients(*device, batch, targets, indices)
    from_cache = _loss_and_gradients(*cached, batch, targets, indices)
    assert torch.equal(got[0], expected[0])
    for a, b, c in zip(expected[1], got[1], from_cache[1]):
        assert torch.equal(b, a)
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(from_cache[0], expected[0], rtol=1e-6, atol=0)


def test_a_holdout_on_the_device_path_gives_both_views_of_the_training_part_only(cifar_folder, capsys):
    """``--holdout 10`` with MLKD's two views on the device path and a complete cache built without a holdout: an
    epoch's batches hold each training-part sample once, both views of it (the weak view's logits from the cache
    under its whole-set index), none of the 10 held out; the held-out part is validated on, the summary says so."""
    from ttm_torchdistill.datasets import holdout_indices
    run_ok(capsys, ['cache-teacher', '--config', CONFIG, '--views', 'all', '--out', 'cache', '--device', 'cpu'])
    held = set(holdout_indices([i % 100 for i in range(40)], 40, 10, seed=0))
    prepared, session = _session({'device_data': True, 'teacher_cache': 'cache', 'holdout': 10})
    views, indices = _collect(session.box.train_data_loader)
    assert views.shape[1] == 2 and sorted(indices.tolist()) == sorted(set(range(40)) - held)
    out = run_ok(capsys, ['--config', CONFIG, '--device', 'cpu', '--seed', '0', '--device-data', '--teacher-cache',
                          'cache', '--holdout', '10', '--overwrite'])
    assert 'Start training (runtime: device_data, teacher_cache=cache, holdout=10)' in out
    with open(os.path.join('ckpt', 'student.json')) as fp:
        summary = json.load(fp)
    assert summary['holdout']['size'] == 10 and summary['selected_on'] == summary['holdout']['held_out']


def test_resume_with_the_teacher_cache_is_bitwise_after_sigkill(cifar_folder, capsys):
    """--device-data --teacher-cache (a complete cache built from the MLKD config: the weak view's logits; the teacher
    runs on the strong view), SIGKILLed before epoch 2 and resumed: the same weights, BatchNorm statistics and history
    as the uninterrupted run."""
    run_ok(capsys, ['cache-teacher', '--config', CONFIG, '--views', 'all', '--out', 'cache', '--device', 'cpu'])
    args = ['--config', CONFIG, '--device', 'cpu', '--seed', '0', '--device-data', '--teacher-cache', 'cache']
    out = run_ok(capsys, args)
    assert 'Teacher logits of the weak view read from the cache cache; the teacher network runs on the strong view' \
        in out and 'Start training (runtime: device_data, teacher_cache=cache)' in out
    expected = torch.load(LAST, weights_only=False)
    with open(os.path.join('ckpt', 'student.json')) as fp:
        history = [(e['train_loss'], e['val_top1']) for e in json.load(fp)['epochs']]
    os.rename('ckpt', 'ckpt_uninterrupted')
    killed = subprocess.run([sys.executable, '-m', 'ttm_torchdistill'] + args, env=support.subprocess_env(
        {'TTM_TEST_KILL_AT_EPOCH': '1', 'TTM_TEST_PROBE': 'no_md5'}), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert torch.load(LAST, weights_only=False)['epoch'] == 1
    out = run_ok(capsys, args + ['--resume'])
    assert f'Resuming from {LAST} at epoch 2/3' in out
    resumed = torch.load(LAST, weights_only=False)
    assert resumed['epoch'] == expected['epoch'] == 3
    for key, value in expected['model'].items():
        assert torch.equal(value, resumed['model'][key]), key
    with open(os.path.join('ckpt', 'student.json')) as fp:
        assert [(e['train_loss'], e['val_top1']) for e in json.load(fp)['epochs']] == history


def test_torchrun_two_processes_train_mlkd_with_device_data(cifar_folder, capsys):
    """Two gloo processes: each rank's shard of both views, DistributedDataParallel around TwoViewModel, the
    teacher cache on the weak view; the ranks' weights stay equal and every image is trained on each epoch."""
    run_ok(capsys, ['cache-teacher', '--config', CONFIG, '--views', 'all', '--out', 'cache', '--device', 'cpu'])
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={support.free_port()}', '-m', 'ttm_torchdistill', '--config', CONFIG, '--device', 'cpu',
               '--world_size', '2', '--seed', '0', '--device-data', '--teacher-cache', 'cache',
               '--set', 'train.pre_epoch_process=test_runner_dump_pre_epoch_process']
    result = subprocess.run(command, env=support.subprocess_env({'TTM_TEST_PROBE': 'no_md5'}), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with open(os.path.join('ckpt', 'student.json')) as fp:
        summary = json.load(fp)
    assert summary['world_size'] == 2 and summary['runtime']['device_data'] is True
    assert [e['train_images'] for e in summary['epochs']] == [40, 40, 40]
    for epoch in (1, 2):  # the students each rank holds at the start of epochs 2 and 3 (0-indexed 1, 2)
        ranks = [torch.load(f'params_rank{r}_epoch{epoch}.pt') for r in (0, 1)]
        # the weights; BatchNorm's running statistics are each rank's own until DDP broadcasts rank 0's at a forward
        for key, value in ranks[0].items():
            assert 'running_' in key or torch.equal(value, ranks[1][key]), (epoch, key)
        # two shards: each rank's BatchNorm saw other batches
        assert not torch.equal(ranks[0]['model.bn.running_mean'], ranks[1]['model.bn.running_mean'])


SYNC_METHODS = ('item', 'tolist', '__bool__', '__float__', '__int__', 'cpu', 'numpy', '__array__')


def test_an_epoch_reads_the_device_once_per_window(cifar_folder, capsys, monkeypatch):
    """With both views made on the device and the weak view's teacher logits from the cache, a training epoch reads
    nothing back but the meter's one read per log window (log_freq 2, 5 steps: 3 windows)."""
    from ttm_torchdistill.run.train import loop as training
    run_ok(capsys, ['cache-teacher', '--config', CONFIG, '--views', 'all', '--out', 'cache', '--device', 'cpu'])
    reads, epochs = {'on': False, 'calls': []}, []

    def host_side() -> bool:
        # Host tensors on every device, not reads of the device: the epoch's draws (a CPU generator; the strong view's
        # programs read Rotate's angles there), and the complete cache's per-epoch gather of the view indices
        # computed from them.
        frame = sys._getframe(2)
        if frame.f_code.co_filename.endswith(os.path.join('data', 'complete_cache.py')):
            return True
        while frame is not None:
            if frame.f_code.co_name == 'draw' and frame.f_code.co_filename.endswith('device_transforms.py'):
                return True
            frame = frame.f_back
        return False

    for name in SYNC_METHODS:
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: (
            reads['calls'].append(_n) if reads['on'] and not host_side() else None) or _o(self, *a, **k))
    original_epoch = training.train_one_epoch

    def counted(*args, **kwargs):
        reads['on'] = True
        try:
            return original_epoch(*args, **kwargs)
        finally:
            reads['on'] = False
            epochs.append(list(reads['calls']))
            reads['calls'].clear()
    monkeypatch.setattr(training, 'train_one_epoch', counted)
    run_ok(capsys, ['--config', CONFIG, '--device', 'cpu', '--seed', '0', '--device-data', '--teacher-cache', 'cache',
                    '--set', 'train.pre_epoch_process=eval_teacher_and_set_loss_epoch'])
    assert len(epochs) == 3
    for calls in epochs[1:]:  # the first epoch also makes the strong view's constants on the device, once
        assert calls == ['tolist'] * 3, calls


MLKD_CONFIGS = sorted(Path(support.REPO_ROOT, 'configs', 'cifar100').glob('mlkd*/*.yaml'))
SMOKED = MLKD_CONFIGS if os.environ.get('TTM_SMOKE_ALL') == '1' else \
    [p for p in MLKD_CONFIGS if p.name == 'resnet8x4_from_resnet32x4.yaml']


@pytest.mark.parametrize('path', SMOKED, ids=[f'{p.parent.name}/{p.stem}' for p in SMOKED])
def test_shipped_mlkd_configs_pass_smoke_with_device_data(path, tmp_path, monkeypatch, capsys):
    """TTM_SMOKE_ALL=1 smokes all 26 (13 pairs x mlkd, mlkd_at)."""
    monkeypatch.chdir(tmp_path)
    out = run_ok(capsys, ['--config', str(path), '--smoke', '--device', 'cpu', '--device-data', '--seed', '0'])
    assert 'Start training (runtime: device_data)' in out and 'Smoke run of' in out
    assert os.listdir(tmp_path) == []


def test_a_strong_view_the_device_path_cannot_make_is_refused(cifar_folder, capsys):
    jitter = ('train.train_data_loader.dataset_wrapper.kwargs.strong_transform='
              "!import_call {key: 'torchvision.transforms.ColorJitter', init: {kwargs: {brightness: 0.4}}}")
    line = run_error(capsys, ['--config', CONFIG, '--device', 'cpu', '--seed', '0', '--device-data', '--set', jitter])
    assert line == ('error: runtime.device_data: train.train_data_loader.dataset_wrapper.kwargs.strong_transform: '
                    'transform torchvision.transforms.transforms.ColorJitter is not supported by the device data '
                    'path: supported are RandomCrop (zero padding), RandomHorizontalFlip, ToTensor, Normalize, '
                    'ttm_torchdistill.views.StrongAugment (in a Compose or alone); run this config without '
                    '--device-data and --teacher-cache')
