"""The teacher-logit cache format (ttm_torchdistill.run.data.per_seed_cache): round trip, checks, builder."""
import json
import os

import numpy as np
import pytest
import torch
from torchdistill.models.registry import MODEL_DICT
from torchvision import transforms as T

import ttm_torchdistill  # noqa: F401  (registers the CIFAR models)
from ttm_torchdistill.run.data.device_dataset import DeviceDataset
from ttm_torchdistill.run.data.device_loader import DeviceLoader
from ttm_torchdistill.run.data.device_transforms import translate_transform
from ttm_torchdistill.run.data.per_seed_cache import (METADATA_FILE, CacheWriter, TeacherCache, build_teacher_cache,
                                                cache_metadata, epoch_file, file_sha256)

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def make_data(n=40, seed=0) -> DeviceDataset:
    images = np.random.default_rng(7).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.5, 0.49, 0.44), (0.27, 0.26, 0.28))])
    return DeviceDataset(images, [i % 10 for i in range(n)], translate_transform(transform), seed=seed)


def write_random_cache(path, data, epochs=3, num_classes=5, dtype='float32', seed=0):
    rng = np.random.default_rng(seed)
    metadata = cache_metadata('ab' * 32, data, epochs, dtype)
    writer = CacheWriter(str(path), metadata, len(data), num_classes, dtype)
    logits = [rng.normal(0, 3, size=(len(data), num_classes)).astype(np.float32) for _ in range(epochs)]
    for epoch, epoch_logits in enumerate(logits):
        writer.write_epoch(epoch, epoch_logits)
    return writer.finish(), logits


def test_round_trip_float32(tmp_path):
    data = make_data()
    metadata, logits = write_random_cache(tmp_path / 'c', data)
    cache = TeacherCache(str(tmp_path / 'c'))
    assert cache.metadata == json.loads((tmp_path / 'c' / METADATA_FILE).read_text()) == metadata
    assert (cache.epochs, cache.num_samples, cache.num_classes, cache.dtype_name) == (3, 40, 5, 'float32')
    cache.check(cache_metadata('ab' * 32, data, epochs=3))
    for epoch in (2, 0, 1):
        idx = torch.tensor([39, 0, 5, 5, 17])
        got = cache.lookup(epoch, idx)
        assert got.dtype == torch.float32 and torch.equal(got, torch.from_numpy(logits[epoch][idx.numpy()]))
    assert sorted(os.listdir(tmp_path / 'c')) == sorted([METADATA_FILE] + [epoch_file(e) for e in range(3)])


def test_float16_halves_the_size_and_rounds_to_half(tmp_path):
    data = make_data(n=400)
    _, logits = write_random_cache(tmp_path / 'f32', data, epochs=1, num_classes=100)
    _, _ = write_random_cache(tmp_path / 'f16', data, epochs=1, num_classes=100, dtype='float16')
    size32 = os.path.getsize(tmp_path / 'f32' / epoch_file(0))
    size16 = os.path.getsize(tmp_path / 'f16' / epoch_file(0))
    assert abs(2 * size16 - size32) <= 256  # the .npy headers (128 bytes each) are all that is not halved
    cache = TeacherCache(str(tmp_path / 'f16'))
    assert cache.epoch_logits(0).dtype == torch.float16
    got = cache.lookup(0, torch.arange(400))
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.from_numpy(logits[0]).half().float())


def test_check_names_the_first_mismatch(tmp_path):
    data = make_data()
    write_random_cache(tmp_path / 'c', data, epochs=3)
    cache = TeacherCache(str(tmp_path / 'c'))
    expected = cache_metadata('ab' * 32, data, epochs=3)
    cases = {
        'teacher_sha256': ('cd' * 32, r"teacher_sha256 differs: the cache has 'abab.*', the run has 'cdcd"),
        'dataset_size': (41, r'dataset_size differs: the cache has 40, the run has 41'),
        'images_sha256': ('0' * 64, r'images_sha256 differs'),
        'labels_sha256': ('0' * 64, r'labels_sha256 differs'),
        'seed': (1, r'seed differs: the cache has 0, the run has 1'),
        'dtype': ('float16', r"dtype differs: the cache has 'float32', the run has 'float16'"),
        'num_classes': (100, r'num_classes differs: the cache has 5, the run has 100'),
        'format_version': (2, r'format_version differs'),
    }
    for key, (value, match) in cases.items():
        with pytest.raises(ValueError, match=match):
            cache.check(dict(expected, **{key: value}))
    other_transform = make_data().describe()
    other_transform['ops'][1]['p'] = 0.25
    with pytest.raises(ValueError, match=r'transform differs: the cache has \{.*"p": 0.5.*the run has \{.*"p": 0.25'):
        cache.check(dict(expected, transform=other_transform))
    with pytest.raises(ValueError, match=r'the cache has fewer epochs than the run: the cache has 3, the run has 4'):
        cache.check(dict(expected, epochs=4))
    cache.check(dict(expected, epochs=2))  # more epochs than needed is fine
    # several differences: the first in CHECKED_FIELDS order is named
    with pytest.raises(ValueError, match=r'teacher_sha256 differs'):
        cache.check(dict(expected, seed=5, teacher_sha256='x', epochs=9))


def test_unfinished_or_damaged_caches_are_refused(tmp_path):
    data = make_data()
    writer = CacheWriter(str(tmp_path / 'c'), cache_metadata('ab' * 32, data, 2), len(data), 5)
    writer.write_epoch(0, np.zeros((40, 5), np.float32))
    with pytest.raises(ValueError, match=r'no metadata.json \(not a cache, or its build did not finish\)'):
        TeacherCache(str(tmp_path / 'c'))
    with pytest.raises(ValueError, match=r'epoch 2 written out of order: expected epoch 1'):
        writer.write_epoch(2, np.zeros((40, 5), np.float32))
    with pytest.raises(ValueError, match=r'logits have shape \(40, 4\), expected \(40, 5\)'):
        writer.write_epoch(1, np.zeros((40, 4), np.float32))
    writer.write_epoch(1, np.zeros((40, 5), np.float32))
    writer.finish()
    cache = TeacherCache(str(tmp_path / 'c'))
    with pytest.raises(ValueError, match=r'epoch 2 requested, the cache holds epochs 0..1'):
        cache.lookup(2, torch.arange(3))
    np.save(tmp_path / 'c' / epoch_file(1), np.zeros((40, 5), np.float64))
    with pytest.raises(ValueError, match=r'holds float64 \(40, 5\), metadata.json says float32 \(40, 5\)'):
        cache.lookup(1, torch.arange(3))
    os.remove(tmp_path / 'c' / epoch_file(1))
    with pytest.raises(ValueError, match=r'logits_epoch0001.npy is missing although metadata.json records 2'):
        TeacherCache(str(tmp_path / 'c'))
    with pytest.raises(ValueError, match=r"dtype 'bfloat16' is not supported: expected float32, float16 or float64"):
        CacheWriter(str(tmp_path / 'd'), {}, 4, 2, 'bfloat16')


def test_cached_logits_equal_the_live_teacher(tmp_path):
    torch.manual_seed(0)
    teacher = MODEL_DICT['cifar_resnet8'](num_classes=10)
    teacher.train()
    ckpt = tmp_path / 'teacher.pt'
    torch.save(teacher.state_dict(), ckpt)
    data = make_data(n=40, seed=3)
    expected = cache_metadata(file_sha256(str(ckpt)), data, epochs=2)
    written = build_teacher_cache(teacher, data, 2, str(tmp_path / 'cache'), expected, batch_size=16)
    assert teacher.training, 'the teacher\'s mode is restored'
    cache = TeacherCache(str(tmp_path / 'cache'))
    assert cache.metadata == written and written['num_classes'] == 10
    cache.check(expected)
    teacher.eval()
    for epoch in (0, 1):
        # any batching, sharding and order of the training loader finds its logits in the cache
        loader = DeviceLoader(data, 7, shuffle=True, rank=1, world_size=2)
        loader.set_epoch(epoch)
        for images, _, supp in loader:
            with torch.no_grad():
                live = teacher(images)
            torch.testing.assert_close(cache.lookup(epoch, supp['indices']), live, rtol=1e-5, atol=1e-6)
    assert not torch.equal(cache.lookup(0, torch.arange(40)), cache.lookup(1, torch.arange(40)))


def test_builder_refuses_metadata_that_disagrees_with_the_data(tmp_path):
    teacher = MODEL_DICT['cifar_resnet8'](num_classes=10)
    data = make_data()
    with pytest.raises(ValueError, match=r'metadata seed is 9 but the data has 0'):
        build_teacher_cache(teacher, data, 1, str(tmp_path), {'teacher_sha256': 'ab', 'seed': 9})
    with pytest.raises(ValueError, match=r'metadata has no teacher_sha256'):
        build_teacher_cache(teacher, data, 1, str(tmp_path), {})
    with pytest.raises(ValueError, match=r'epochs=0: expected a positive int'):
        build_teacher_cache(teacher, data, 0, str(tmp_path), {'teacher_sha256': 'ab'})
    with pytest.raises(ValueError, match=r'needs a DeviceDataset or DeviceLoader, got list'):
        build_teacher_cache(teacher, [1, 2], 1, str(tmp_path), {'teacher_sha256': 'ab'})
