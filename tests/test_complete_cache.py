"""The complete teacher cache (ttm_torchdistill.run.data.complete_cache, complete_cache_build): format, builder, reader.

* every (sample, view) row holds the teacher's logits on torchvision's PIL pipeline for that crop offset and flip;
* a run's lookup, for any seed and any epoch, equals the teacher on the batch the device loader yields;
* the layout (N x V x C, sample-major), float16 storage, amp recorded and applied;
* a build killed by the operating system (a subprocess ending with ``os._exit``) continues where it stopped and
  ends with the same file as an uninterrupted build;
* refusals: folders holding something else, bad arguments, damaged caches, and each checked field by name.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision import transforms as T

import runner_support as support
from test_device_data import MEAN, STD, torchvision_reference
from ttm_torchdistill.run.data.device_dataset import DeviceDataset
from ttm_torchdistill.run.data.device_loader import DeviceLoader
from ttm_torchdistill.run.data.device_transforms import translate_transform
from ttm_torchdistill.run.data.per_seed_cache import CacheWriter, cache_metadata
from ttm_torchdistill.run.data.complete_cache import (
    BUILD_FILE, CHECKED_FIELDS, LOGITS_FILE, METADATA_FILE, EpochViewLogits, ViewCache, data_fields, open_view_cache,
)
from ttm_torchdistill.run.data.complete_cache_build import build_view_cache
from ttm_torchdistill.run.data.view_space import ViewSpace

pytestmark = pytest.mark.usefixtures('one_torch_thread')

SHA = 'ab' * 32


def cifar_transform(flip=True):
    ops = [T.RandomCrop(32, padding=4)] + ([T.RandomHorizontalFlip()] if flip else [])
    return T.Compose(ops + [T.ToTensor(), T.Normalize(MEAN, STD)])


def raw_images(n):
    return np.random.default_rng(5).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def make_data(n=4, seed=0, transform=None) -> DeviceDataset:
    return DeviceDataset(raw_images(n), [i % 10 for i in range(n)], translate_transform(transform or cifar_transform()),
                         seed=seed)


def make_teacher(num_classes=10):
    """A small BatchNorm network with non-trivial running statistics (eval mode differs from train mode)."""
    torch.manual_seed(0)
    teacher = support.TinyBNNet(num_classes, width=8)
    with torch.no_grad():
        teacher.bn.running_mean.uniform_(-0.2, 0.2)
        teacher.bn.running_var.uniform_(0.5, 2.0)
    teacher.train()
    return teacher


class CountingTeacher(torch.nn.Module):
    """Wraps a teacher, counting forward calls; raises ``Killed`` on call ``kill_at`` (None: never)."""

    def __init__(self, teacher, kill_at=None):
        super().__init__()
        self.teacher, self.kill_at, self.calls = teacher, kill_at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.kill_at:
            raise KeyboardInterrupt('killed')
        return self.teacher(x)


def test_every_row_is_the_teacher_on_torchvisions_pil_pipeline_for_that_crop_and_flip(tmp_path):
    n = 3
    data, teacher = make_data(n), make_teacher()
    metadata = build_view_cache(teacher, data, str(tmp_path / 'c'), SHA, batch_size=100)  # batches straddle images
    assert teacher.training, 'the teacher\'s mode is restored'
    cache = ViewCache(str(tmp_path / 'c'))
    space = ViewSpace(data.pipeline)
    assert metadata['num_views'] == space.num_views == 162 and metadata['view_index'] == '(top * 9 + left) * 2 + flip'
    transform = cifar_transform()
    teacher.eval()
    for i in range(n):
        params = space.params(torch.arange(162))
        pil = torch.stack([torchvision_reference(raw_images(n)[i], transform, [None if p is None else p[v]
                                                                               for p in params])
                           for v in range(162)])
        with torch.no_grad():
            live = teacher(pil)
        torch.testing.assert_close(torch.from_numpy(np.array(cache.logits[i])), live, rtol=1e-5, atol=1e-5)
        # view (top * 9 + left) * 2 + flip is the crop at (top, left), mirrored when flip
        assert params[0][(3 * 9 + 5) * 2 + 1].tolist() == [3, 5] and bool(params[1][(3 * 9 + 5) * 2 + 1])


@pytest.mark.parametrize('seed', [0, 1])
def test_lookup_equals_the_live_teacher_for_any_seed_and_epoch(tmp_path, seed):
    n = 12
    teacher = make_teacher()
    build_view_cache(teacher, make_data(n, seed=99), str(tmp_path / 'c'), SHA, batch_size=500)
    data = make_data(n, seed=seed)  # the cache was built from a dataset of another seed: seeds do not matter
    lookup = open_view_cache(str(tmp_path / 'c'), SHA, data, 10, 'cpu')
    gathers = []
    original = lookup.cache.rows
    lookup.cache.rows = lambda samples, views: gathers.append(len(samples)) or original(samples, views)
    teacher.eval()
    for epoch in (0, 1, 239, 5000):
        loader = DeviceLoader(data, 5, shuffle=True, rank=1, world_size=2)
        loader.set_epoch(epoch)
        for images, _, supp in loader:
            with torch.no_grad():
                live = teacher(images)
            got = lookup.lookup(epoch, supp['indices'])
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, live, rtol=1e-5, atol=1e-5)
    assert gathers == [n] * 4, 'one gather of N rows per epoch'
    assert lookup.lookup(0, torch.arange(n), dtype=torch.float64).dtype == torch.float64


def test_layout_files_and_float16(tmp_path):
    n = 5
    data, teacher = make_data(n), make_teacher()
    meta32 = build_view_cache(teacher, data, str(tmp_path / 'f32'), SHA, batch_size=64)
    meta16 = build_view_cache(teacher, data, str(tmp_path / 'f16'), SHA, dtype='float16', batch_size=64)
    assert sorted(os.listdir(tmp_path / 'f32')) == [LOGITS_FILE, METADATA_FILE]
    assert json.loads((tmp_path / 'f32' / METADATA_FILE).read_text()) == meta32
    assert {k: v for k, v in meta32.items() if k != 'dtype'} == {k: v for k, v in meta16.items() if k != 'dtype'}
    expected = dict(data_fields(SHA, data), kind='views', format_version=1, num_classes=10, dtype='float32',
                    amp='off', view_index='(top * 9 + left) * 2 + flip')
    assert {k: v for k, v in meta32.items() if k != 'layout'} == expected
    cache32, cache16 = ViewCache(str(tmp_path / 'f32')), ViewCache(str(tmp_path / 'f16'))
    assert cache32.logits.shape == (5, 162, 10) and cache32.logits.dtype == np.float32
    flat = np.load(tmp_path / 'f32' / LOGITS_FILE).reshape(5 * 162, 10)
    samples, views = np.array([4, 0, 2, 2]), np.array([161, 0, 17, 18])
    assert np.array_equal(cache32.rows(samples, views), flat[samples * 162 + views])
    assert np.array_equal(cache32.rows(samples, views), cache32.logits[samples, views])
    assert np.array_equal(cache16.logits, cache32.logits.astype(np.float16))
    size32 = os.path.getsize(tmp_path / 'f32' / LOGITS_FILE)
    size16 = os.path.getsize(tmp_path / 'f16' / LOGITS_FILE)
    assert abs(2 * size16 - size32) <= 256  # the .npy headers (128 bytes each) are all that is not halved
    lookup = EpochViewLogits(cache16, data)
    assert lookup.epoch_logits(0).dtype == torch.float16
    assert torch.equal(lookup.lookup(0, torch.arange(n)),
                       EpochViewLogits(cache32, data).lookup(0, torch.arange(n)).half().float())


def test_amp_is_applied_and_recorded(tmp_path):
    data, teacher = make_data(3), make_teacher()
    metadata = build_view_cache(teacher, data, str(tmp_path / 'c'), SHA, amp='bf16')
    assert metadata['amp'] == 'bf16'
    logits = torch.from_numpy(np.array(ViewCache(str(tmp_path / 'c')).logits))
    assert torch.equal(logits, logits.bfloat16().float()), 'logits of a bf16 autocast forward are bf16 values'
    build_view_cache(teacher, data, str(tmp_path / 'p'), SHA)
    plain = torch.from_numpy(np.array(ViewCache(str(tmp_path / 'p')).logits))
    assert not torch.equal(logits, plain)
    torch.testing.assert_close(logits, plain, rtol=0.05, atol=0.05)


def test_a_killed_build_continues_where_it_stopped(tmp_path):
    """Killed in-process (an exception from the teacher's fourth forward), then resumed: the same file."""
    data, teacher = make_data(4), make_teacher()
    whole = build_view_cache(teacher, data, str(tmp_path / 'whole'), SHA, batch_size=50)
    killed = CountingTeacher(teacher, kill_at=4)
    with pytest.raises(KeyboardInterrupt):
        build_view_cache(killed, data, str(tmp_path / 'c'), SHA, batch_size=50, save_every_s=0)
    assert not os.path.exists(tmp_path / 'c' / METADATA_FILE)
    assert json.loads((tmp_path / 'c' / BUILD_FILE).read_text())['rows_done'] == 150
    with pytest.raises(ValueError, match=r'the build did not finish \(no metadata.json, a build.json\): rerun the '
                                         r'same cache-teacher --views all command to complete it'):
        ViewCache(str(tmp_path / 'c'))
    resumed = CountingTeacher(teacher)
    metadata = build_view_cache(resumed, data, str(tmp_path / 'c'), SHA, batch_size=50, save_every_s=1e9)
    assert resumed.calls == -(-(4 * 162 - 150) // 50), 'only the rows after the last save are computed'
    assert metadata == whole and sorted(os.listdir(tmp_path / 'c')) == [LOGITS_FILE, METADATA_FILE]
    assert np.array_equal(np.load(tmp_path / 'c' / LOGITS_FILE), np.load(tmp_path / 'whole' / LOGITS_FILE))
    again = CountingTeacher(teacher)
    assert build_view_cache(again, data, str(tmp_path / 'c'), SHA) == whole and again.calls == 0, 'nothing to do'


def kill_during_build(out: str, kill_at: int) -> None:
    """Entry point of the subprocess below: a build whose process ends at once on the teacher's forward
    ``kill_at`` (``os._exit``: no exception handling, no clean-up, nothing flushed by Python)."""
    data, teacher = make_data(4), make_teacher()
    calls = []

    def exit_at(module, inputs):
        calls.append(1)
        if len(calls) == kill_at:
            os._exit(3)
    teacher.register_forward_pre_hook(exit_at)
    build_view_cache(teacher, data, out, SHA, batch_size=50, save_every_s=0)


def test_a_build_killed_by_the_system_continues_where_it_stopped(tmp_path):
    out = str(tmp_path / 'c')
    done = subprocess.run([sys.executable, '-c', f'import test_complete_cache as t; t.kill_during_build({out!r}, 5)'],
                          env=support.subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr[-2000:]
    assert json.loads((tmp_path / 'c' / BUILD_FILE).read_text())['rows_done'] == 200
    data, teacher = make_data(4), make_teacher()
    resumed = CountingTeacher(teacher)
    build_view_cache(resumed, data, out, SHA, batch_size=50)
    assert resumed.calls == -(-(4 * 162 - 200) // 50)
    build_view_cache(teacher, data, str(tmp_path / 'whole'), SHA, batch_size=50)
    assert np.array_equal(np.load(tmp_path / 'c' / LOGITS_FILE), np.load(tmp_path / 'whole' / LOGITS_FILE))


def test_folders_that_hold_something_else_are_refused(tmp_path):
    data, teacher = make_data(2), make_teacher()
    build_view_cache(teacher, data, str(tmp_path / 'f16'), SHA, dtype='float16')
    with pytest.raises(ValueError, match=r"f16 already holds a complete teacher cache of another build \(dtype "
                                         r"differs: the cache has 'float16', this build has 'float32'\): remove it "
                                         r"or choose another --out"):
        build_view_cache(teacher, data, str(tmp_path / 'f16'), SHA)
    with pytest.raises(KeyboardInterrupt):
        build_view_cache(CountingTeacher(teacher, kill_at=2), data, str(tmp_path / 'part'), SHA, batch_size=50,
                         save_every_s=0)
    with pytest.raises(ValueError, match=r"part holds an unfinished build of another cache \(teacher_sha256 differs: "
                                         r"the cache has 'abab.*', this build has 'cdcd.*'\): remove it"):
        build_view_cache(teacher, data, str(tmp_path / 'part'), 'cd' * 32)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('x')
    with pytest.raises(ValueError, match=r'other is not empty \(notes.txt\): expected a new or empty folder, or one '
                                         r'holding an unfinished build of this cache'):
        build_view_cache(teacher, data, str(tmp_path / 'other'), SHA)
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ValueError, match=r'file is a file: expected a folder for the cache'):
        build_view_cache(teacher, data, str(tmp_path / 'file'), SHA)
    writer = CacheWriter(str(tmp_path / 'seed'), cache_metadata(SHA, data, 1), len(data), 10)
    writer.write_epoch(0, np.zeros((2, 10), np.float32))
    writer.finish()
    with pytest.raises(ValueError, match=r'seed holds a per-seed teacher cache: expected a new or empty folder'):
        build_view_cache(teacher, data, str(tmp_path / 'seed'), SHA)
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / (METADATA_FILE + '.partial')).write_text('{')  # left by a kill while writing
    build_view_cache(teacher, data, str(tmp_path / 'empty'), SHA)


class Summing(torch.nn.Module):
    """Returns one number per image instead of B x C logits."""

    def forward(self, x):
        return x.sum(dim=(1, 2, 3))


def test_builder_refuses_bad_arguments_and_teachers(tmp_path):
    data, teacher = make_data(2), make_teacher()
    cases = [({'dtype': 'bfloat16'}, r"dtype 'bfloat16' is not supported: expected float32, float16, float64"),
             ({'amp': 'fp8'}, r"amp 'fp8': expected one of off, bf16, fp16"),
             ({'batch_size': 0}, r'batch_size 0: expected a positive int'),
             ({'save_every_s': -1}, r'save_every_s -1: expected seconds >= 0'),
             ({'teacher_sha256': ''}, r'teacher_sha256 is empty')]
    for kwargs, match in cases:
        arguments = {'teacher': teacher, 'data': data, 'out': str(tmp_path / 'c'), 'teacher_sha256': SHA, **kwargs}
        with pytest.raises(ValueError, match=match):
            build_view_cache(**arguments)
    with pytest.raises(ValueError, match=r'the teacher returned \(50,\) for a batch of 50 views: expected 50 x C'):
        build_view_cache(Summing(), data, str(tmp_path / 'd'), SHA, batch_size=50)
    with pytest.raises(KeyboardInterrupt):
        build_view_cache(CountingTeacher(teacher, kill_at=2), data, str(tmp_path / 'e'), SHA, batch_size=50,
                         save_every_s=0)
    with pytest.raises(ValueError, match=r'the teacher returned \(50, 7\) for a batch of 50 views: expected 50 x 10'):
        build_view_cache(make_teacher(7), data, str(tmp_path / 'e'), SHA, batch_size=50)


def test_reader_refuses_damaged_caches_and_bad_lookups(tmp_path):
    data = make_data(2)
    with pytest.raises(ValueError, match=r'no metadata.json: expected a folder written by cache-teacher --views all'):
        ViewCache(str(tmp_path))
    build_view_cache(make_teacher(), data, str(tmp_path / 'c'), SHA)
    cache = ViewCache(str(tmp_path / 'c'))
    with pytest.raises(ValueError, match=r'sample indices must lie in 0..1, got 0..2'):
        cache.rows([0, 2], [0, 0])
    with pytest.raises(ValueError, match=r'view indices must lie in 0..161, got -1..5'):
        cache.rows([0, 1], [5, -1])
    with pytest.raises(ValueError, match=r'expected one view per sample, got samples \(2,\) and views \(1,\)'):
        cache.rows([0, 1], [5])
    with pytest.raises(ValueError, match=r'dataset_size differs: the cache has 2, the run has 3'):
        EpochViewLogits(cache, make_data(3))
    meta_path = tmp_path / 'c' / METADATA_FILE
    metadata = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(metadata, format_version=2)))
    with pytest.raises(ValueError, match=r"kind 'views' format_version 2, this code reads kind 'views' "
                                         r"format_version 1: rebuild the cache"):
        ViewCache(str(tmp_path / 'c'))
    meta_path.write_text(json.dumps(dict(metadata, dtype='float16')))
    with pytest.raises(ValueError, match=r'logits.npy holds float32 \(2, 162, 10\), metadata.json says float16 '
                                         r'\(2, 162, 10\)'):
        ViewCache(str(tmp_path / 'c'))
    meta_path.write_text(json.dumps(metadata))
    os.remove(tmp_path / 'c' / LOGITS_FILE)
    with pytest.raises(ValueError, match=r'logits.npy is missing although metadata.json is there'):
        ViewCache(str(tmp_path / 'c'))


def test_check_names_each_field_that_differs(tmp_path):
    data = make_data(2)
    build_view_cache(make_teacher(), data, str(tmp_path / 'c'), SHA)
    cache = ViewCache(str(tmp_path / 'c'))
    expected = dict(data_fields(SHA, data), num_classes=10)
    cache.check(expected)
    other = {'teacher_sha256': 'cd' * 32, 'dataset_size': 3, 'images_sha256': '0' * 64, 'labels_sha256': '1' * 64,
             'image_shape': [28, 28, 3], 'crop_size': [28, 28], 'padding': [2, 2, 2, 2], 'fill': 1, 'flip': False,
             'normalize': {'mean': [0.5] * 3, 'std': [0.25] * 3},
             'transform_order': ['RandomHorizontalFlip', 'RandomCrop', 'ToTensor', 'Normalize'], 'num_views': 81,
             'num_classes': 100}
    assert sorted(other) == sorted(CHECKED_FIELDS)
    for key, value in other.items():
        with pytest.raises(ValueError, match=rf'teacher cache .*c: {key} differs: the cache has .*, the run has '):
            cache.check(dict(expected, **{key: value}))
    with pytest.raises(ValueError, match=r'padding differs: the cache has \[4, 4, 4, 4\], the run has \[2, 2, 2, 2\]'):
        cache.check(dict(expected, padding=[2, 2, 2, 2], fill=1))  # the first difference in CHECKED_FIELDS order
    with pytest.raises(ValueError, match=r'flip differs: the cache has True, the run has False'):
        cache.check(data_fields(SHA, make_data(2, transform=cifar_transform(flip=False))))
