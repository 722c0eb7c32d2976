"""Synthetic stand-ins for a config's datasets (``--smoke``): random images through the config's own transforms.

Nothing is read or downloaded: every node of the config's ``datasets:`` that would read data (an ``!import_call`` of
a dataset class, :func:`~..config.dataset_nodes.is_data_source`) is replaced by a synthetic dataset of the same
kind (CIFAR-sized, or 256 x 256 for ImageNet-style pipelines) with its own transforms; everything around it (a
``split_dataset`` with its sub-splits' transforms, ``!access_by_index_or_key``) is built as the config says, once.
"""
import copy
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.datasets import CIFAR10, CIFAR100
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ...errors import RunError, one_line
from ..config.loading import LoadedConfig, SharedConstruction, mapping_value_node
from ..config.dataset_nodes import dataset_class, dataset_class_key, init_kwargs_node, is_data_source

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


def synthetic_dataset(class_key: str, num_samples: int, num_classes: Optional[int], transform=None,
                      target_transform=None) -> Dataset:
    """The stand-in of one dataset of class ``class_key`` (called through the config's own ``!import_call``)."""
    size, classes = smoke_spec(class_key, num_classes)
    if _is_cifar(class_key):
        return SyntheticCIFAR(num_samples, classes, transform, target_transform)
    return SyntheticImageDataset(num_samples, size, classes, transform, target_transform)


#: Images of a dataset that others are made of (a split's source): enough for each part to hold a smoke loader's.
SPLIT_SOURCE_SAMPLES = 64


def _stand_in_node(node: MappingNode, num_samples: int, num_classes: Optional[int],
                   to_tensor: bool = False) -> MappingNode:
    """An ``!import_call`` of :func:`synthetic_dataset` in place of the data-reading ``node``, with its transforms
    (``to_tensor``: ``ToTensor()`` where it has none, so that its images can be batched)."""
    kwargs_node = init_kwargs_node(node)
    mark = node.start_mark

    def scalar(value, tag='tag:yaml.org,2002:str'):
        return ScalarNode(tag, str(value), mark, mark)
    pairs = [(scalar('class_key'), scalar(dataset_class_key(node))),
             (scalar('num_samples'), scalar(num_samples, 'tag:yaml.org,2002:int')),
             (scalar('num_classes'), scalar(num_classes if num_classes else '', 'tag:yaml.org,2002:int'
                                            if num_classes else 'tag:yaml.org,2002:null'))]
    for name in ('transform', 'target_transform'):
        value = mapping_value_node(kwargs_node, name)
        if value is None and name == 'transform' and to_tensor:
            value = MappingNode('!import_call', [(scalar('key'), scalar('torchvision.transforms.ToTensor'))], mark,
                                mark)
        if value is not None:
            pairs.append((scalar(name), value))
    init = MappingNode('tag:yaml.org,2002:map', [(scalar('kwargs'), MappingNode('tag:yaml.org,2002:map', pairs,
                                                                               mark, mark))], mark, mark)
    return MappingNode(node.tag, [(scalar('key'), scalar(f'{__name__}.synthetic_dataset')), (scalar('init'), init)],
                       mark, mark)


def _replace_leaves(node: Node, replacements: Dict[int, Node], num_classes: Optional[int], seen: set) -> None:
    """Point every reference to a data-reading node below ``node`` at its stand-in (made once per shared node)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    children = node.value if isinstance(node, SequenceNode) else \
        [value for _, value in node.value] if isinstance(node, MappingNode) else []
    for index, child in enumerate(children):
        if is_data_source(child):
            stand_in = replacements.setdefault(id(child), _stand_in_node(child, SPLIT_SOURCE_SAMPLES, num_classes))
            if isinstance(node, SequenceNode):
                node.value[index] = stand_in
            else:
                node.value[index] = (node.value[index][0], stand_in)
        else:
            _replace_leaves(child, replacements, num_classes, seen)


def _smoke_nodes(loaded: LoadedConfig, num_classes: Optional[int], train_ids, train_samples: int,
                 eval_samples: int) -> List[Tuple[str, Node, bool]]:
    """A copy of the dataset nodes (shared nodes stay shared) in which every node that would read data is a
    synthetic stand-in: ``(dataset id, node, built directly)`` (directly: the id's own node was replaced)."""
    nodes = copy.deepcopy([node for _, node in loaded.dataset_nodes])
    replacements: Dict[int, Node] = dict()
    result, seen = [], set()
    for (dataset_id, _), node in zip(loaded.dataset_nodes, nodes):
        if is_data_source(node):
            samples = train_samples if dataset_id in train_ids else eval_samples
            result.append((dataset_id, _stand_in_node(node, samples, num_classes, to_tensor=True), True))
            continue
        _replace_leaves(node, replacements, num_classes, seen)
        result.append((dataset_id, node, False))
    return result


def _warn_without_transform(loaded: LoadedConfig) -> None:
    for dataset_id, node in loaded.dataset_nodes:
        if is_data_source(node) and mapping_value_node(init_kwargs_node(node), 'transform') is None:
            # The synthetic PIL images could not be batched; the config's own dataset class may build its transform
            # elsewhere (e.g. a wrapper), which a smoke run does not reproduce.
            logger.warning(f'smoke: dataset {dataset_id!r} has no init.kwargs.transform; using ToTensor()')


def _cut(dataset: Dataset, samples: int) -> Dataset:
    """A dataset made of another (a split's part) cut to the smoke size, keeping what wrappers read of it."""
    head = getattr(dataset, 'head', None)  # ttm_torchdistill.datasets.HoldoutPart keeps targets and transforms
    return head(samples) if callable(head) else Subset(dataset, range(min(len(dataset), samples)))


def build_smoke_datasets(loaded: LoadedConfig, num_classes: Optional[int], train_ids=(), train_samples: int = 8,
                         eval_samples: int = 4) -> Dict[str, Dataset]:
    """The config's datasets with every data-reading dataset replaced by a synthetic one; the rest of each entry
    (a ``split_dataset`` call, sub-splits with their transforms, ``!access_by_index_or_key``) is built as written.

    :param loaded: the loaded config (nothing is read or downloaded).
    :param num_classes: class count (from the student's ``num_classes``) or None for the dataset's default.
    :param train_ids: ids of datasets feeding a training loader (they get ``train_samples``, others
        ``eval_samples``: two training steps and one evaluation batch at the smoke batch size of 4); a dataset made
        of another (a split's part) is cut to that size after it is built.
    """
    _warn_without_transform(loaded)
    datasets: Dict[str, Dataset] = dict()
    shared = SharedConstruction(loaded.loader)
    try:
        for dataset_id, node, direct in _smoke_nodes(loaded, num_classes, train_ids, train_samples, eval_samples):
            try:
                dataset = shared.construct(node)
            except Exception as exc:
                raise RunError(f'dataset {dataset_id!r} (smoke stand-in): could not be built: '
                               f'{type(exc).__name__}: {one_line(exc)}') from None
            samples = train_samples if dataset_id in train_ids else eval_samples
            datasets[dataset_id] = dataset if direct else _cut(dataset, samples)
    finally:
        shared.close()
    return datasets
