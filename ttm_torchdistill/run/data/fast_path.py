"""Wire the device data path and the teacher cache into a run (``runtime.device_data``, ``runtime.teacher_cache``).

:class:`DeviceData` builds one :class:`~.device_dataset.DeviceDataset` per dataset id (validation
and test usually share one) and swaps a box's data loaders for
:class:`~ttm_torchdistill.run.data.device_loader.DeviceLoader` s with the same batch size, order and sharding.
A ``torch.utils.data.Subset`` (a part of ``--holdout``'s split, :func:`ttm_torchdistill.datasets.holdout_split`) is
held as the whole dataset it selects from, with that dataset's transform (the part's), and its loaders draw the
subset's indices only: a sample keeps its index in the whole training set, so its augmentation stream and its rows in
a teacher cache are those of a run without a held-out split, and one cache serves both.
:class:`CachedTeacher` stands in for the teacher inside the box: it returns the cached logits of the batch's sample
indices for the current epoch, so the teacher network is never run while training.
"""
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from ...errors import RunError, one_line
from ..config.walk import student_num_classes, teacher_entry
from ..machine.context import DistContext
from ..models.weights import is_remote
from .device_dataset import DeviceDataset
from .device_loader import DeviceLoader
from .teacher_cache import TeacherCache, cache_metadata, file_sha256
from .view_cache import is_view_cache, open_view_cache

logger = logging.getLogger('ttm_torchdistill.run')


def subset_source(dataset: Any) -> Tuple[Any, Optional[List[int]]]:
    """``(the dataset a Subset selects from, the indices it selects)`` (nested Subsets composed), or
    ``(dataset, None)`` for a dataset that is not a Subset."""
    indices = None
    while isinstance(dataset, Subset):
        indices = [int(i) for i in dataset.indices] if indices is None else [int(dataset.indices[i]) for i in indices]
        dataset = dataset.dataset
    return dataset, indices


class DeviceData:
    """Device-resident datasets of a run and the loaders over them.

    :param datasets: the run's datasets (id -> torchvision dataset).
    :param ctx: device and distribution of the run.
    :param seed: the run seed, the same on every rank (:mod:`ttm_torchdistill.run.machine.seeding`).
    :param memory_format: of the image batches (channels-last with ``runtime.channels_last``).
    """

    def __init__(self, datasets: Dict[str, Any], ctx: DistContext, seed: int,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.datasets, self.ctx, self.seed, self.memory_format = datasets, ctx, seed, memory_format
        self._device_datasets: Dict[str, DeviceDataset] = dict()
        self._subsets: Dict[str, Optional[List[int]]] = dict()
        self._device_images: List[Tuple[np.ndarray, torch.Tensor]] = []  # (host images, their device copy)

    def dataset(self, dataset_id: str, where: str) -> DeviceDataset:
        """The device copy of ``dataset_id`` (made once); of the whole dataset a ``Subset`` selects from."""
        if dataset_id not in self._device_datasets:
            source, subset = subset_source(self.datasets[dataset_id])
            try:
                built = DeviceDataset.from_torchvision(
                    source, device=self.ctx.device, seed=self.seed, dtype=torch.get_default_dtype(),
                    memory_format=self.memory_format, device_images=self._shared_images(source))
            except ValueError as exc:
                raise RunError(f'runtime.device_data: dataset {dataset_id!r} ({where}): {one_line(exc, None)}') \
                    from None
            self._device_datasets[dataset_id], self._subsets[dataset_id] = built, subset
            self._device_images.append((source.data, built.images))
        return self._device_datasets[dataset_id]

    def _shared_images(self, source: Any) -> Optional[torch.Tensor]:
        """The device copy of ``source.data`` an earlier dataset of the run holds, if its images are the same: the
        parts of a held-out split are copies of one training set (each with its own transform), held once."""
        data = getattr(source, 'data', None)
        if not isinstance(data, np.ndarray):
            return None  # from_torchvision refuses it
        for host, device_images in self._device_images:
            if host is data or (host.shape == data.shape and np.array_equal(host, data)):
                return device_images
        return None

    def subset(self, dataset_id: str) -> Optional[List[int]]:
        """The indices ``dataset_id`` selects of :meth:`dataset` (None: all of them)."""
        return self._subsets.get(dataset_id)

    def loader(self, loader_config: Dict[str, Any], where: str) -> DeviceLoader:
        """A device loader with the semantics of ``loader_config`` (batch size, drop_last, order, sharding)."""
        data = self.dataset(loader_config['dataset_id'], where)
        try:
            return DeviceLoader.from_config(data, loader_config, seed=self.seed, distributed=self.ctx.distributed,
                                            rank=self.ctx.rank, world_size=self.ctx.world_size,
                                            subset=self.subset(loader_config['dataset_id']))
        except ValueError as exc:
            raise RunError(f'runtime.device_data: {where}: {one_line(exc, None)}') from None

    def install(self, box, stage_config: Dict[str, Any], where: str) -> None:
        """Replace the box's train and validation loaders (after a stage change too) with device loaders."""
        if not isinstance(box.train_data_loader, DeviceLoader):
            box.train_data_loader = self.loader(stage_config['train_data_loader'], f'{where}.train_data_loader')
        if box.val_data_loader is not None and not isinstance(box.val_data_loader, DeviceLoader):
            box.val_data_loader = self.loader(stage_config['val_data_loader'], f'{where}.val_data_loader')

    def set_epoch(self, box, epoch: int) -> None:
        """Start epoch ``epoch`` (0-indexed) of the box's training loader (also right after ``--resume``)."""
        box.train_data_loader.set_epoch(epoch)

    @staticmethod
    def order_seed(box) -> int:
        """The seed of the training order (epoch ``e`` draws ``randperm`` seeded with it plus ``e``)."""
        return box.train_data_loader.order_seed


class CachedTeacher(nn.Module):
    """The teacher's logits read from a cache: ``forward(images)`` returns those of the selected batch.

    The runner calls :meth:`select` with the epoch and the batch's sample indices before each step.
    """

    def __init__(self, cache: TeacherCache):
        super().__init__()
        self.cache = cache
        self.epoch: Optional[int] = None
        self.indices: Optional[torch.Tensor] = None

    def select(self, epoch: int, indices: torch.Tensor) -> None:
        self.epoch, self.indices = epoch, indices

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.indices is None or self.indices.shape[0] != images.shape[0]:
            raise RuntimeError('CachedTeacher: no batch selected for these images (the runner selects the indices '
                               'of every batch before the step)')
        # the dtype a live teacher would return (float32, or float64 under torch.set_default_dtype)
        return self.cache.lookup(self.epoch, self.indices, dtype=torch.get_default_dtype())


def open_teacher_cache(path: str, config: Dict[str, Any], train_data: DeviceDataset, num_epochs: int,
                       ctx: DistContext, seed_drawn: bool = False):
    """Open the cache at ``path`` and check that it was made for this run (teacher, data, transforms, seed, epochs).

    A complete cache (``cache-teacher --views all``) is checked for teacher, data, transform and class count only:
    it serves any seed and number of epochs.

    :param seed_drawn: the run drew its seed (no ``--seed``): a seed mismatch then says which ``--seed`` to add.
    :raises RunError: a cache that does not match, naming the first difference.
    """
    teacher = teacher_entry(config)
    src_ckpt = (teacher or dict()).get('src_ckpt')
    if not isinstance(src_ckpt, str) or not src_ckpt or is_remote(src_ckpt):
        raise RunError('runtime.teacher_cache: models.teacher_model.src_ckpt must be a local file (the cache records '
                       f'its sha256), got {src_ckpt!r}')
    try:
        if is_view_cache(path):
            return open_view_cache(path, file_sha256(src_ckpt), train_data, student_num_classes(config), ctx.device)
        cache = TeacherCache(path, device=ctx.device)
        expected = cache_metadata(file_sha256(src_ckpt), train_data, num_epochs)
        expected.pop('dtype')  # float16 and float32 caches both serve a run
        cache.check(expected)
    except (ValueError, OSError) as exc:
        hint = ''
        if seed_drawn and 'seed differs' in str(exc):
            hint = (f'; no --seed was given, so the run drew seed {train_data.seed}: add --seed '
                    f'{cache.metadata["seed"]} to use this cache')
        raise RunError(f'runtime.teacher_cache: {one_line(exc, None)}{hint}') from None
    return cache
