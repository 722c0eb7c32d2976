"""Teacher-logit cache: per-epoch teacher logits for every sample index, on disk, with what they depend on.

Layout of a cache folder::

    metadata.json              written last (atomically): a folder without it is an unfinished build
    logits_epoch0000.npy       float32 (or float16) N x C: the teacher's logits of every sample of epoch 0
    logits_epoch0001.npy       ...

One ``.npy`` per epoch, so neither building nor reading ever holds more than one epoch in memory: a reader
memory-maps an epoch file and copies that one epoch (``N x C``) to the device when training reaches it.
Sizes: CIFAR-100 (N = 50,000, C = 100) is 20 MB per epoch in float32, 4.8 GB for 240 epochs; float16 halves
that (2.4 GB) at ~3 significant digits (relative error <= 2**-11 in the normal range), which is below what a
softmax at temperature >= 1 resolves in a KD loss but is not bit-identical to the live teacher.

Epoch ``e`` of the cache holds the teacher's logits on the augmented images that
:meth:`ttm_torchdistill.run.data.device_dataset.DeviceDataset.augment` produces for epoch ``e`` (0-indexed, the epoch
passed to ``DeviceLoader.set_epoch``); those depend only on (seed, epoch, sample index), so the cache serves any
batch size, world size and order.

``metadata.json``::

    format_version   int (FORMAT_VERSION)
    teacher_sha256   sha256 of the teacher checkpoint file (:func:`file_sha256`)
    dataset_size     N
    images_sha256    sha256 of the images as uint8 N x H x W x C C-order bytes
    labels_sha256    sha256 of the labels as int64 little-endian bytes
    transform        DeviceDataset.describe(): augmentation stream name, image shape, translated ops
    seed             run seed of the augmentation stream
    epochs           number of epochs held (0 .. epochs-1)
    num_classes      C
    dtype            'float32' or 'float16'

Runner API::

    expected = cache_metadata(file_sha256(teacher_ckpt), data, epochs=num_epochs)
    build_teacher_cache(teacher, data, num_epochs, out_dir, expected, dtype=torch.float16)   # once
    cache = TeacherCache(out_dir, device=device)
    cache.check(expected)                               # ValueError naming the first mismatch
    logits = cache.lookup(epoch, supp_dict['indices'])  # B x C float32 on the device
"""
import hashlib
import json
import logging
import os
import time
from typing import Any, Dict, Optional

import numpy as np
import torch

logger = logging.getLogger('ttm_torchdistill.run')

FORMAT_VERSION = 1
METADATA_FILE = 'metadata.json'
# float64 serves exact-trajectory checks (a float64 run with the cache against the same run with the live teacher)
DTYPES = {'float32': (torch.float32, np.float32), 'float16': (torch.float16, np.float16),
          'float64': (torch.float64, np.float64)}
#: Order in which :meth:`TeacherCache.check` compares fields (the first mismatch is reported).
CHECKED_FIELDS = ('format_version', 'teacher_sha256', 'dataset_size', 'images_sha256', 'labels_sha256',
                  'transform', 'seed', 'num_classes', 'dtype')


def epoch_file(epoch: int) -> str:
    """File name of epoch ``epoch``'s logits inside a cache folder."""
    return f'logits_epoch{epoch:04d}.npy'


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as fp:
        for block in iter(lambda: fp.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def _dtype_name(dtype) -> str:
    for name, (torch_dtype, np_dtype) in DTYPES.items():
        if dtype in (name, torch_dtype, np_dtype) or (isinstance(dtype, np.dtype) and dtype == np_dtype):
            return name
    raise ValueError(f'teacher cache dtype {dtype!r} is not supported: expected float32, float16 or float64')


def cache_metadata(teacher_sha256: str, data, epochs: int, dtype='float32',
                   num_classes: Optional[int] = None) -> Dict[str, Any]:
    """The metadata a run expects of its cache (and a build writes), from the run's own objects.

    :param teacher_sha256: :func:`file_sha256` of the teacher checkpoint.
    :param data: the :class:`~ttm_torchdistill.run.data.device_dataset.DeviceDataset` of the training split.
    :param epochs: epochs the run trains (a cache may hold more).
    :param dtype: storage dtype (``'float32'``/``'float16'`` or the torch dtype).
    :param num_classes: C, if known (the build fills it from the teacher's output).
    """
    images_sha256, labels_sha256 = data.checksums()
    metadata = {'format_version': FORMAT_VERSION, 'teacher_sha256': teacher_sha256, 'dataset_size': len(data),
                'images_sha256': images_sha256, 'labels_sha256': labels_sha256, 'transform': data.describe(),
                'seed': data.seed, 'epochs': int(epochs), 'dtype': _dtype_name(dtype)}
    if num_classes is not None:
        metadata['num_classes'] = int(num_classes)
    return metadata


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 300 else text[:297] + '...'


class TeacherCache:
    """A finished cache folder, opened for lookups.

    :param path: the cache folder.
    :param device: where :meth:`lookup` returns logits (one epoch, ``N x C``, is kept there at a time).
    :raises ValueError: no ``metadata.json`` (unfinished build or not a cache), another format version, or a
        missing epoch file.
    """

    def __init__(self, path: str, device='cpu'):
        self.path = str(path)
        self.device = torch.device(device)
        meta_path = os.path.join(self.path, METADATA_FILE)
        if not os.path.isfile(meta_path):
            raise ValueError(f'teacher cache {self.path}: no {METADATA_FILE} (not a cache, or its build did not '
                             f'finish): expected a folder written by build_teacher_cache')
        with open(meta_path) as fp:
            self.metadata: Dict[str, Any] = json.load(fp)
        version = self.metadata.get('format_version')
        if version != FORMAT_VERSION:
            raise ValueError(f'teacher cache {self.path}: format_version {version!r}, this code reads '
                             f'{FORMAT_VERSION}: rebuild the cache')
        self.epochs = int(self.metadata['epochs'])
        self.num_samples = int(self.metadata['dataset_size'])
        self.num_classes = int(self.metadata['num_classes'])
        self.dtype_name = _dtype_name(self.metadata['dtype'])
        for epoch in range(self.epochs):
            if not os.path.isfile(os.path.join(self.path, epoch_file(epoch))):
                raise ValueError(f'teacher cache {self.path}: {epoch_file(epoch)} is missing although '
                                 f'{METADATA_FILE} records {self.epochs} epochs')
        self._current: Optional[tuple] = None

    def check(self, expected: Dict[str, Any]) -> None:
        """Raise ValueError naming the first field where the cache differs from what the run expects.

        Compares :data:`CHECKED_FIELDS` present in ``expected`` (in that order), then ``epochs``: the cache must
        hold at least the run's epochs.
        """
        for key in CHECKED_FIELDS:
            if key not in expected:
                continue
            if key not in self.metadata:
                raise ValueError(f'teacher cache {self.path}: the cache records no {key}; the run has '
                                 f'{_short(expected[key])}')
            cached, wanted = self.metadata[key], expected[key]
            if key == 'dtype':
                cached, wanted = _dtype_name(cached), _dtype_name(wanted)
            if cached != wanted:
                raise ValueError(f'teacher cache {self.path}: {key} differs: the cache has {_short(cached)}, '
                                 f'the run has {_short(wanted)}')
        if 'epochs' in expected and self.epochs < int(expected['epochs']):
            raise ValueError(f'teacher cache {self.path}: the cache has fewer epochs than the run: the cache has '
                             f'{self.epochs}, the run has {int(expected["epochs"])}')

    def epoch_array(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s logits as a read-only memory map, ``N x C`` of the stored dtype."""
        if not 0 <= epoch < self.epochs:
            raise ValueError(f'teacher cache {self.path}: epoch {epoch} requested, the cache holds epochs '
                             f'0..{self.epochs - 1}')
        array = np.load(os.path.join(self.path, epoch_file(epoch)), mmap_mode='r')
        expected = (self.num_samples, self.num_classes)
        if array.shape != expected or array.dtype != DTYPES[self.dtype_name][1]:
            raise ValueError(f'teacher cache {self.path}: {epoch_file(epoch)} holds {array.dtype} {array.shape}, '
                             f'{METADATA_FILE} says {self.dtype_name} {expected}')
        return array

    def epoch_logits(self, epoch: int) -> torch.Tensor:
        """Epoch ``epoch``'s logits, ``N x C`` of the stored dtype, on the device (loaded once per epoch)."""
        if self._current is None or self._current[0] != epoch:
            self._current = None  # release the previous epoch before loading the next one
            array = np.array(self.epoch_array(epoch))  # one read of the file into a writable host copy
            self._current = (epoch, torch.from_numpy(array).to(self.device))
        return self._current[1]

    def lookup(self, epoch: int, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Teacher logits of samples ``indices`` in ``epoch``.

        :param indices: LongTensor ``(B,)`` of dataset indices (``supp_dict['indices']``), any device.
        :return: ``B x C`` tensor of ``dtype`` on the cache's device.
        """
        logits = self.epoch_logits(epoch)
        return logits[torch.as_tensor(indices, dtype=torch.long).to(self.device)].to(dtype)


class CacheWriter:
    """Writes a cache folder epoch by epoch; :meth:`finish` writes ``metadata.json`` last.

    :param out: the cache folder (created; files of an earlier cache there are overwritten).
    :param metadata: the fields of ``metadata.json`` except ``epochs`` and ``num_classes``, which the writer
        records from what it is given.
    :param num_samples: N.
    :param num_classes: C.
    :param dtype: ``'float32'`` or ``'float16'`` (or the torch/numpy dtype).
    """

    def __init__(self, out: str, metadata: Dict[str, Any], num_samples: int, num_classes: int, dtype='float32'):
        self.out = str(out)
        self.dtype_name = _dtype_name(dtype)
        self.num_samples, self.num_classes = int(num_samples), int(num_classes)
        self.metadata = dict(metadata)
        self.epochs_written = 0
        os.makedirs(self.out, exist_ok=True)
        stale = os.path.join(self.out, METADATA_FILE)
        if os.path.exists(stale):
            os.remove(stale)  # the folder is not a valid cache until this build finishes

    def open_epoch(self, epoch: int) -> np.memmap:
        """A writable ``N x C`` memory map for epoch ``epoch`` (must be the next epoch); call :meth:`close_epoch`."""
        if epoch != self.epochs_written:
            raise ValueError(f'teacher cache {self.out}: epoch {epoch} written out of order: expected epoch '
                             f'{self.epochs_written}')
        partial = os.path.join(self.out, epoch_file(epoch) + '.partial')
        return np.lib.format.open_memmap(partial, mode='w+', dtype=DTYPES[self.dtype_name][1],
                                         shape=(self.num_samples, self.num_classes))

    def close_epoch(self, epoch: int, array: np.memmap) -> None:
        """Flush and move epoch ``epoch``'s file into place."""
        array.flush()
        del array
        final = os.path.join(self.out, epoch_file(epoch))
        os.replace(final + '.partial', final)
        self.epochs_written = epoch + 1

    def write_epoch(self, epoch: int, logits) -> None:
        """Write a whole epoch at once: ``logits`` is ``N x C`` (tensor or array; cast to the storage dtype)."""
        logits = logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
        if logits.shape != (self.num_samples, self.num_classes):
            raise ValueError(f'teacher cache {self.out}: epoch {epoch} logits have shape {logits.shape}, expected '
                             f'{(self.num_samples, self.num_classes)}')
        array = self.open_epoch(epoch)
        array[:] = logits
        self.close_epoch(epoch, array)

    def finish(self) -> Dict[str, Any]:
        """Write ``metadata.json`` (atomically) and return it."""
        metadata = dict(self.metadata, format_version=FORMAT_VERSION, epochs=self.epochs_written,
                        num_classes=self.num_classes, dataset_size=self.num_samples, dtype=self.dtype_name)
        path = os.path.join(self.out, METADATA_FILE)
        with open(path + '.partial', 'w') as fp:
            json.dump(metadata, fp, indent=1, sort_keys=True)
        os.replace(path + '.partial', path)
        return metadata


@torch.no_grad()
def build_teacher_cache(teacher: torch.nn.Module, loader_like, epochs: int, out: str, metadata: Dict[str, Any],
                        dtype='float32', device=None, batch_size: int = 500) -> Dict[str, Any]:
    """Run ``teacher`` over each epoch's augmentation stream and write the cache.

    The teacher runs in eval mode under ``torch.no_grad`` (its train/eval mode is restored afterwards) on the
    images of :meth:`DeviceDataset.augment` for epochs ``0 .. epochs-1``, in sequential index order.

    :param teacher: the teacher, already on ``device``.
    :param loader_like: a :class:`~ttm_torchdistill.run.data.device_dataset.DeviceDataset` or a ``DeviceLoader`` (its
        ``dataset`` is used; its order and batch size are not: the stream is per sample index).
    :param epochs: epochs to cache.
    :param out: the cache folder.
    :param metadata: at least ``teacher_sha256``; fields derived from the data (:func:`cache_metadata`) are
        filled in, and if given must agree with the data.
    :param dtype: storage dtype, ``'float32'`` or ``'float16'``.
    :param device: where the teacher runs (default: the dataset's device).
    :param batch_size: images per teacher forward (does not change the logits beyond float rounding).
    :return: the metadata written.
    :raises ValueError: ``metadata`` disagreeing with the data, or no ``teacher_sha256``.
    """
    data = getattr(loader_like, 'dataset', loader_like)
    if not hasattr(data, 'augment'):
        raise ValueError(f'build_teacher_cache needs a DeviceDataset or DeviceLoader, got {type(loader_like).__name__}')
    if not metadata.get('teacher_sha256'):
        raise ValueError('build_teacher_cache: metadata has no teacher_sha256: expected file_sha256(teacher ckpt)')
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f'build_teacher_cache: epochs={epochs!r}: expected a positive int')
    derived = cache_metadata(metadata['teacher_sha256'], data, epochs, dtype)
    for key, value in metadata.items():
        if key in derived and key not in ('epochs', 'dtype') and derived[key] != value:
            raise ValueError(f'build_teacher_cache: metadata {key} is {_short(value)} but the data has '
                             f'{_short(derived[key])}')
    device = torch.device(device) if device is not None else data.device
    n = len(data)
    was_training = teacher.training
    teacher.eval()
    writer = None
    start = time.time()
    try:
        for epoch in range(epochs):
            epoch_start = time.time()
            array = None
            for begin in range(0, n, batch_size):
                indices = torch.arange(begin, min(begin + batch_size, n), device=data.device)
                logits = teacher(data.augment(epoch, indices).to(device))
                if logits.dim() != 2 or logits.shape[0] != indices.numel():
                    raise ValueError(f'build_teacher_cache: the teacher returned {tuple(logits.shape)} for a batch of '
                                     f'{indices.numel()}: expected B x C logits')
                if writer is None:
                    writer = CacheWriter(out, derived, n, logits.shape[1], dtype)
                if array is None:
                    array = writer.open_epoch(epoch)
                # numpy casts to the storage dtype
                array[begin:begin + indices.numel()] = logits.detach().to('cpu', torch.float64).numpy()
            writer.close_epoch(epoch, array)
            elapsed = time.time() - start
            logger.info(f'teacher cache: epoch {epoch + 1}/{epochs} written ({n / (time.time() - epoch_start):.0f} '
                        f'img/s, ETA {elapsed / (epoch + 1) * (epochs - epoch - 1):.0f} s) to {out}')
    finally:
        teacher.train(was_training)
    return writer.finish()
