"""Wire the device data path and the teacher cache into a run (``runtime.device_data``, ``runtime.teacher_cache``).

:class:`DeviceData` builds one :class:`~.device_dataset.DeviceDataset` per dataset id (validation
and test usually share one) and swaps a box's data loaders for
:class:`~ttm_torchdistill.run.data.device_loader.DeviceLoader` s with the same batch size, order and sharding; a
loader whose dataset is wrapped in ``TwoViewDataset`` (MLKD) also yields the strong view, translated from the
wrapper's ``strong_transform`` (:class:`~.device_dataset.DeviceView`).
A ``torch.utils.data.Subset`` (a part of ``--holdout``'s split, :func:`ttm_torchdistill.datasets.holdout_split`) is
held as the whole dataset it selects from, with that dataset's transform (the part's), and its loaders draw the
subset's indices only: a sample keeps its index in the whole training set, so its augmentation stream and its rows in
a teacher cache are those of a run without a held-out split, and one cache serves both.
:class:`CachedTeacher` stands in for the teacher inside the box: it returns the cached logits of the batch's sample
indices for the current epoch, so the teacher network is never run while training. With two views (a teacher
wrapped in ``TwoViewModel``) the cache serves the weak view, whose views it holds, and the teacher runs on the strong
view, which no cache can hold (its augmentation has no listable views).
"""
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from ...errors import RunError, one_line
from ...views.two_view import TWO_VIEW_DATASET, TWO_VIEW_MODEL
from ..config.walk import ConfigParts, iter_train_stage_configs, student_num_classes, teacher_entry
from ..machine.context import DistContext
from ..model_loading.weights import is_remote
from .device_dataset import DeviceDataset, DeviceView
from .device_loader import DeviceLoader
from .device_transforms import translate_transform
from .per_seed_cache import TeacherCache, cache_metadata, file_sha256
from .complete_cache import is_view_cache, open_view_cache

logger = logging.getLogger('ttm_torchdistill.run')


def subset_source(dataset: Any) -> Tuple[Any, Optional[List[int]]]:
    """``(the dataset a Subset selects from, the indices it selects)`` (nested Subsets composed), or
    ``(dataset, None)`` for a dataset that is not a Subset."""
    indices = None
    while isinstance(dataset, Subset):
        indices = [int(i) for i in dataset.indices] if indices is None else [int(dataset.indices[i]) for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def check_device_views(parts: ConfigParts) -> None:
    """The device data path makes each image's views from the config's transforms: a loader that adds MLKD's strong
    view (``TwoViewDataset``) must have a ``strong_transform`` it translates (crop, flip, ``StrongAugment``,
    ``ToTensor``, ``Normalize``), checked before anything is built (this covers the teacher cache, which needs the
    device data path, and ``cache-teacher``). The weak view is the dataset's transform, checked when it is built."""
    for where, loader_config in parts.loaders:
        wrapper = loader_config.get('dataset_wrapper')
        if not (isinstance(wrapper, dict) and wrapper.get('key') == TWO_VIEW_DATASET):
            continue
        try:  # the device data path holds CIFAR images only (check_device_data_datasets): 32 x 32 RGB
            translate_transform((wrapper.get('kwargs') or dict()).get('strong_transform'), image_shape=(32, 32, 3))
        except ValueError as exc:
            raise RunError(f'runtime.device_data: {where}.dataset_wrapper.kwargs.strong_transform: '
                           f'{one_line(exc, None)}; run this config without --device-data and --teacher-cache') \
                from None


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
        """A device loader with the semantics of ``loader_config`` (batch size, drop_last, order, sharding; the
        strong view too when the dataset is wrapped in ``TwoViewDataset``)."""
        data = self.dataset(loader_config['dataset_id'], where)
        try:
            return DeviceLoader.from_config(data, loader_config, seed=self.seed, distributed=self.ctx.distributed,
                                            rank=self.ctx.rank, world_size=self.ctx.world_size,
                                            second_view=self.strong_view(loader_config, data, where),
                                            subset=self.subset(loader_config['dataset_id']))
        except ValueError as exc:
            raise RunError(f'runtime.device_data: {where}: {one_line(exc, None)}') from None

    @staticmethod
    def strong_view(loader_config: Dict[str, Any], data: DeviceDataset, where: str) -> Optional[DeviceView]:
        """The strong view of a ``TwoViewDataset`` loader (its ``strong_transform`` translated, its own stream), or
        None for any other loader."""
        wrapper = loader_config.get('dataset_wrapper')
        if not (isinstance(wrapper, dict) and wrapper.get('key') == TWO_VIEW_DATASET):
            return None
        strong = (wrapper.get('kwargs') or dict()).get('strong_transform')
        try:
            return DeviceView(data, translate_transform(strong, image_shape=data.pipeline.image_shape), 'strong')
        except ValueError as exc:
            raise RunError(f'runtime.device_data: {where}.dataset_wrapper.kwargs.strong_transform: '
                           f'{one_line(exc, None)}') from None

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

    :param cache: the opened cache (per-seed or complete), checked against the run.
    :param strong_teacher: the teacher network, for configs whose teacher is wrapped in ``TwoViewModel``: it runs on
        the strong view while the cache serves the weak one (:meth:`two_view_forward`); None otherwise.
    """

    def __init__(self, cache: TeacherCache, strong_teacher: Optional[nn.Module] = None):
        super().__init__()
        self.cache = cache
        self.strong_teacher = strong_teacher
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

    def two_view_forward(self, weak: torch.Tensor, strong: torch.Tensor):
        """The teacher's logits on both views (``TwoViewModel`` calls it): the weak view's from the cache, the strong
        view's from the teacher network, run on the strong batch."""
        if self.strong_teacher is None:
            raise RuntimeError('CachedTeacher: two views but no teacher network for the strong view (the runner '
                               'gives it one for a config whose teacher is wrapped in TwoViewModel)')
        return self(weak), self.strong_teacher(strong)


def two_view_teacher(config: Dict[str, Any]) -> bool:
    """Whether a training stage wraps the teacher in ``TwoViewModel`` (so a cache serves its weak view only)."""
    return any(((stage.get('teacher') or dict()).get('auxiliary_model_wrapper') or dict()).get('key') == TWO_VIEW_MODEL
               for _, stage in iter_train_stage_configs(config))


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
