"""Device-resident data path for in-memory uint8 datasets (torchvision CIFAR-10/100).

The images (``N x H x W x C`` uint8) and labels are moved to the device once; each batch is gathered there and
the config's own transform pipeline runs batched on the device (:mod:`.device_transforms` translates it exactly
or refuses it). The loader yields what torchdistill's training loaders yield, ``(images, targets, supp_dict)``,
with ``supp_dict = {'indices': LongTensor (B,)}``, the dataset indices of the batch (e.g. for a teacher cache).

Randomness, per sample index. At the start of epoch ``e`` every random op draws its parameters for ALL N samples
from a CPU ``torch.Generator`` seeded with ``derive_seed(STREAM, 'augment', seed, e)`` (crop offsets ``N x 2``,
flip decisions ``N``); a batch takes the rows of its indices. So the augmentation of sample ``i`` in epoch ``e``
depends only on (seed, e, i, the pipeline, N): not on batch size, world size, rank or order, and resuming at
epoch ``e`` gives the same stream. The order is a separate stream: ``torch.randperm(N)`` from a generator seeded
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

    data = DeviceDataset.from_torchvision(dataset, device=device, seed=run_seed)      # once per dataset
    loader = DeviceLoader.from_config(data, train_config['train_data_loader'], seed=run_seed,
                                      distributed=ctx.distributed, rank=rank, world_size=world_size)
    for epoch in range(start_epoch, num_epochs):
        loader.set_epoch(epoch)   # required on resume; without it epochs simply follow on from the last one
        for images, targets, supp_dict in loader: ...

torchdistill's default pre-epoch process only calls ``set_epoch`` on a ``DistributedSampler`` found at
``loader.batch_sampler.sampler``; this loader's ``batch_sampler.sampler`` is a small view whose ``set_epoch``
forwards to the loader, so that attribute path works but the runner must call ``loader.set_epoch(epoch)`` itself.
``num_workers``, ``pin_memory`` and the like are accepted and ignored: they do not change which samples are
yielded, and the data already lives on the device.
"""
import hashlib
import math
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

from .device_transforms import DevicePipeline, translate_transform
from .views import ViewSpace

#: Names the scheme by which augmentation parameters are derived; part of a teacher cache's metadata.
STREAM = 'ttm_torchdistill.device_data/v1'

#: DataLoader kwargs that do not change which samples a loader yields (accepted and ignored).
IGNORED_LOADER_KWARGS = ('num_workers', 'pin_memory', 'persistent_workers', 'prefetch_factor', 'timeout',
                         'multiprocessing_context', 'pin_memory_device', 'in_order', 'worker_init_fn')


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (sha256 of their ``repr`` joined by '/'): stable across runs and platforms."""
    digest = hashlib.sha256('/'.join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], 'little') & ((1 << 63) - 1)


def epoch_order(num_samples: int, epoch: int, shuffle: bool, order_seed: int) -> torch.Tensor:
    """The epoch's order of all sample indices (CPU LongTensor ``(N,)``), as DistributedSampler draws it."""
    # explicit CPU: the draws must not depend on torch.set_default_device
    if not shuffle:
        return torch.arange(num_samples, device='cpu')
    generator = torch.Generator()
    generator.manual_seed(order_seed + epoch)
    return torch.randperm(num_samples, generator=generator, device='cpu')


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


class DeviceDataset:
    """uint8 images and int64 labels on a device, with a translated transform pipeline and per-sample randomness.

    :param images: uint8 ``N x H x W x C`` (numpy or tensor); moved to ``device`` once.
    :param targets: ``N`` integer labels.
    :param pipeline: the translated transform (:func:`translate_transform`).
    :param seed: the run seed; augmentation of epoch ``e`` uses ``derive_seed(STREAM, 'augment', seed, e)``.
    :param device: where images, labels and batches live.
    :param dtype: floating dtype of the yielded images (arithmetic in float32, then cast).
    :param memory_format: ``torch.contiguous_format`` (DataLoader's) or ``torch.channels_last``.

    Device memory: the raw images (``N x H x W x C`` bytes; CIFAR-100 train 153 MB) plus, for a pipeline that
    starts with RandomCrop, the padded copy the crops are gathered from (x2 with a flip; 480 MB for CIFAR-100,
    see :class:`~ttm_torchdistill.run.device_transforms.PreparedImages`), and the epoch's parameters (N x 2 int64
    offsets, N bools).
    """

    def __init__(self, images, targets, pipeline: DevicePipeline, seed: int, device='cpu',
                 dtype: torch.dtype = torch.float32, memory_format: torch.memory_format = torch.contiguous_format):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f'expected uint8 images N x H x W x C, got {images.dtype} {tuple(images.shape)}')
        targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        if targets.shape != (images.shape[0],):
            raise ValueError(f'expected {images.shape[0]} labels (one per image), got shape {tuple(targets.shape)}')
        if images.shape[0] == 0:
            raise ValueError('the dataset is empty: expected at least one image')
        if tuple(images.shape[1:]) != pipeline.image_shape:
            raise ValueError(f'the pipeline was translated for images {pipeline.image_shape}, the dataset has '
                             f'{tuple(images.shape[1:])}')
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.prepared = pipeline.prepare(self.images, memory_format)
        self.targets = targets.to(self.device)
        self.pipeline = pipeline
        self.seed = int(seed)
        self.dtype = dtype
        self.memory_format = memory_format
        self._params_epoch: Optional[int] = None
        self._params: List[Optional[torch.Tensor]] = []
        self._host_params: List[Optional[torch.Tensor]] = []  # the same draws on the CPU (for view indices)
        self._checksums: Optional[Tuple[str, str]] = None

    @classmethod
    def from_torchvision(cls, dataset, device='cpu', seed: int = 0, transform: Any = 'dataset',
                         dtype: torch.dtype = torch.float32,
                         memory_format: torch.memory_format = torch.contiguous_format) -> 'DeviceDataset':
        """Build from a ``torchvision.datasets.CIFAR10``/``CIFAR100`` object and its transform.

        :param dataset: the torchvision dataset (``.data`` uint8 numpy ``N x 32 x 32 x 3``, ``.targets`` list).
        :param transform: the pipeline to translate; by default ``dataset.transform``.
        :raises ValueError: a dataset of another kind or without such arrays, a ``target_transform``, or an
            unsupported transform (one line naming it).
        """
        from torchvision.datasets import CIFAR10  # CIFAR100 subclasses it

        kind = f'{type(dataset).__module__}.{type(dataset).__qualname__}'
        if not isinstance(dataset, CIFAR10):
            raise ValueError(f'dataset {kind} is not supported by the device data path: expected '
                             f'torchvision.datasets.CIFAR10 or CIFAR100 (in-memory uint8 .data and .targets)')
        data, targets = getattr(dataset, 'data', None), getattr(dataset, 'targets', None)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 4 or data.shape[3] != 3:
            found = f'{type(data).__name__} {getattr(data, "dtype", "")} {getattr(data, "shape", "")}'.strip()
            raise ValueError(f'dataset {kind}: .data is {found}: expected a uint8 numpy array N x H x W x 3')
        if targets is None or len(targets) != data.shape[0]:
            raise ValueError(f'dataset {kind}: .targets has {None if targets is None else len(targets)} entries: '
                             f'expected {data.shape[0]} (one per image)')
        if getattr(dataset, 'target_transform', None) is not None:
            tt = type(dataset.target_transform)
            raise ValueError(f'dataset {kind} has a target_transform ({tt.__module__}.{tt.__qualname__}): the device '
                             f'data path supports none')
        pipeline = translate_transform(dataset.transform if transform == 'dataset' else transform,
                                       image_shape=tuple(data.shape[1:]))
        return cls(torch.from_numpy(data), targets, pipeline, seed, device, dtype, memory_format)

    def __len__(self) -> int:
        return self.images.shape[0]

    def augmentation_params(self, epoch: int) -> List[Optional[torch.Tensor]]:
        """Per-op parameters of every sample for ``epoch`` (first dim N), on the device; cached for one epoch."""
        if self._params_epoch != epoch:
            generator = torch.Generator()
            generator.manual_seed(derive_seed(STREAM, 'augment', self.seed, int(epoch)))
            drawn = self.pipeline.draw(len(self), generator)
            self._params = [None if p is None else p.to(self.device) for p in drawn]
            self._host_params = drawn
            self._params_epoch = epoch
        return self._params

    def view_indices(self, epoch: int) -> torch.Tensor:
        """The view of every sample in ``epoch`` (:class:`~ttm_torchdistill.run.views.ViewSpace`'s index of the
        crop offset and flip drawn for it), CPU LongTensor ``(N,)``; computed from the CPU draws, no device read.

        :raises ValueError: a pipeline whose views cannot be enumerated.
        """
        self.augmentation_params(epoch)
        return ViewSpace(self.pipeline).index(self._host_params, len(self))

    def augment(self, epoch: int, indices: torch.Tensor) -> torch.Tensor:
        """The transformed images of samples ``indices`` in ``epoch``.

        :param indices: LongTensor ``(B,)`` of dataset indices (any device).
        :return: ``B x C x H' x W'`` of ``dtype`` on the device.
        """
        indices = torch.as_tensor(indices, dtype=torch.long).to(self.device)
        return self.render(indices, [None if p is None else p[indices] for p in self.augmentation_params(epoch)])

    def render(self, indices: torch.Tensor, params) -> torch.Tensor:
        """The images of samples ``indices`` (LongTensor ``(B,)`` on the device) made with the given per-op
        parameters (B rows each, on the device): what :meth:`augment` yields when those parameters are drawn."""
        return self.pipeline.run(self.prepared, indices, params, self.dtype, self.memory_format)

    def describe(self) -> Dict[str, Any]:
        """Canonical description of how images are produced (for cache metadata): stream, image shape, ops."""
        return {'stream': STREAM, 'image_shape': list(self.pipeline.image_shape), 'ops': self.pipeline.describe()}

    def checksums(self) -> Tuple[str, str]:
        """(sha256 of the images as uint8 ``N x H x W x C`` C-order bytes, sha256 of the labels as int64 LE bytes)."""
        if self._checksums is None:
            images = self.images.cpu().numpy()
            labels = self.targets.cpu().numpy().astype('<i8')
            self._checksums = (hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(),
                               hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest())
        return self._checksums


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
    """

    def __init__(self, dataset: DeviceDataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 order_seed: Optional[int] = None, distributed: Optional[bool] = None, rank: int = 0,
                 world_size: int = 1, shard_drop_last: bool = False):
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
        self.batch_sampler = _SamplerView(self)
        self.epoch = 0  # the epoch the next iteration runs
        self._order: Optional[Tuple[int, torch.Tensor]] = None

    @classmethod
    def from_config(cls, dataset: DeviceDataset, loader_config: Dict[str, Any], seed: Optional[int] = None,
                    distributed: bool = False, rank: int = 0, world_size: int = 1) -> 'DeviceLoader':
        """A loader from a torchdistill data loader config (``train.train_data_loader`` etc.).

        Reads ``sampler.class_or_func`` (RandomSampler or SequentialSampler; DistributedSampler when
        ``distributed``, with ``sampler.kwargs`` shuffle/seed/drop_last as torchdistill passes them) and
        ``kwargs`` (batch_size, drop_last; worker/pinning options ignored).

        :param seed: the order seed when the sampler config gives none (default: the dataset's seed).
        :raises ValueError: for a dataset_wrapper, batch_sampler, collate_fn, another sampler, or a kwarg that
            would change what is yielded.
        """
        config = loader_config or dict()
        for key in ('dataset_wrapper', 'batch_sampler', 'collate_fn'):
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
                   shard_drop_last=shard_drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration run epoch ``epoch`` (order and augmentation); later ones follow on from it."""
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices of ``epoch`` in yield order (LongTensor on the device), before batching."""
        if self._order is None or self._order[0] != epoch:
            order = epoch_order(len(self.dataset), epoch, self.shuffle, self.order_seed)
            if self.distributed:
                order = shard(order, self.rank, self.world_size, self.shard_drop_last)
            self._order = (epoch, order.to(self.dataset.device))
        return self._order[1]

    def num_samples(self) -> int:
        """Samples this rank visits per epoch (DistributedSampler's ``num_samples`` when distributed)."""
        n = len(self.dataset)
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
            yield data.augment(epoch, idx), data.targets[idx], {'indices': idx}
