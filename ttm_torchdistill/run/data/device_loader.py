"""Batches of a device dataset with DataLoader (+ DistributedSampler) semantics, yielded with their sample indices.

The loader yields what torchdistill's training loaders yield, ``(images, targets, supp_dict)``, with
``supp_dict = {'indices': LongTensor (B,)}``, the dataset indices of the batch (e.g. for a teacher cache).
The order is a separate stream: ``torch.randperm(N)`` from a generator seeded
with ``order_seed + e``, which is exactly what ``torch.utils.data.DistributedSampler`` draws for
``seed=order_seed`` (so with the same seed the shards equal DistributedSampler's, bit for bit).

Loader semantics (as torchdistill's ``build_data_loader`` makes a ``DataLoader``):

* not distributed: ``RandomSampler`` -> a permutation per epoch, ``SequentialSampler`` -> ``0..N-1``;
  batches of ``batch_size``, the last partial one dropped iff ``drop_last`` (the DataLoader's);
* distributed: torchdistill replaces the configured sampler with ``DistributedSampler(dataset, **sampler.kwargs)``
  (``shuffle`` default True even for a SequentialSampler config, ``drop_last`` default False), so each rank gets
  ``order[rank::world_size]`` of the epoch order padded by repeating its start (sampler ``drop_last=False``) or
  trimmed to a multiple of ``world_size`` (sampler ``drop_last=True``); the DataLoader's ``drop_last`` then
  applies to that shard's batches. Both are mirrored (``shard_drop_last`` and ``drop_last``).
  Difference: DistributedSampler's seed defaults to 0 whatever the run seed; here the order seed defaults to the
  run seed (set ``sampler.kwargs.seed`` to choose it).

Runner API::

    data = DeviceDataset.from_torchvision(dataset, device=device, seed=seed)          # once per dataset
    loader = DeviceLoader.from_config(data, train_config['train_data_loader'], seed=seed,
                                      distributed=ctx.distributed, rank=rank, world_size=world_size)
    for epoch in range(start_epoch, num_epochs):
        loader.set_epoch(epoch)   # required on resume; without it epochs simply follow on from the last one
        for images, targets, supp_dict in loader: ...

torchdistill's default pre-epoch process only calls ``set_epoch`` on a ``DistributedSampler`` found at
``loader.batch_sampler.sampler``; this loader's ``batch_sampler.sampler`` is a small view whose ``set_epoch``
forwards to the loader, so that attribute path works but the runner must call ``loader.set_epoch(epoch)`` itself.
``num_workers``, ``pin_memory`` and the like are accepted and ignored: they do not change which samples are
yielded, and the data already lives on the device.

Two views (MLKD: ``dataset_wrapper: {key: TwoViewDataset}``): given a second view of the dataset
(:class:`~.device_dataset.DeviceView`, its strong view), the loader yields ``(views, targets, supp_dict)`` with
``views`` of shape ``(B, 2, C, H, W)``, the dataset's own view then the second, as ``TwoViewDataset`` batches them.
``views[:, v]`` is one contiguous batch in the run's memory format (the tensor is a transposed view of a view-major
buffer), so ``TwoViewModel`` hands each model a batch laid out as a single-view run's.

A ``subset`` (the training part of ``--holdout``, a ``torch.utils.data.Subset``'s indices) makes the loader draw from
those samples only, as a DataLoader over the ``Subset`` would: the epoch order and the shards are drawn over
``len(subset)`` positions, which then name the samples ``subset[position]``. The yielded ``indices`` are those of the
whole device dataset, so a teacher cache and the augmentation stream see each sample under one index whether or not
the run holds images out.
"""
import math
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

from ...views.two_view import TWO_VIEW_DATASET
from .device_dataset import DeviceDataset, DeviceView

#: DataLoader kwargs that do not change which samples a loader yields (accepted and ignored).
IGNORED_LOADER_KWARGS = ('num_workers', 'pin_memory', 'persistent_workers', 'prefetch_factor', 'timeout',
                         'multiprocessing_context', 'pin_memory_device', 'in_order', 'worker_init_fn')


def epoch_order(num_samples: int, epoch: int, shuffle: bool, order_seed: int) -> torch.Tensor:
    """The epoch's order of all sample indices (CPU LongTensor ``(N,)``), as DistributedSampler draws it."""
    # explicit CPU: the draws must not depend on torch.set_default_device
    if not shuffle:
        return torch.arange(num_samples, device='cpu')
    generator = torch.Generator()
    generator.manual_seed(order_seed + epoch)
    return torch.randperm(num_samples, generator=generator, device='cpu')


def stack_views(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Two batches ``B x C x H x W`` as one ``B x 2 x C x H x W`` whose ``[:, v]`` keeps the batches' memory format
    (channels-last or contiguous): a view-major buffer, transposed."""
    if first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous():
        buffer = torch.stack([first.permute(0, 2, 3, 1), second.permute(0, 2, 3, 1)])  # 2 x B x H x W x C
        return buffer.permute(1, 0, 4, 2, 3)
    return torch.stack([first, second]).transpose(0, 1)


def shard(order: torch.Tensor, rank: int, world_size: int, drop_last: bool) -> torch.Tensor:
    """This rank's part of ``order`` by ``DistributedSampler``'s rule.

    :param order: LongTensor ``(N,)``, the epoch's order of all samples.
    :param drop_last: the sampler's ``drop_last``: trim the tail to a multiple of ``world_size`` (True) or pad
        by repeating indices from the start of ``order`` (False).
    :return: LongTensor ``(num_samples,)`` = ``padded_or_trimmed[rank::world_size]``.
    """
    n = order.numel()
    if not 0 <= rank < world_size:
        raise ValueError(f'rank {rank} is outside 0..{world_size - 1} (world size {world_size})')
    if drop_last and n % world_size != 0:
        per_rank = math.ceil((n - world_size) / world_size)
    else:
        per_rank = math.ceil(n / world_size)
    total = per_rank * world_size
    if drop_last:
        order = order[:total]
    elif total > n:
        pad = total - n
        order = torch.cat([order, order.repeat(math.ceil(pad / n))[:pad]])
    return order[rank:total:world_size]


def _subset_tensor(subset: Sequence[int], size: int) -> torch.Tensor:
    """``subset`` as a CPU LongTensor, checked to name samples of a dataset of ``size``."""
    indices = torch.as_tensor(list(subset) if not isinstance(subset, torch.Tensor) else subset, dtype=torch.long)
    if indices.dim() != 1 or indices.numel() == 0:
        raise ValueError(f'subset: expected a non-empty list of dataset indices, got shape {tuple(indices.shape)}')
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= size:
        raise ValueError(f'subset: expected indices in 0..{size - 1} (the device dataset has {size} samples), got '
                         f'{low}..{high}')
    return indices.cpu()


class _SamplerView:
    """Stands where torchdistill looks for the sampler (``loader.batch_sampler.sampler``); forwards set_epoch."""

    def __init__(self, loader: 'DeviceLoader'):
        self._loader = loader
        self.sampler = self  # so that loader.batch_sampler.sampler resolves

    def set_epoch(self, epoch: int) -> None:
        self._loader.set_epoch(epoch)

    def __len__(self) -> int:
        return self._loader.num_samples()


class DeviceLoader:
    """Batches of a :class:`DeviceDataset` with DataLoader(+DistributedSampler) semantics.

    :param dataset: the device dataset.
    :param batch_size: samples per batch (per rank).
    :param shuffle: a permutation per epoch (RandomSampler / DistributedSampler shuffle) or ``0..N-1``.
    :param drop_last: the DataLoader's: drop the last partial batch (of this rank's shard).
    :param order_seed: the order stream's seed (default: the dataset's seed); epoch ``e`` uses
        ``randperm(N)`` seeded with ``order_seed + e``, as DistributedSampler.
    :param distributed: shard the epoch as DistributedSampler (default: ``world_size > 1``).
    :param rank: this process's rank.
    :param world_size: number of processes.
    :param shard_drop_last: the DistributedSampler's ``drop_last`` (trim instead of pad).
    :param second_view: a second view of ``dataset`` to yield beside its own (MLKD's strong view), or None.
    :param subset: the dataset indices to draw from (all when None), as a ``Subset`` over the dataset.
    """

    def __init__(self, dataset: DeviceDataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 order_seed: Optional[int] = None, distributed: Optional[bool] = None, rank: int = 0,
                 world_size: int = 1, shard_drop_last: bool = False, second_view: Optional[DeviceView] = None,
                 subset: Optional[Sequence[int]] = None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f'batch_size {batch_size!r}: expected a positive int')
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f'rank {rank!r} / world_size {world_size!r}: expected 0 <= rank < world_size')
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.order_seed = dataset.seed if order_seed is None else int(order_seed)
        self.distributed = world_size > 1 if distributed is None else bool(distributed)
        self.rank, self.world_size = rank, world_size
        self.shard_drop_last = bool(shard_drop_last)
        if second_view is not None and second_view.data is not dataset:
            raise ValueError('the second view must be a view of the loader\'s dataset')
        self.second_view = second_view
        self.batch_sampler = _SamplerView(self)
        self.subset = None if subset is None else _subset_tensor(subset, len(dataset))
        self.epoch = 0  # the epoch the next iteration runs
        self._order: Optional[Tuple[int, torch.Tensor]] = None

    @classmethod
    def from_config(cls, dataset: DeviceDataset, loader_config: Dict[str, Any], seed: Optional[int] = None,
                    distributed: bool = False, rank: int = 0, world_size: int = 1,
                    second_view: Optional[DeviceView] = None,
                    subset: Optional[Sequence[int]] = None) -> 'DeviceLoader':
        """A loader from a torchdistill data loader config (``train.train_data_loader`` etc.).

        Reads ``sampler.class_or_func`` (RandomSampler or SequentialSampler; DistributedSampler when
        ``distributed``, with ``sampler.kwargs`` shuffle/seed/drop_last as torchdistill passes them) and
        ``kwargs`` (batch_size, drop_last; worker/pinning options ignored).

        :param seed: the order seed when the sampler config gives none (default: the dataset's seed).
        :param second_view: the strong view when the config wraps the dataset in ``TwoViewDataset`` (translated by
            the caller from its ``strong_transform``), else None.
        :param subset: the dataset indices the loader draws from (all when None).
        :raises ValueError: for another dataset_wrapper, a batch_sampler, collate_fn, another sampler, or a kwarg
            that would change what is yielded.
        """
        config = loader_config or dict()
        wrapper = config.get('dataset_wrapper')
        if wrapper and not (isinstance(wrapper, dict) and wrapper.get('key') == TWO_VIEW_DATASET):
            raise ValueError(f'data loader dataset_wrapper {wrapper!r} is not supported by the device data path: '
                             f'expected none, or {TWO_VIEW_DATASET!r}')
        if bool(wrapper) != (second_view is not None):
            raise ValueError(f'a {TWO_VIEW_DATASET!r} loader needs its second view and only such a loader takes '
                             f'one: dataset_wrapper {wrapper!r}, second view {second_view!r}')
        for key in ('batch_sampler', 'collate_fn'):
            if config.get(key):
                raise ValueError(f'data loader {key} {config[key]!r} is not supported by the device data path: '
                                 f'expected none')
        sampler_config = config.get('sampler') or dict()
        sampler_cls = sampler_config.get('class_or_func')
        sampler_kwargs = dict(sampler_config.get('kwargs') or dict())
        kwargs = dict(config.get('kwargs') or dict())
        unknown = sorted(set(kwargs) - {'batch_size', 'drop_last', 'shuffle', *IGNORED_LOADER_KWARGS})
        if unknown:
            raise ValueError(f'data loader kwargs {unknown} are not supported by the device data path: expected '
                             f'batch_size, drop_last (and ignored {", ".join(IGNORED_LOADER_KWARGS)})')
        if kwargs.get('shuffle'):
            raise ValueError('data loader kwargs.shuffle=True with a sampler: DataLoader rejects it (sampler option '
                             'is mutually exclusive with shuffle); expected the shuffle to come from the sampler')
        order_seed = seed
        if distributed:
            # torchdistill: DistributedSampler(dataset, **sampler_kwargs), whatever class the config names
            unknown = sorted(set(sampler_kwargs) - {'shuffle', 'seed', 'drop_last'})
            if unknown:
                raise ValueError(f'sampler kwargs {unknown} under distributed training: DistributedSampler takes '
                                 f'shuffle, seed, drop_last (num_replicas/rank come from the run)')
            shuffle = bool(sampler_kwargs.get('shuffle', True))
            shard_drop_last = bool(sampler_kwargs.get('drop_last', False))
            if sampler_kwargs.get('seed') is not None:
                order_seed = int(sampler_kwargs['seed'])
        else:
            if sampler_cls is RandomSampler:
                bad = {k: v for k, v in sampler_kwargs.items()
                       if not (k == 'replacement' and v is False or k in ('num_samples', 'generator') and v is None)}
                if bad:
                    raise ValueError(f'RandomSampler kwargs {bad} are not supported by the device data path: '
                                     f'expected a plain permutation (replacement False, num_samples None)')
                shuffle = True
            elif sampler_cls is SequentialSampler:
                if sampler_kwargs:
                    raise ValueError(f'SequentialSampler kwargs {sampler_kwargs}: expected none')
                shuffle = False
            elif sampler_cls is DistributedSampler:
                raise ValueError('sampler DistributedSampler in a non-distributed run: expected RandomSampler or '
                                 'SequentialSampler (torchdistill installs DistributedSampler itself)')
            else:
                name = getattr(sampler_cls, '__qualname__', repr(sampler_cls))
                raise ValueError(f'sampler {name} is not supported by the device data path: expected '
                                 f'torch.utils.data.RandomSampler or SequentialSampler')
            shard_drop_last = False
        batch_size = kwargs.get('batch_size', 1)
        return cls(dataset, batch_size, shuffle=shuffle, drop_last=bool(kwargs.get('drop_last', False)),
                   order_seed=order_seed, distributed=distributed, rank=rank, world_size=world_size,
                   shard_drop_last=shard_drop_last, second_view=second_view,
                   subset=subset)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration run epoch ``epoch`` (order and augmentation); later ones follow on from it."""
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices of ``epoch`` in yield order (LongTensor on the device), before batching."""
        if self._order is None or self._order[0] != epoch:
            order = epoch_order(self.population(), epoch, self.shuffle, self.order_seed)
            if self.distributed:
                order = shard(order, self.rank, self.world_size, self.shard_drop_last)
            if self.subset is not None:  # positions in the subset -> dataset indices, as Subset.__getitem__
                order = self.subset[order]
            self._order = (epoch, order.to(self.dataset.device))
        return self._order[1]

    def population(self) -> int:
        """How many samples the loader draws from: the subset's, else the dataset's."""
        return len(self.dataset) if self.subset is None else self.subset.numel()

    def num_samples(self) -> int:
        """Samples this rank visits per epoch (DistributedSampler's ``num_samples`` when distributed)."""
        n = self.population()
        if not self.distributed:
            return n
        if self.shard_drop_last and n % self.world_size != 0:
            return math.ceil((n - self.world_size) / self.world_size)
        return math.ceil(n / self.world_size)

    def __len__(self) -> int:
        n = self.num_samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]]:
        epoch = self.epoch
        self.epoch = epoch + 1  # a loader iterated again without set_epoch moves on to fresh draws
        return self._batches(epoch)

    def _batches(self, epoch: int):
        order = self.indices(epoch)
        data = self.dataset
        for step in range(len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            images = data.augment(epoch, idx)
            if self.second_view is not None:
                images = stack_views(images, self.second_view.augment(epoch, idx))
            yield images, data.targets[idx], {'indices': idx}
