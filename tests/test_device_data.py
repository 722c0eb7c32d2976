"""The device data path (ttm_torchdistill.run.data: device_dataset, device_loader, device_transforms) against
torchvision and torch.

* pixels: for the same crop offsets and flip decisions, the batched device pipeline equals torchvision's PIL
  pipeline (uint8-exact before Normalize, float tolerance after);
* randomness: offsets uniform over 0..2*padding, flips with frequency p, per sample index (independent of batch
  size, world size and order), reproducible per (seed, epoch);
* order: shards and batches equal a real DataLoader over DistributedSampler / Random- / SequentialSampler;
* refusals: every unsupported transform, dataset or loader option is a one-line ValueError.
"""
import hashlib
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from torchvision import transforms as T
from torchvision.transforms import v2 as T2
from torchvision.transforms import functional as TF

import runner_support as support
from ttm_torchdistill.run.data.device_dataset import DeviceDataset, derive_seed
from ttm_torchdistill.run.data.device_loader import DeviceLoader, epoch_order, shard
from ttm_torchdistill.run.data.device_transforms import translate_transform

pytestmark = pytest.mark.usefixtures('one_torch_thread')

MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


def images(n: int, seed: int = 0, shape=(32, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def train_transform(normalize: bool = True) -> T.Compose:
    ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(p=0.5), T.ToTensor()]
    return T.Compose(ops + ([T.Normalize(MEAN, STD)] if normalize else []))


def device_dataset(n: int = 50, transform=None, seed: int = 0, **kwargs) -> DeviceDataset:
    data = images(n, seed=100 + n)
    pipeline = translate_transform(transform or train_transform(), image_shape=data.shape[1:])
    return DeviceDataset(data, [i % 7 for i in range(n)], pipeline, seed=seed, **kwargs)


def torchvision_reference(image: np.ndarray, transform, params) -> torch.Tensor:
    """Run torchvision's own transforms on one PIL image, with the random parameters taken from ``params``.

    ``params`` is aligned with the flattened transform list: (top, left) for RandomCrop, a bool for the flip.
    Padding, cropping and flipping are torchvision's functional ops on the original transform's arguments.
    """
    img = Image.fromarray(image)
    for t, p in zip(transform.transforms, params):
        if isinstance(t, T.RandomCrop):
            if t.padding is not None:
                img = TF.pad(img, t.padding, t.fill, t.padding_mode)
            img = TF.crop(img, int(p[0]), int(p[1]), t.size[0], t.size[1])
        elif isinstance(t, T.RandomHorizontalFlip):
            img = TF.hflip(img) if bool(p) else img
        else:
            img = t(img)
    return img


PIPELINES = {
    'cifar': lambda: train_transform(normalize=False),
    'cifar_normalized': lambda: train_transform(normalize=True),
    'crop28_ltrb_padding': lambda: T.Compose([T.RandomCrop((28, 30), padding=(1, 2, 3, 4)), T.ToTensor()]),
    'two_value_padding_flip_first': lambda: T.Compose([T.RandomHorizontalFlip(0.7), T.RandomCrop(32, padding=(3, 1)),
                                                       T.ToTensor()]),
    'tensor_mode_after_totensor': lambda: T.Compose([T.ToTensor(), T.RandomCrop(30, padding=2),
                                                     T.RandomHorizontalFlip(), T.Normalize(MEAN, STD)]),
    'no_padding': lambda: T.Compose([T.RandomCrop(24), T.ToTensor()]),
    'eval': lambda: T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)]),
}


@pytest.mark.parametrize('name', sorted(PIPELINES))
def test_device_pipeline_equals_torchvision_for_the_same_draws(name):
    transform = PIPELINES[name]()
    n = 300 if name == 'cifar' else 60
    data = images(n, seed=1)
    dataset = DeviceDataset(data, [0] * n, translate_transform(transform), seed=3)
    epoch = 2
    out = dataset.augment(epoch, torch.arange(n))
    params = dataset.augmentation_params(epoch)
    normalized = any(isinstance(t, T.Normalize) for t in transform.transforms)
    for i in range(n):
        ref = torchvision_reference(data[i], transform, [None if p is None else p[i] for p in params])
        assert out[i].shape == ref.shape
        if normalized:
            torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-6)
        else:  # pixel-exact: same uint8 values, same float32 after the division by 255
            assert torch.equal((out[i] * 255).round().to(torch.uint8), (ref * 255).round().to(torch.uint8))
            assert torch.equal(out[i], ref)


@pytest.mark.parametrize('name', sorted(PIPELINES))
@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_prepared_dataset_gather_equals_the_batch_pipeline(name, memory_format):
    # DeviceDataset gathers crops from a pre-padded (and pre-mirrored) buffer; apply() pads and crops a batch
    data = device_dataset(30, transform=PIPELINES[name](), memory_format=memory_format)
    idx = torch.tensor([29, 3, 3, 0, 17, 8])
    params = [None if p is None else p[idx] for p in data.augmentation_params(1)]
    batch = data.pipeline.apply(data.images[idx], params, memory_format=memory_format)
    assert torch.equal(data.augment(1, idx), batch)


def test_channels_last_and_dtype_give_the_same_values():
    base = device_dataset(40)
    cl = device_dataset(40, memory_format=torch.channels_last)
    half = device_dataset(40, dtype=torch.float16)
    idx = torch.arange(40)
    a, b, c = base.augment(0, idx), cl.augment(0, idx), half.augment(0, idx)
    assert a.is_contiguous() and b.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)
    assert c.dtype == torch.float16 and torch.equal(c, a.to(torch.float16))


def test_crop_offsets_are_uniform_and_flips_have_frequency_p():
    n = 18000
    pipeline = translate_transform(T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(p=0.3),
                                              T.ToTensor()]))
    params = pipeline.draw(n, torch.Generator().manual_seed(derive_seed('test', 0)))
    offsets, flips = params[0], params[1]
    assert offsets.shape == (n, 2) and flips.shape == (n,) and flips.dtype == torch.bool
    chi2_999 = 26.12  # chi-square critical value, 8 degrees of freedom, p = 0.001
    for axis in range(2):
        counts = torch.bincount(offsets[:, axis], minlength=9).double()
        assert counts.numel() == 9, 'offsets must lie in 0..2*padding'
        expected = n / 9
        assert ((counts - expected) ** 2 / expected).sum().item() < chi2_999
    # the pair (top, left) is uniform over the 81 cells too (no correlation between the axes)
    pairs = torch.bincount(offsets[:, 0] * 9 + offsets[:, 1], minlength=81).double()
    assert ((pairs - n / 81) ** 2 / (n / 81)).sum().item() < 124.8  # 80 d.o.f., p = 0.001
    sigma = (0.3 * 0.7 / n) ** 0.5
    assert abs(flips.double().mean().item() - 0.3) < 4 * sigma
    for p, expected in ((0.0, 0), (1.0, n)):
        never_or_always = translate_transform(T.Compose([T.RandomHorizontalFlip(p=p), T.ToTensor()]))
        assert int(never_or_always.draw(n, torch.Generator().manual_seed(0))[0].sum()) == expected


def collect(loader: DeviceLoader):
    """(indices, images, targets) of one epoch, concatenated in yield order."""
    idx, imgs, tgts = [], [], []
    for batch in loader:
        images_, targets, supp = batch
        idx.append(supp['indices'])
        imgs.append(images_)
        tgts.append(targets)
    return torch.cat(idx), torch.cat(imgs), torch.cat(tgts)


@pytest.mark.parametrize('n', [1, 2, 12, 13])
@pytest.mark.parametrize('world_size', [2, 3])
@pytest.mark.parametrize('shard_drop_last', [False, True])
@pytest.mark.parametrize('loader_drop_last', [False, True])
@pytest.mark.parametrize('shuffle', [True, False])
def test_shards_and_batches_equal_dataloader_over_distributed_sampler(n, world_size, shard_drop_last,
                                                                      loader_drop_last, shuffle):
    data = device_dataset(n, transform=T.Compose([T.ToTensor()]), seed=11)
    batch_size = 2
    for rank in range(world_size):
        sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=5,
                                     drop_last=shard_drop_last)
        reference = DataLoader(range(n), batch_size=batch_size, sampler=sampler, drop_last=loader_drop_last)
        loader = DeviceLoader(data, batch_size, shuffle=shuffle, drop_last=loader_drop_last, order_seed=5,
                              rank=rank, world_size=world_size, shard_drop_last=shard_drop_last)
        for epoch in (0, 3):
            sampler.set_epoch(epoch)
            loader.set_epoch(epoch)
            expected = [b.tolist() for b in reference]
            got = [supp['indices'].tolist() for _, _, supp in loader]
            assert got == expected, (rank, epoch)
            assert len(loader) == len(reference)
            assert loader.num_samples() == len(sampler)


def test_shard_rule_on_any_order_matches_distributed_sampler_rule():
    order = torch.tensor([9, 4, 7, 0, 2, 8, 1, 3, 6, 5, 10])

    class Fixed(DistributedSampler):  # DistributedSampler's padding/trimming/striding applied to a given order
        def __iter__(self):
            indices = order.tolist()
            if not self.drop_last:
                pad = self.total_size - len(indices)
                indices += (indices * (pad // len(indices) + 1))[:pad]
            else:
                indices = indices[:self.total_size]
            return iter(indices[self.rank:self.total_size:self.num_replicas])

    for world_size in (2, 3, 4, 12, 25):
        for drop_last in (False, True):
            for rank in range(world_size):
                sampler = Fixed(range(11), num_replicas=world_size, rank=rank, drop_last=drop_last)
                assert shard(order, rank, world_size, drop_last).tolist() == list(sampler)


def test_non_distributed_order_and_batches():
    data = device_dataset(23, transform=T.Compose([T.ToTensor()]))
    sequential = DeviceLoader(data, 5, shuffle=False, drop_last=False)
    assert [s['indices'].tolist() for _, _, s in sequential] == \
        [b.tolist() for b in DataLoader(range(23), batch_size=5, sampler=SequentialSampler(range(23)))]
    dropping = DeviceLoader(data, 5, shuffle=True, drop_last=True)
    assert len(dropping) == 4
    idx, _, _ = collect(dropping)
    assert idx.numel() == 20 and len(set(idx.tolist())) == 20
    loader = DeviceLoader(data, 5, shuffle=True)
    first, second = collect(loader)[0], collect(loader)[0]
    assert sorted(first.tolist()) == list(range(23)) and first.tolist() != list(range(23))
    assert first.tolist() == epoch_order(23, 0, True, data.seed).tolist()
    assert second.tolist() == epoch_order(23, 1, True, data.seed).tolist()  # iterating again moves on an epoch


def test_yields_like_torchdistill_training_loaders():
    data = device_dataset(20)
    images_, targets, supp = next(iter(DeviceLoader(data, 8, shuffle=True)))
    assert images_.shape == (8, 3, 32, 32) and images_.dtype == torch.float32
    assert targets.dtype == torch.int64 and targets.tolist() == [i % 7 for i in supp['indices'].tolist()]
    assert supp['indices'].dtype == torch.int64
    batch = next(iter(DeviceLoader(data, 8)))
    assert batch[0].shape[0] == batch[1].shape[0] == 8  # evaluation loops read batch[0], batch[1]


def test_augmentation_of_a_sample_is_independent_of_batch_size_world_size_and_order():
    data = device_dataset(37, seed=4)
    epoch = 5
    expected = data.augment(epoch, torch.arange(37))
    for batch_size in (1, 7, 64):
        for world_size in (1, 2, 3):
            for rank in range(world_size):
                loader = DeviceLoader(data, batch_size, shuffle=True, rank=rank, world_size=world_size)
                loader.set_epoch(epoch)
                idx, imgs, tgts = collect(loader)
                assert torch.equal(imgs, expected[idx])
                assert tgts.tolist() == [i % 7 for i in idx.tolist()]


def test_same_seed_and_epoch_same_stream_other_epochs_and_seeds_differ():
    idx = torch.arange(50)
    a, b, other_seed = device_dataset(50, seed=1), device_dataset(50, seed=1), device_dataset(50, seed=2)
    assert torch.equal(a.augment(3, idx), b.augment(3, idx))
    assert not torch.equal(a.augment(3, idx), a.augment(4, idx))
    assert not torch.equal(a.augment(3, idx), other_seed.augment(3, idx))
    # resuming at epoch 3 reproduces what an uninterrupted loader yields in its fourth epoch
    running = DeviceLoader(a, 16, shuffle=True)
    for _ in range(3):
        collect(running)
    uninterrupted = collect(running)
    resumed = DeviceLoader(b, 16, shuffle=True)
    resumed.set_epoch(3)
    for x, y in zip(uninterrupted, collect(resumed)):
        assert torch.equal(x, y)


class _Reverse(T.RandomCrop):
    pass


@pytest.mark.parametrize('transform, match', [
    (T.Compose([T.ColorJitter(0.4), T.ToTensor()]), r'ColorJitter is not supported .* supported are RandomCrop'),
    (T.Compose([T.RandomCrop(32, padding=4, padding_mode='reflect'), T.ToTensor()]),
     r"padding_mode='reflect' is not supported .* expected 'constant'"),
    (T.Compose([T.RandomCrop(32, padding=4, fill=128), T.ToTensor()]), r'fill=128 is not supported .* expected 0'),
    (T.Compose([T.RandomCrop(32, pad_if_needed=True), T.ToTensor()]), r'pad_if_needed=True\) is not supported'),
    (T.Compose([T.RandomCrop(40, padding=2), T.ToTensor()]), r'size \(40, 40\) is larger than the padded image'),
    (T.Compose([T.RandomCrop(32, padding=-1), T.ToTensor()]), r'padding -1 is negative'),
    (T.Compose([T.RandomCrop(32, padding=(1, 2, 3)), T.ToTensor()]), r'padding \(1, 2, 3\) is not supported'),
    (T.Compose([_Reverse(32), T.ToTensor()]), r'_Reverse is not supported'),
    (T.Compose([T.Normalize(MEAN, STD), T.ToTensor()]), r'Normalize before ToTensor'),
    (T.Compose([T.ToTensor(), T.Normalize(MEAN, (0.2, 0.0, 0.2))]), r'std .* has a zero'),
    (T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5), (0.2, 0.2))]), r'2 means and 2 stds for 3-channel'),
    (T.Compose([T.RandomHorizontalFlip()]), r'has no ToTensor'),
    (T.Compose([T.ToTensor(), T.ToTensor()]), r'ToTensor appears twice'),
    (T.Compose([T.RandomResizedCrop(32), T.ToTensor()]), r'RandomResizedCrop is not supported'),
    (T.Compose([T.Lambda(lambda x: x), T.ToTensor()]), r'Lambda is not supported'),
    (T2.RandomCrop(32, padding=4), r'v2.*RandomCrop is not supported'),
    (None, r'has no transform'),
])
def test_unsupported_transforms_are_refused(transform, match):
    with pytest.raises(ValueError, match=match):
        translate_transform(transform)


def test_single_transform_and_nested_compose_are_translated():
    assert [op['op'] for op in translate_transform(T.ToTensor()).describe()] == ['ToTensor']
    nested = T.Compose([T.Compose([T.RandomCrop(32, padding=4)]), T.ToTensor()])
    assert [op['op'] for op in translate_transform(nested).describe()] == ['RandomCrop', 'ToTensor']


@pytest.fixture
def tiny_cifar100(tmp_path, monkeypatch):
    """Real torchvision CIFAR100 objects over generated files in the on-disk format (md5 check bypassed)."""
    support.write_tiny_cifar100(str(tmp_path), num_train=64, num_test=30)
    # the generated files cannot match the real archive's md5; check only that they exist
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda fpath, md5=None: os.path.isfile(fpath))

    def make(train=True, **kwargs):
        return torchvision.datasets.CIFAR100(str(tmp_path), train=train, download=False, **kwargs)
    return make


def test_from_real_torchvision_cifar100(tiny_cifar100):
    dataset = tiny_cifar100(train=True, transform=train_transform())
    data = DeviceDataset.from_torchvision(dataset, device='cpu', seed=0)
    assert len(data) == 64
    assert data.checksums() == (hashlib.sha256(dataset.data.tobytes()).hexdigest(),
                                hashlib.sha256(np.asarray(dataset.targets, dtype='<i8').tobytes()).hexdigest())
    out = data.augment(0, torch.arange(64))
    params = data.augmentation_params(0)
    for i in range(64):
        ref = torchvision_reference(dataset.data[i], dataset.transform, [p[i] if p is not None else None
                                                                         for p in params])
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-6)
    # without random ops, the device path equals the dataset's own __getitem__
    test = tiny_cifar100(train=False, transform=PIPELINES['eval']())
    test_data = DeviceDataset.from_torchvision(test, seed=0)
    images_, targets, supp = collect(DeviceLoader(test_data, 8))[1], None, None
    for i in range(30):
        image, target = test[i]
        torch.testing.assert_close(images_[i], image, rtol=0, atol=1e-6)
        assert int(test_data.targets[i]) == target


def test_unsupported_datasets_are_refused(tiny_cifar100):
    with pytest.raises(ValueError, match=r'FakeData is not supported .* expected torchvision.datasets.CIFAR10'):
        DeviceDataset.from_torchvision(torchvision.datasets.FakeData(size=4, transform=T.ToTensor()))
    with pytest.raises(ValueError, match=r'has a target_transform \(.*Lambda\)'):
        DeviceDataset.from_torchvision(tiny_cifar100(transform=T.ToTensor(), target_transform=T.Lambda(int)))
    broken = tiny_cifar100(transform=T.ToTensor())
    broken.data = broken.data.astype(np.float32)
    with pytest.raises(ValueError, match=r'\.data is ndarray float32 .* expected a uint8 numpy array'):
        DeviceDataset.from_torchvision(broken)
    short = tiny_cifar100(transform=T.ToTensor())
    short.targets = short.targets[:-1]
    with pytest.raises(ValueError, match=r'\.targets has 63 entries: expected 64'):
        DeviceDataset.from_torchvision(short)
    with pytest.raises(ValueError, match=r'ColorJitter is not supported'):
        DeviceDataset.from_torchvision(tiny_cifar100(transform=T.Compose([T.ColorJitter(0.1), T.ToTensor()])))


def loader_config(sampler=RandomSampler, sampler_kwargs=None, **kwargs):
    kwargs = {'batch_size': 4, 'num_workers': 8, 'pin_memory': True, 'drop_last': False, **kwargs}
    return {'dataset_id': 'x', 'sampler': {'class_or_func': sampler, 'kwargs': sampler_kwargs}, 'kwargs': kwargs}


def test_from_config_mirrors_torchdistill_build_data_loader():
    data = device_dataset(10, transform=T.ToTensor(), seed=9)
    random_loader = DeviceLoader.from_config(data, loader_config(RandomSampler, drop_last=True))
    assert (random_loader.shuffle, random_loader.drop_last, random_loader.batch_size, len(random_loader)) == \
        (True, True, 4, 2)
    assert not DeviceLoader.from_config(data, loader_config(SequentialSampler)).shuffle
    # under distribution torchdistill builds DistributedSampler(dataset, **sampler.kwargs): shuffled even for a
    # SequentialSampler config
    dist = DeviceLoader.from_config(data, loader_config(SequentialSampler), distributed=True, rank=1, world_size=3)
    reference = DistributedSampler(range(10), num_replicas=3, rank=1, seed=9)
    assert collect(dist)[0].tolist() == list(reference)
    seeded = DeviceLoader.from_config(data, loader_config(sampler_kwargs={'seed': 2, 'drop_last': True}),
                                      distributed=True, rank=0, world_size=3)
    assert collect(seeded)[0].tolist() == list(DistributedSampler(range(10), 3, 0, seed=2, drop_last=True))


@pytest.mark.parametrize('config, kwargs, match', [
    (loader_config(collate_fn='my_collate'), {}, r"kwargs \['collate_fn'\] are not supported"),
    ({**loader_config(), 'collate_fn': 'my_collate'}, {}, r"collate_fn 'my_collate' is not supported"),
    ({**loader_config(), 'batch_sampler': {'key': 'GroupedBatchSampler'}}, {}, r'batch_sampler .* is not supported'),
    ({**loader_config(), 'dataset_wrapper': {'key': 'CRDDatasetWrapper'}}, {}, r'dataset_wrapper .* not supported'),
    (loader_config(DistributedSampler), {}, r'DistributedSampler in a non-distributed run'),
    (loader_config(torch.utils.data.WeightedRandomSampler), {}, r'WeightedRandomSampler is not supported'),
    (loader_config(None), {}, r'sampler None is not supported'),
    (loader_config(sampler_kwargs={'replacement': True}), {}, r"RandomSampler kwargs \{'replacement': True\}"),
    (loader_config(SequentialSampler, sampler_kwargs={'x': 1}), {}, r'SequentialSampler kwargs'),
    (loader_config(sampler_kwargs={'num_replicas': 2}), {'distributed': True, 'world_size': 2},
     r"sampler kwargs \['num_replicas'\] under distributed"),
    (loader_config(shuffle=True), {}, r'shuffle=True with a sampler'),
    (loader_config(batch_size=0), {}, r'batch_size 0: expected a positive int'),
    (loader_config(batch_size=None), {}, r'batch_size None'),
    (loader_config(), {'distributed': True, 'rank': 2, 'world_size': 2}, r'rank 2 / world_size 2'),
])
def test_unsupported_loader_configs_are_refused(config, kwargs, match):
    data = device_dataset(10, transform=T.ToTensor())
    with pytest.raises(ValueError, match=match):
        DeviceLoader.from_config(data, config, **kwargs)


def test_torchdistill_pre_epoch_path_resolves_and_forwards_set_epoch():
    loader = DeviceLoader(device_dataset(10, transform=T.ToTensor()), 4, shuffle=True)
    loader.batch_sampler.sampler.set_epoch(6)
    assert loader.epoch == 6
    assert not isinstance(loader.batch_sampler.sampler, DistributedSampler)
