"""Synthetic stand-ins for a config's datasets (``--smoke``): random images through the config's own transforms.

Nothing is read or downloaded: the dataset nodes of the config are not constructed, only their transforms.
"""
import logging
from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from ...errors import RunError
from ..config.loading import LoadedConfig, mapping_value_node
from ..config.dataset_nodes import construct_optional, dataset_class, dataset_class_key, init_kwargs_node

logger = logging.getLogger('ttm_torchdistill.run')


class SyntheticImageDataset(Dataset):
    """Deterministic random RGB images with labels ``index % num_classes``, passed through the real transforms.

    Images are PIL images so that the config's own transform pipeline (crop, flip, ToTensor, Normalize) runs
    exactly as it would on real data; only the pixels are fake. ``targets`` and ``classes`` are there as on
    torchvision's datasets, for wrappers that read them (torchdistill's ``CRDDatasetWrapper``).

    :param num_samples: dataset length.
    :param image_size: ``(height, width)`` of the raw images before the transform.
    :param num_classes: number of classes; labels cycle through them.
    :param transform: the configured ``transform`` (or None).
    :param target_transform: the configured ``target_transform`` (or None).
    """

    def __init__(self, num_samples: int, image_size: Tuple[int, int], num_classes: int,
                 transform=None, target_transform=None):
        self.num_samples = num_samples
        self.image_size = tuple(image_size)
        self.num_classes = num_classes
        self.transform = transform
        self.target_transform = target_transform
        self.targets = [i % num_classes for i in range(num_samples)]
        self.classes = [f'class_{i}' for i in range(num_classes)]

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        rng = np.random.default_rng(index)
        pixels = rng.integers(0, 256, size=(*self.image_size, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)  # HxWx3 uint8 -> RGB
        target = self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class SyntheticCIFAR(CIFAR10):
    """torchvision's own CIFAR class over random in-memory arrays: the smoke stand-in for CIFAR-10/100.

    It is a ``CIFAR10`` (``CIFAR100`` subclasses it) holding ``.data`` (``N x 32 x 32 x 3`` uint8) and ``.targets``,
    so ``__getitem__`` is torchvision's and ``--smoke`` also exercises ``--device-data``, which reads those arrays.
    Images are the same as :class:`SyntheticImageDataset`'s (seeded by the index).
    """

    def __init__(self, num_samples: int, num_classes: int, transform=None, target_transform=None):
        # CIFAR10.__init__ reads (or downloads) the real files: set what the class's methods use instead.
        self.root, self.train = '', True
        self.transform, self.target_transform = transform, target_transform
        self.data = np.stack([np.random.default_rng(i).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                              for i in range(num_samples)]) if num_samples else np.zeros((0, 32, 32, 3), np.uint8)
        self.targets = [i % num_classes for i in range(num_samples)]
        self.classes = [f'class_{i}' for i in range(num_classes)]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


# Raw image sizes of the synthetic data (before the configured transform) and default class counts.
_SMALL_IMAGE_DATASETS = {'CIFAR10': ((32, 32), 10), 'CIFAR100': ((32, 32), 100), 'SVHN': ((32, 32), 10),
                         'MNIST': ((28, 28), 10), 'FashionMNIST': ((28, 28), 10)}


_LARGE_IMAGE_SIZE = (256, 256)  # ImageNet-style pipelines resize/crop to 224 from here

_LARGE_DEFAULT_CLASSES = 1000

def _is_cifar(class_key: str) -> bool:
    cls = dataset_class(class_key)
    return isinstance(cls, type) and issubclass(cls, CIFAR10)  # CIFAR100 and the plugin's *Format classes too


def smoke_spec(class_key: str, num_classes: Optional[int]) -> Tuple[Tuple[int, int], int]:
    """Raw image size and class count for a synthetic stand-in of the dataset class ``class_key``."""
    name = class_key.rsplit('.', 1)[-1]
    if _is_cifar(class_key):
        cls = dataset_class(class_key)
        name = 'CIFAR100' if issubclass(cls, CIFAR100) else 'CIFAR10'
    size, default_classes = _SMALL_IMAGE_DATASETS.get(name, (_LARGE_IMAGE_SIZE, _LARGE_DEFAULT_CLASSES))
    return size, int(num_classes) if num_classes else default_classes


def build_smoke_datasets(loaded: LoadedConfig, num_classes: Optional[int], train_ids=(), train_samples: int = 8,
                         eval_samples: int = 4) -> Dict[str, Dataset]:
    """Synthetic datasets standing in for every configured dataset; only the transforms are constructed.

    :param loaded: the loaded config (dataset nodes are not constructed, so nothing is read or downloaded).
    :param num_classes: class count (from the student's ``num_classes``) or None for the dataset's default.
    :param train_ids: ids of datasets feeding a training loader (they get ``train_samples``, others
        ``eval_samples``: two training steps and one evaluation batch at the smoke batch size of 4).
    """
    datasets = dict()
    for dataset_id, node in loaded.dataset_nodes:
        class_key = dataset_class_key(node)
        kwargs_node = init_kwargs_node(node)
        try:
            transform = construct_optional(loaded, mapping_value_node(kwargs_node, 'transform'))
            target_transform = construct_optional(loaded, mapping_value_node(kwargs_node, 'target_transform'))
        except Exception as exc:
            raise RunError(f'dataset {dataset_id!r}: its transform could not be built: '
                           f'{type(exc).__name__}: {exc}') from None
        if transform is None:
            # Without a transform the synthetic PIL images could not be batched; the config's own dataset class
            # may build its transform elsewhere (e.g. a wrapper), which a smoke run does not reproduce.
            from torchvision.transforms import ToTensor
            logger.warning(f'smoke: dataset {dataset_id!r} has no init.kwargs.transform; using ToTensor()')
            transform = ToTensor()
        size, classes = smoke_spec(class_key, num_classes)
        num_samples = train_samples if dataset_id in train_ids else eval_samples
        if _is_cifar(class_key):
            datasets[dataset_id] = SyntheticCIFAR(num_samples, classes, transform, target_transform)
        else:
            datasets[dataset_id] = SyntheticImageDataset(num_samples, size, classes, transform, target_transform)
    return datasets
