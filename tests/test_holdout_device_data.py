"""``--holdout N`` with ``--device-data``: the training part is a set of indices into the device-resident training set,
the held-out part is validated with the validation transform, and a teacher cache built without a held-out split
(complete or per seed) serves the run, each sample keeping its index in the whole training set.

Driven from the command line on a tiny CIFAR-100 in CIFAR's on-disk format with the tests' holdout config
(``tests/configs/torchdistill_vocabulary/holdout_base.yaml``, as tests/test_holdout.py); the loader over a part is
compared with a DataLoader over the same ``Subset`` with DistributedSampler's order (1, 2 and 3 ranks).
"""
import hashlib
import json
import os
import subprocess
import sys
import types

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import transforms as T

import runner_support as support
from ttm_torchdistill.datasets import CIFAR100Format, holdout_indices, holdout_split
from ttm_torchdistill.run.data import fast_path
from ttm_torchdistill.run.data.device_dataset import DeviceDataset
from ttm_torchdistill.run.data.device_loader import DeviceLoader
from ttm_torchdistill.run.data.device_transforms import translate_transform

pytestmark = pytest.mark.usefixtures('one_torch_thread')

BASE = os.path.join(support.CONFIG_DIR, 'torchdistill_vocabulary', 'holdout_base.yaml')
COMMON = ['--device', 'cpu', '--seed', '0']
LAST, SUMMARY = os.path.join('ckpt', 'student.last.pt'), os.path.join('ckpt', 'student.json')
NUM_TRAIN, HOLDOUT = 60, 10
EVAL = T.Compose([T.ToTensor(), T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))])


def _weights(path=LAST):
    return torch.load(path, weights_only=False)['model']


def _summary(path=SUMMARY):
    with open(path) as fp:
        return json.load(fp)


def _held_and_kept():
    """The held-out and training indices of the tiny set (labels ``i % 100``), as the split draws them."""
    held = holdout_indices([i % 100 for i in range(NUM_TRAIN)], NUM_TRAIN, HOLDOUT, seed=0)
    return held, [i for i in range(NUM_TRAIN) if i not in set(held)]


@pytest.fixture
def parts(tmp_path):
    support.write_tiny_cifar100(str(tmp_path), num_train=64, num_test=8)
    source = CIFAR100Format(str(tmp_path), train=True, download=False, transform=EVAL)
    return holdout_split(source, 16, seed=0, sub_splits_configs=[{'transform': EVAL}, {'transform': EVAL}])


@pytest.mark.parametrize('world_size', [1, 2, 3])
@pytest.mark.parametrize('shuffle', [True, False])
def test_a_part_is_batched_as_a_dataloader_over_the_subset_with_distributed_samplers_order(parts, world_size,
                                                                                          shuffle):
    for part in parts:
        source, subset = fast_path.subset_source(part)
        assert source is part.dataset and subset == part.indices
        data = DeviceDataset.from_torchvision(source, seed=3)
        assert len(data) == 64
        for rank in range(world_size):
            sampler = DistributedSampler(part, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=5)
            reference = DataLoader(part, batch_size=5, sampler=sampler)
            loader = DeviceLoader(data, 5, shuffle=shuffle, order_seed=5, rank=rank, world_size=world_size,
                                  subset=subset)
            for epoch in (0, 2):
                sampler.set_epoch(epoch)
                loader.set_epoch(epoch)
                batches = list(loader)
                assert len(batches) == len(reference) and loader.num_samples() == len(sampler)
                indices = torch.cat([supp['indices'] for _, _, supp in batches]).tolist()
                assert indices == [part.indices[position] for position in sampler]  # whole-set indices
                for (images, targets, _), (ref_images, ref_targets) in zip(batches, reference):
                    torch.testing.assert_close(images, ref_images, rtol=0, atol=1e-6)
                    assert targets.tolist() == ref_targets.tolist()


def test_the_parts_of_a_split_share_one_device_copy_of_the_training_images(parts):
    """Each part is its own copy of the training set with its own transform; the device holds the images once."""
    ctx = types.SimpleNamespace(device=torch.device('cpu'), distributed=False, rank=0, world_size=1)
    device_data = fast_path.DeviceData({'train': parts[0], 'held': parts[1]}, ctx, seed=0)
    train, held = device_data.dataset('train', 'train'), device_data.dataset('held', 'held')
    assert train.images is held.images and len(train) == 64
    assert (device_data.subset('train'), device_data.subset('held')) == (parts[0].indices, parts[1].indices)


def test_a_subset_must_name_samples_of_the_device_dataset():
    data = DeviceDataset(torch.zeros(10, 4, 4, 3, dtype=torch.uint8), list(range(10)),
                         translate_transform(T.ToTensor(), image_shape=(4, 4, 3)), seed=0)
    with pytest.raises(ValueError, match=r'^subset: expected indices in 0\.\.9 \(the device dataset has 10 samples\), '
                                         r'got 3\.\.10$'):
        DeviceLoader(data, 4, subset=[3, 10])
    with pytest.raises(ValueError, match=r'^subset: expected a non-empty list of dataset indices, got shape \(0,\)$'):
        DeviceLoader(data, 4, subset=[])


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    support.write_tiny_cifar100('data/cifar100', num_train=NUM_TRAIN, num_test=20)
    torch.manual_seed(7)
    torch.save({'model': support.TinyBNNet(100, width=8).state_dict()}, 'teacher.pt')
    return tmp_path


def _record(event: str) -> None:
    """One line in ``$TTM_TEST_READS``, the file where ReadRecordingCIFAR100 writes its builds and reads."""
    with open(os.environ['TTM_TEST_READS'], 'a') as fp:
        fp.write(event + '\n')


@pytest.fixture
def recorded_loaders(folder, monkeypatch):
    """Every device dataset made and every batch a device loader yields (the loader's place in the config and the
    batch's sample indices), in one file with the datasets' own builds; returns a reader of its lines."""
    reads = os.path.join(folder, 'reads.txt')
    monkeypatch.setenv('TTM_TEST_READS', reads)
    make_loader, make_dataset, batches = fast_path.DeviceData.loader, DeviceDataset.from_torchvision, \
        DeviceLoader._batches

    def loader(self, loader_config, where):
        made = make_loader(self, loader_config, where)
        made.where = where
        return made

    def from_torchvision(cls, dataset, **kwargs):
        _record(f'{"train" if dataset.train else "test"} device copy')
        return make_dataset.__func__(cls, dataset, **kwargs)

    def recorded_batches(self, epoch):
        for batch in batches(self, epoch):
            _record(f'{self.where} {epoch} {json.dumps(batch[2]["indices"].tolist())}')
            yield batch
    monkeypatch.setattr(fast_path.DeviceData, 'loader', loader)
    monkeypatch.setattr(DeviceDataset, 'from_torchvision', classmethod(from_torchvision))
    monkeypatch.setattr(DeviceLoader, '_batches', recorded_batches)

    def lines():
        with open(reads) as fp:
            return fp.read().split('\n')[:-1]
    return lines


def _epoch_indices(events, where):
    """{epoch: the indices the loader at ``where`` yielded in it, in order}."""
    out = {}
    for event in events:
        if event.startswith(where + ' '):
            epoch, indices = event[len(where) + 1:].split(' ', 1)
            out.setdefault(int(epoch), []).extend(json.loads(indices))
    return out


def test_trains_on_the_training_part_validates_on_the_held_out_images_and_reads_the_test_set_last(
        recorded_loaders, capsys):
    recording = ['--set', 'datasets.*.key=runner_support.ReadRecordingCIFAR100']
    out = support.cli_ok(capsys, ['--config', BASE, '--holdout', str(HOLDOUT), '--device-data'] + recording + COMMON)
    assert 'Start training (runtime: device_data, holdout=10)' in out
    events = recorded_loaders()
    held, kept = _held_and_kept()
    record = _summary()['holdout']
    assert record['indices_sha256'] == hashlib.sha256(json.dumps(held).encode()).hexdigest()
    train, val = _epoch_indices(events, 'train.train_data_loader'), _epoch_indices(events, 'train.val_data_loader')
    assert sorted(train) == sorted(val) == [0, 1]
    for epoch in (0, 1):
        assert sorted(train[epoch]) == kept and train[epoch] != kept  # every training image once, shuffled
        assert val[epoch] == held  # the validation loader is sequential
    first_test = events.index('test build')
    assert not any(event.startswith('test') for event in events[:first_test])
    assert not any(event.startswith('train') for event in events[first_test:]), 'training read after the test set'
    assert events[first_test + 1] == 'test device copy'
    assert len(_epoch_indices(events, 'test.test_data_loader')[0]) == 20


def _no_random_variant() -> str:
    """The holdout config without random augmentation and with a sequential training order: what the stock and the
    device data paths draw then is the same (the device path's crops and order are streams of its own)."""
    with open(BASE) as fp:
        text = fp.read()
    crop = "                - !import_call {key: 'torchvision.transforms.RandomCrop', init: {kwargs: {size: 32, " \
           "padding: 4}}}\n"
    flip = "                - !import_call {key: 'torchvision.transforms.RandomHorizontalFlip', init: {kwargs: {p: " \
           "0.5}}}\n"
    shuffled = "class_or_func: !import_get {key: 'torch.utils.data.RandomSampler'}"
    assert crop in text and flip in text and shuffled in text
    text = text.replace(crop, '').replace(flip, '').replace(shuffled, shuffled.replace('Random', 'Sequential'))
    with open('no_random.yaml', 'w') as fp:
        fp.write(text)
    return 'no_random.yaml'


def test_without_random_draws_the_device_path_trains_the_stock_paths_student(folder, capsys):
    config = _no_random_variant()
    support.cli_ok(capsys, ['--config', config, '--holdout', str(HOLDOUT)] + COMMON)
    stock, stock_summary = _weights(), _summary()
    support.cli_ok(capsys, ['--config', config, '--holdout', str(HOLDOUT), '--device-data', '--overwrite'] + COMMON)
    device, device_summary = _weights(), _summary()
    assert device_summary['holdout'] == stock_summary['holdout'] and stock_summary['holdout']['size'] == HOLDOUT
    for a, b in zip(stock_summary['epochs'], device_summary['epochs']):
        assert (a['val_top1'], a['val_top5'], a['train_images']) == (b['val_top1'], b['val_top5'], b['train_images'])
        assert a['train_loss'] == pytest.approx(b['train_loss'], rel=1e-5)
    for key, value in stock.items():  # the pixels agree to float32 rounding (tests/test_device_data.py)
        torch.testing.assert_close(device[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_teacher_caches_built_without_a_holdout_give_the_live_teachers_student(folder, capsys):
    """float64 end to end: one complete cache and one per-seed cache of the whole training set, each read by a run
    that holds 10 images out, end with the student of the same run with the live teacher."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        support.cli_ok(capsys, ['cache-teacher', '--config', BASE, '--views', 'all', '--out', 'complete', '--device',
                                'cpu', '--dtype', 'float64', '--batch-size', '2000'])
        out = support.cli_ok(capsys, ['cache-teacher', '--config', BASE, '--seed', '0', '--out', 'per_seed',
                                      '--device', 'cpu', '--dtype', 'float64', '--set', f'runtime.holdout={HOLDOUT}'])
        assert f'2 epochs x {NUM_TRAIN} images' in out  # the whole training set, even asked with a holdout
        with open(os.path.join('per_seed', 'metadata.json')) as fp:
            assert json.load(fp)['dataset_size'] == NUM_TRAIN
        run = ['--config', BASE, '--holdout', str(HOLDOUT), '--device-data', '--overwrite'] + COMMON
        support.cli_ok(capsys, run)
        live = _weights()
        for cache in ('complete', 'per_seed'):
            support.cli_ok(capsys, run + ['--teacher-cache', cache])
            cached = _weights()
            for key, value in live.items():
                assert value.dtype == torch.float64 or not value.is_floating_point()
                torch.testing.assert_close(cached[key], value, rtol=0, atol=1e-10, msg=f'{cache}: {key}')
    finally:
        torch.set_default_dtype(default)


def test_sigkill_then_resume_is_bitwise_identical(folder, capsys):
    """The pre-epoch process kills the run with SIGKILL at the start of its second epoch (the first one's
    checkpoints are written); ``--resume`` ends with the uninterrupted run's student."""
    run = ['--config', BASE, '--holdout', str(HOLDOUT), '--device-data', '--set',
           'train.pre_epoch_process=test_runner_rank_draws'] + COMMON
    support.cli_ok(capsys, run)
    uninterrupted = torch.load(LAST, weights_only=False)
    os.rename('ckpt', 'uninterrupted')
    killed = support.run_cli(run, cwd=str(folder), extra_env={'TTM_TEST_KILL_AT_EPOCH': '1'})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert torch.load(LAST, weights_only=False)['epoch'] == 1 and not os.path.exists(SUMMARY)
    out = support.cli_ok(capsys, run + ['--resume'])
    assert f'Resuming from {LAST} at epoch 2/2' in out
    resumed = torch.load(LAST, weights_only=False)
    assert resumed['epoch'] == uninterrupted['epoch'] == 2
    for key, value in uninterrupted['model'].items():
        assert torch.equal(value, resumed['model'][key]), key
    assert _summary()['holdout'] == _summary(os.path.join('uninterrupted', 'student.json'))['holdout']


def test_torchrun_shards_the_training_part_as_distributed_sampler(folder):
    """Two gloo processes: each rank trains on DistributedSampler's shard of the training part (seeded with the run
    seed, as the device loader's order) and validates on its shard of the held-out images."""
    with open(BASE) as source, open('probed.yaml', 'w') as target:  # the config with the probe that records
        target.write(source.read().replace('dependencies:\n', "dependencies:\n  - name: 'distributed_probes'\n", 1))
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={support.free_port()}', '-m', 'ttm_torchdistill', '--config', 'probed.yaml',
               '--world_size', '2', '--holdout', str(HOLDOUT), '--device-data'] + COMMON
    result = subprocess.run(command, cwd=str(folder), env=support.subprocess_env({'TTM_TEST_PROBE': 'device_indices'}),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    held, kept = _held_and_kept()
    for rank in (0, 1):
        with open(f'device_indices_rank{rank}.json') as fp:
            seen = json.load(fp)
        for where, part in (('train.train_data_loader', kept), ('train.val_data_loader', held)):
            sampler = DistributedSampler(part, num_replicas=2, rank=rank, seed=0)
            for epoch in (0, 1):
                sampler.set_epoch(epoch)
                assert seen[where][str(epoch)] == [part[position] for position in sampler], (rank, where, epoch)
