"""Device-resident datasets: in-memory uint8 images (torchvision CIFAR-10/100) augmented in batches on the device.

The images (``N x H x W x C`` uint8) and labels are moved to the device once; each batch is gathered there and
the config's own transform pipeline runs batched on the device (:mod:`.device_transforms` translates it exactly
or refuses it). :class:`~.device_loader.DeviceLoader` batches a :class:`DeviceDataset` as a DataLoader would.

Randomness, per sample index. At the start of epoch ``e`` every random op draws its parameters for ALL N samples
from a CPU ``torch.Generator`` seeded with ``derive_seed(STREAM, 'augment', seed, e)`` (crop offsets ``N x 2``,
flip decisions ``N``); a batch takes the rows of its indices. So the augmentation of sample ``i`` in epoch ``e``
depends only on (seed, e, i, the pipeline, N): not on batch size, world size, rank or order, and resuming at
epoch ``e`` gives the same stream.

A second view of the same images (MLKD's strong view, :class:`DeviceView`) has its own pipeline and its own stream,
``derive_seed(STREAM, 'augment', name, seed, e)``: the first view draws what it draws without it.
"""
import hashlib
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .device_transforms import DevicePipeline, prepared_layout, translate_transform
from .view_space import ViewSpace

#: Names the scheme by which augmentation parameters are derived; part of a teacher cache's metadata.
STREAM = 'ttm_torchdistill.device_data/v1'


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (sha256 of their ``repr`` joined by '/'): stable across runs and platforms."""
    digest = hashlib.sha256('/'.join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], 'little') & ((1 << 63) - 1)


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
    see :class:`~ttm_torchdistill.run.data.device_transforms.PreparedImages`), and the epoch's parameters (N x 2 int64
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
        self.view = DeviceView(self, pipeline)
        self._checksums: Optional[Tuple[str, str]] = None

    @classmethod
    def from_torchvision(cls, dataset, device='cpu', seed: int = 0, transform: Any = 'dataset',
                         dtype: torch.dtype = torch.float32,
                         memory_format: torch.memory_format = torch.contiguous_format,
                         device_images: Optional[torch.Tensor] = None) -> 'DeviceDataset':
        """Build from a ``torchvision.datasets.CIFAR10``/``CIFAR100`` object and its transform.

        :param dataset: the torchvision dataset (``.data`` uint8 numpy ``N x 32 x 32 x 3``, ``.targets`` list).
        :param transform: the pipeline to translate; by default ``dataset.transform``.
        :param device_images: ``dataset.data`` already on ``device`` (another DeviceDataset's ``images``, of a copy
            of this dataset with another transform): shared instead of copied there again.
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
        images = torch.from_numpy(data) if device_images is None else device_images
        return cls(images, targets, pipeline, seed, device, dtype, memory_format)

    def __len__(self) -> int:
        return self.images.shape[0]

    def augmentation_params(self, epoch: int) -> List[Optional[torch.Tensor]]:
        """Per-op parameters of every sample for ``epoch`` (first dim N), on the device; cached for one epoch."""
        return self.view.augmentation_params(epoch)

    def view_indices(self, epoch: int) -> torch.Tensor:
        """The view of every sample in ``epoch`` (:class:`~.view_space.ViewSpace`'s index of the crop offset and flip
        drawn for it), CPU LongTensor ``(N,)``; computed from the CPU draws, no device read.

        :raises ValueError: a pipeline whose views cannot be enumerated.
        """
        return ViewSpace(self.pipeline).index(self.view.host_params(epoch), len(self))

    def augment(self, epoch: int, indices: torch.Tensor) -> torch.Tensor:
        """The transformed images of samples ``indices`` in ``epoch``.

        :param indices: LongTensor ``(B,)`` of dataset indices (any device).
        :return: ``B x C x H' x W'`` of ``dtype`` on the device.
        """
        return self.view.augment(epoch, indices)

    def render(self, indices: torch.Tensor, params) -> torch.Tensor:
        """The images of samples ``indices`` (LongTensor ``(B,)`` on the device) made with the given per-op
        parameters (B rows each, on the device): what :meth:`augment` yields when those parameters are drawn."""
        return self.view.render(indices, params)

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


class DeviceView:
    """One view of a :class:`DeviceDataset`'s images: a translated pipeline and its own per-epoch stream of draws.

    The dataset's own view (``name`` None) draws epoch ``e`` from ``derive_seed(STREAM, 'augment', seed, e)``; a named
    one (MLKD's strong view: ``'strong'``) from ``derive_seed(STREAM, 'augment', name, seed, e)``. A view whose
    pipeline starts with the same crop (and flip) as the dataset's gathers from the dataset's prepared buffers.

    :param data: the dataset whose images (seed, device, dtype, memory format) the view uses.
    :param pipeline: the view's translated transform, for images of the dataset's shape.
    :param name: None for the dataset's own view, else the name of the view's stream.
    :raises ValueError: a pipeline for other images, or whose output shape differs from the dataset's (two views of
        a batch are stacked).
    """

    def __init__(self, data: DeviceDataset, pipeline: DevicePipeline, name: Optional[str] = None):
        if pipeline.image_shape != data.pipeline.image_shape:
            raise ValueError(f'the view\'s pipeline was translated for images {pipeline.image_shape}, the dataset has '
                             f'{data.pipeline.image_shape}')
        if pipeline.out_hw != data.pipeline.out_hw:
            raise ValueError(f'the views must have the same size to be batched together: the dataset\'s transform '
                             f'makes {data.pipeline.out_hw}, this one {pipeline.out_hw}')
        self.data, self.pipeline, self.name = data, pipeline, name
        same = name is None or prepared_layout(pipeline, data.memory_format) == data.prepared.layout
        self.prepared = data.prepared if same else pipeline.prepare(data.images, data.memory_format)
        self._params_epoch: Optional[int] = None
        self._params: List[Optional[torch.Tensor]] = []
        self._host_params: List[Optional[torch.Tensor]] = []  # the same draws on the CPU (for view indices)

    def stream_seed(self, epoch: int) -> int:
        """The seed of the generator that draws every sample's parameters of ``epoch``."""
        if self.name is None:
            return derive_seed(STREAM, 'augment', self.data.seed, int(epoch))
        return derive_seed(STREAM, 'augment', self.name, self.data.seed, int(epoch))

    def augmentation_params(self, epoch: int) -> List[Optional[torch.Tensor]]:
        """Per-op parameters of every sample for ``epoch`` (first dim N), on the device; cached for one epoch."""
        if self._params_epoch != epoch:
            generator = torch.Generator()
            generator.manual_seed(self.stream_seed(epoch))
            drawn = self.pipeline.draw(len(self.data), generator)
            self._params = [None if p is None else p.to(self.data.device) for p in drawn]
            self._host_params = drawn
            self._params_epoch = epoch
        return self._params

    def host_params(self, epoch: int) -> List[Optional[torch.Tensor]]:
        """:meth:`augmentation_params` as drawn, on the CPU."""
        self.augmentation_params(epoch)
        return self._host_params

    def augment(self, epoch: int, indices: torch.Tensor) -> torch.Tensor:
        """This view of samples ``indices`` (LongTensor ``(B,)``, any device) in ``epoch``: ``B x C x H' x W'``."""
        indices = torch.as_tensor(indices, dtype=torch.long).to(self.data.device)
        return self.render(indices, [None if p is None else p[indices] for p in self.augmentation_params(epoch)])

    def render(self, indices: torch.Tensor, params) -> torch.Tensor:
        """This view of samples ``indices`` (on the device) made with the given per-op parameters (B rows each)."""
        return self.pipeline.run(self.prepared, indices, params, self.data.dtype, self.data.memory_format)

    def describe(self) -> Dict[str, Any]:
        """Canonical description of the view: its stream and its translated ops."""
        return {'stream': STREAM, 'view': self.name, 'ops': self.pipeline.describe()}
