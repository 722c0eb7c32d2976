"""The complete teacher cache: the teacher's logits on every view of every training image, for any seed and epochs.

The device pipeline's draw for sample ``i`` in any epoch of any seed is one of the image's views
(:mod:`ttm_torchdistill.run.data.view_space`: 162 for CIFAR's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``).
A cache of the logits of all N x V (sample, view) pairs is written once per (teacher, data, transform) by
``cache-teacher --views all`` (:mod:`ttm_torchdistill.run.data.complete_cache_build`) and serves every run of that
teacher on that data, whatever its seed and number of epochs (``--device-data --teacher-cache DIR``).

Layout of a cache folder::

    metadata.json   written last (atomically): its presence marks a complete cache
    logits.npy      N x V x C (float32, float16 or float64), sample-major: the V views of image i are rows
                    i*V .. i*V + V-1 of its N*V x C view, so each (sample, view) pair is one row
    build.json      only while building: the build's identity and how many rows are done (removed at the end)

Reading. A lookup of any set of (sample, view) pairs is one gather of rows ``i * V + v`` from the memory-mapped
file (:meth:`ViewCache.rows`). A run does one such gather per epoch: at the epoch's first step it takes each
sample's view from the crop offsets and flips the device pipeline drew for that epoch
(:meth:`~.device_dataset.DeviceDataset.view_indices`, computed from the CPU draws), gathers those
N rows into an ``N x C`` table on the device, and each step indexes that table with the batch's sample indices,
exactly as with a per-seed cache. So a step reads nothing from the host and the device holds ``N x C`` (CIFAR-100:
10 MB in float16), not the whole ``N x V x C`` file (1.6 GB in float16); the file is read through the operating
system's page cache, ``N`` rows of ``C`` values per epoch; opening it reads the file once from start to end, so
that this cache holds it (rows scattered over a file on disk are far slower to gather than from memory).

Sizes: ``N x V x C`` values; CIFAR-100 (50,000 x 162 x 100) is 1.62 GB in float16, 3.24 GB in float32.

``metadata.json``::

    kind, format_version   'views', FORMAT_VERSION
    teacher_sha256         sha256 of the teacher checkpoint file
    dataset_size           N
    images_sha256          sha256 of the images as uint8 N x H x W x C C-order bytes
    labels_sha256          sha256 of the labels as int64 little-endian bytes
    image_shape, crop_size, padding, fill, flip, normalize, transform_order, num_views
                           ViewSpace.describe() of the training transform (padding is left, top, right, bottom)
    view_index             the view index as a formula of the drawn parameters (for people; not compared)
    num_classes            C
    dtype                  storage dtype: 'float32', 'float16' or 'float64'
    amp                    autocast of the teacher's forward passes: 'off', 'bf16' or 'fp16'
    layout                 how logits.npy is laid out (for people)

Runner API::

    lookup = open_view_cache(path, file_sha256(teacher_ckpt), train_data, num_classes, device)
    logits = lookup.lookup(epoch, supp_dict['indices'])   # B x C on the device, as TeacherCache.lookup
"""
import json
import logging
import os
from typing import Any, Dict, Optional

import numpy as np
import torch

from .per_seed_cache import DTYPES, METADATA_FILE
from .view_space import ViewSpace

logger = logging.getLogger('ttm_torchdistill.run')

KIND = 'views'
FORMAT_VERSION = 1
LOGITS_FILE = 'logits.npy'
BUILD_FILE = 'build.json'
PARTIAL = '.partial'  # suffix of a file being written; a kill may leave one behind, nothing reads it
LAYOUT = 'logits.npy: N x V x C, sample-major; (sample i, view v) is row i * V + v of its N*V x C view'
#: What a run compares with the cache, in this order (the first difference is reported).
CHECKED_FIELDS = ('teacher_sha256', 'dataset_size', 'images_sha256', 'labels_sha256', 'image_shape', 'crop_size',
                  'padding', 'fill', 'flip', 'normalize', 'transform_order', 'num_views', 'num_classes')
#: What identifies a build (a killed build continues only with all of these unchanged).
BUILD_FIELDS = CHECKED_FIELDS[:-1] + ('dtype', 'amp')


def data_fields(teacher_sha256: str, data) -> Dict[str, Any]:
    """The fields of :data:`CHECKED_FIELDS` that come from the teacher checkpoint and the training data.

    :param teacher_sha256: sha256 of the teacher checkpoint file.
    :param data: the training split's :class:`~.device_dataset.DeviceDataset`.
    :raises ValueError: a transform whose views cannot be enumerated.
    """
    images_sha256, labels_sha256 = data.checksums()
    fields = {'teacher_sha256': teacher_sha256, 'dataset_size': len(data), 'images_sha256': images_sha256,
              'labels_sha256': labels_sha256}
    fields.update(ViewSpace(data.pipeline).describe())
    return fields


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f'teacher cache dtype {dtype!r} is not supported: expected {", ".join(DTYPES)}')
    return dtype


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 300 else text[:297] + '...'


def first_difference(have: Dict[str, Any], want: Dict[str, Any], keys, wanted_by: str = 'the run') -> Optional[str]:
    """``'KEY differs: the cache has X, the run has Y'`` for the first of ``keys`` in ``want`` that differs."""
    for key in keys:
        if key in want and have.get(key) != want[key]:
            return f'{key} differs: the cache has {_short(have.get(key))}, {wanted_by} has {_short(want[key])}'
    return None


def write_json(path: str, value: Dict[str, Any]) -> None:
    """Write ``value`` to ``path`` atomically (readers see the old file or the whole new one).

    Through ``PATH.partial`` and a rename, with the umask's permissions (a cache is meant to be read by others).
    """
    partial = path + PARTIAL
    with open(partial, 'w') as fp:
        json.dump(value, fp, indent=1, sort_keys=True)
        fp.flush()
        os.fsync(fp.fileno())
    os.replace(partial, path)


def read_json(path: str) -> Dict[str, Any]:
    with open(path) as fp:
        return json.load(fp)


def is_view_cache(path: str) -> bool:
    """Whether ``path`` holds a complete cache or an unfinished build of one (rather than a per-seed cache)."""
    meta = os.path.join(path, METADATA_FILE)
    if os.path.isfile(meta):
        try:
            return read_json(meta).get('kind') == KIND
        except (OSError, ValueError):
            return False
    return os.path.isfile(os.path.join(path, BUILD_FILE))


def _read_through(path: str, chunk: int = 1 << 24) -> None:
    """Read a file from start to end into one reused buffer (the bytes are dropped; the page cache keeps them)."""
    buffer = memoryview(bytearray(chunk))
    with open(path, 'rb', buffering=0) as fp:
        while fp.readinto(buffer):
            pass


class ViewCache:
    """A complete cache folder, opened for reading (the logits file memory-mapped, nothing loaded).

    :param path: the cache folder.
    :param read_through: read the whole logits file once, sequentially, so that the operating system's page cache
        holds it. Each epoch gathers one row per image, scattered over the file: measured on a 2-core VM, ~1-2 s
        per CIFAR-100 epoch from disk and ~10-30 ms from memory, while the sequential read takes 1-3 s once
        (BENCHMARKS.md). A ``posix_fadvise(WILLNEED)`` hint did not fill the cache reliably there.
    :raises ValueError: an unfinished build, another kind or format version, or a logits file that disagrees with
        ``metadata.json``.
    """

    def __init__(self, path: str, read_through: bool = True):
        self.path = str(path)
        meta_path = os.path.join(self.path, METADATA_FILE)
        if not os.path.isfile(meta_path):
            if os.path.isfile(os.path.join(self.path, BUILD_FILE)):
                raise ValueError(f'teacher cache {self.path}: the build did not finish (no {METADATA_FILE}, a '
                                 f'{BUILD_FILE}): rerun the same cache-teacher --views all command to complete it')
            raise ValueError(f'teacher cache {self.path}: no {METADATA_FILE}: expected a folder written by '
                             f'cache-teacher --views all')
        self.metadata: Dict[str, Any] = read_json(meta_path)
        kind, version = self.metadata.get('kind'), self.metadata.get('format_version')
        if kind != KIND or version != FORMAT_VERSION:
            raise ValueError(f'teacher cache {self.path}: kind {kind!r} format_version {version!r}, this code reads '
                             f'kind {KIND!r} format_version {FORMAT_VERSION}: rebuild the cache')
        self.num_samples = int(self.metadata['dataset_size'])
        self.num_views = int(self.metadata['num_views'])
        self.num_classes = int(self.metadata['num_classes'])
        self.dtype_name = check_dtype(self.metadata['dtype'])
        logits_path = os.path.join(self.path, LOGITS_FILE)
        if not os.path.isfile(logits_path):
            raise ValueError(f'teacher cache {self.path}: {LOGITS_FILE} is missing although {METADATA_FILE} is there')
        array = np.load(logits_path, mmap_mode='r')
        shape = (self.num_samples, self.num_views, self.num_classes)
        if array.shape != shape or array.dtype != DTYPES[self.dtype_name][1]:
            raise ValueError(f'teacher cache {self.path}: {LOGITS_FILE} holds {array.dtype} {array.shape}, '
                             f'{METADATA_FILE} says {self.dtype_name} {shape}')
        self.logits = array
        self._flat = array.reshape(self.num_samples * self.num_views, self.num_classes)
        if read_through:
            _read_through(logits_path)

    def check(self, expected: Dict[str, Any]) -> None:
        """Raise ValueError naming the first field of :data:`CHECKED_FIELDS` where the cache differs from
        ``expected`` (fields absent from ``expected`` are not compared)."""
        difference = first_difference(self.metadata, expected, CHECKED_FIELDS)
        if difference is not None:
            raise ValueError(f'teacher cache {self.path}: {difference}')

    def rows(self, samples, views) -> np.ndarray:
        """The logits of the (sample, view) pairs: one gather of rows ``samples * V + views`` from the file.

        :param samples: ``(B,)`` sample indices (array or CPU tensor).
        :param views: ``(B,)`` view indices, one per sample.
        :return: ``B x C`` array of the stored dtype (a copy).
        """
        samples = np.asarray(samples, dtype=np.int64)
        views = np.asarray(views, dtype=np.int64)
        if samples.shape != views.shape or samples.ndim != 1:
            raise ValueError(f'teacher cache {self.path}: expected one view per sample, got samples '
                             f'{samples.shape} and views {views.shape}')
        for name, values, count in (('sample', samples, self.num_samples), ('view', views, self.num_views)):
            if values.size and (values.min() < 0 or values.max() >= count):
                raise ValueError(f'teacher cache {self.path}: {name} indices must lie in 0..{count - 1}, got '
                                 f'{values.min()}..{values.max()}')
        return self._flat[samples * self.num_views + views]


class EpochViewLogits:
    """A run's reader of a :class:`ViewCache`: stands where a per-seed ``TeacherCache`` stands (``lookup``).

    :param cache: the opened cache, checked against the run.
    :param data: the run's training :class:`~.device_dataset.DeviceDataset` (its draws say which
        view each sample gets in each epoch).
    :param device: where the epoch's ``N x C`` table and the looked-up logits live.
    """

    def __init__(self, cache: ViewCache, data, device='cpu'):
        if len(data) != cache.num_samples:
            raise ValueError(f'teacher cache {cache.path}: dataset_size differs: the cache has {cache.num_samples}, '
                             f'the run has {len(data)}')
        self.cache, self.data, self.device = cache, data, torch.device(device)
        self._current: Optional[tuple] = None

    def epoch_logits(self, epoch: int) -> torch.Tensor:
        """Row ``i``: the logits of sample ``i`` at the view drawn for it in ``epoch`` (``N x C``, stored dtype,
        on the device); one gather from the file per epoch."""
        if self._current is None or self._current[0] != epoch:
            self._current = None  # release the previous epoch's table first
            views = self.data.view_indices(epoch).numpy()
            table = self.cache.rows(np.arange(self.cache.num_samples), views)
            self._current = (epoch, torch.from_numpy(table).to(self.device))
        return self._current[1]

    def lookup(self, epoch: int, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Teacher logits of samples ``indices`` (``supp_dict['indices']``) at their views of ``epoch``.

        :return: ``B x C`` tensor of ``dtype`` on the device.
        """
        table = self.epoch_logits(epoch)
        return table[torch.as_tensor(indices, dtype=torch.long).to(self.device)].to(dtype)


def open_view_cache(path: str, teacher_sha256: str, data, num_classes: Optional[int], device) -> EpochViewLogits:
    """Open the complete cache at ``path`` for a run and check it against the run's teacher, data and transform.

    :param teacher_sha256: sha256 of the run's teacher checkpoint file.
    :param data: the run's training DeviceDataset.
    :param num_classes: the run's class count (None: not compared).
    :raises ValueError: one line naming the first field that differs, or what is wrong with the folder.
    """
    cache = ViewCache(path)
    expected = data_fields(teacher_sha256, data)
    if num_classes is not None:
        expected['num_classes'] = int(num_classes)
    cache.check(expected)
    meta = cache.metadata
    logger.info(f'Teacher cache {path}: complete, {cache.num_views} views of each of {cache.num_samples} images, '
                f'{cache.dtype_name}, teacher forward with amp {meta.get("amp")}; serves any seed and epoch count')
    return EpochViewLogits(cache, data, device)
