"""CIFAR-10/100 from files in CIFAR's on-disk format that are not torchvision's official ones.

torchvision's ``CIFAR10``/``CIFAR100`` check every file against the md5 of the official archive, so a subset, a
relabelled copy or another data set exported in CIFAR's format (pickled ``data`` rows of 3 x 32 x 32 uint8 and
``labels``/``fine_labels``, plus the ``meta`` file of class names) is refused as "not found or corrupted".
:class:`CIFAR100Format` and :class:`CIFAR10Format` read the same files with the same code, checking only that they
are there; they never download. Everything that accepts torchvision's CIFAR classes accepts them (they subclass
them): ``--device-data``, ``cache-teacher`` and ``--smoke``.

.. code-block:: yaml

    datasets:
      &cifar100_train cifar100/train: !import_call
        key: 'ttm_torchdistill.datasets.CIFAR100Format'  # also registered: get_dataset('CIFAR100Format')
        init:
          kwargs:
            root: '/data/my_cifar_export'   # holds cifar-100-python/{train,test,meta}
            train: True
            transform: ...

.. warning::
    The files are Python pickles, as in torchvision: reading one runs whatever it was written to run. Read only files
    you made or trust.
"""
import copy
import logging
import os
import pickle
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import CIFAR10, CIFAR100

from ._registry import dataset

__all__ = ['CIFAR10Format', 'CIFAR100Format', 'HoldoutPart', 'holdout_indices', 'holdout_split']

logger = logging.getLogger('ttm_torchdistill.run')


class _PresenceChecked:
    """Replaces the md5 checks of torchvision's CIFAR classes by checks that the files are there."""

    official = ''  # the torchvision class for the official data

    def _files(self):
        return [name for name, _ in self.train_list + self.test_list] + [self.meta['filename']]

    def _check_integrity(self) -> bool:
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, name)) for name in self._files())

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta['filename'])
        if not os.path.isfile(path):
            raise RuntimeError(f'Dataset metadata file not found: {path}')
        with open(path, 'rb') as fp:
            names = pickle.load(fp, encoding='latin1')[self.meta['key']]
        self.classes = list(names)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    def download(self) -> None:
        """Files of one's own are not downloaded: present, nothing to do; absent, say where they are expected."""
        if self._check_integrity():
            return
        raise RuntimeError(f'{type(self).__name__} reads files of your own and never downloads: expected '
                           f'{os.path.join(self.root, self.base_folder)}/ with {", ".join(self._files())}; for the '
                           f'official data use torchvision.datasets.{self.official}')


@dataset('CIFAR100Format')
class CIFAR100Format(_PresenceChecked, CIFAR100):
    """torchvision's ``CIFAR100`` reading ``<root>/cifar-100-python/{train,test,meta}`` of your own, without md5 checks.

    Same arguments as ``torchvision.datasets.CIFAR100`` (``root``, ``train``, ``transform``, ``target_transform``,
    ``download``, which only confirms that the files are there).
    """
    official = 'CIFAR100'


@dataset('CIFAR10Format')
class CIFAR10Format(_PresenceChecked, CIFAR10):
    """torchvision's ``CIFAR10`` reading ``<root>/cifar-10-batches-py/`` of your own, without md5 checks.

    Same arguments as ``torchvision.datasets.CIFAR10``.
    """
    official = 'CIFAR10'


class HoldoutPart(Subset):
    """One part of :func:`holdout_split`: a ``Subset`` that also carries its samples' ``targets`` and the source's
    ``classes``, as torchvision's datasets do (torchdistill's CRD wrapper and the device data path read them)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        super().__init__(dataset, list(indices))
        source = getattr(dataset, 'targets', None)
        self.targets = None if source is None else [int(source[i]) for i in self.indices]
        self.classes = getattr(dataset, 'classes', None)

    # The part's transforms are its dataset's (each part has its own copy): MLKD's TwoViewDataset reads and resets
    # ``transform`` on a shallow copy of what it wraps, which must then not reach this part's dataset.
    @property
    def transform(self):
        return getattr(self.dataset, 'transform', None)

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value

    @property
    def target_transform(self):
        return getattr(self.dataset, 'target_transform', None)

    @target_transform.setter
    def target_transform(self, value) -> None:
        self.dataset.target_transform = value

    def __copy__(self) -> 'HoldoutPart':
        part = HoldoutPart.__new__(HoldoutPart)
        part.__dict__.update(self.__dict__)
        part.dataset = copy.copy(self.dataset)
        return part

    def head(self, count: int) -> 'HoldoutPart':
        """The part cut to its first ``count`` samples (``--smoke``)."""
        return HoldoutPart(self.dataset, self.indices[:count])


def holdout_indices(targets: Optional[Sequence[int]], num_samples: int, holdout: int, seed: int,
                    class_balanced: bool = True) -> List[int]:
    """The sorted indices of ``holdout`` samples out of ``num_samples``, drawn with ``torch.Generator(seed)``.

    Class-balanced (``targets`` given): each class gives its share of ``holdout`` in proportion to its size (the
    largest remainders, then the lowest class, take the rest; CIFAR-100's 50,000 images with ``holdout: 5000`` give
    50 per class), each class's share drawn by its own permutation in class order.

    :raises ValueError: a holdout that is not between 1 and ``num_samples - 1``, or class balance without targets.
    """
    if not 0 < holdout < num_samples:
        raise ValueError(f'holdout must be between 1 and {num_samples - 1} (the training set has {num_samples} '
                         f'samples), got {holdout}')
    generator = torch.Generator().manual_seed(int(seed))
    if not class_balanced:
        return sorted(torch.randperm(num_samples, generator=generator)[:holdout].tolist())
    if targets is None:
        raise ValueError('a class-balanced holdout needs the dataset\'s targets (a torchvision dataset has them); '
                         'use class_balanced: false for a dataset without')
    by_class: Dict[int, List[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(int(target), []).append(index)
    classes = sorted(by_class)
    exact = {c: holdout * len(by_class[c]) / num_samples for c in classes}
    shares = {c: int(exact[c]) for c in classes}
    for c in sorted(classes, key=lambda c: (-(exact[c] - shares[c]), c))[:holdout - sum(shares.values())]:
        shares[c] += 1
    chosen = []
    for c in classes:
        order = torch.randperm(len(by_class[c]), generator=generator)[:shares[c]].tolist()
        chosen += [by_class[c][i] for i in order]
    return sorted(chosen)


def holdout_split(dataset: Dataset, holdout: int, seed: int = 0, class_balanced: bool = True,
                  sub_splits_configs: Optional[List[Dict[str, Any]]] = None,
                  dataset_id: Optional[str] = None) -> List[HoldoutPart]:
    """``[training part, held-out part]`` of ``dataset``: ``holdout`` samples set aside for validation.

    The counterpart of torchdistill's ``split_dataset`` (same ``sub_splits_configs``: a ``transform`` and
    ``target_transform`` per part, each part on its own copy of the dataset), with a fixed number of held-out samples,
    class-balanced by default and drawn from ``seed`` alone (not the run's seed: every run of a study validates on the
    same images). ``python -m ttm_torchdistill --holdout N`` writes a config's split with it; in YAML::

        datasets:
          cifar100/split: &split !import_call
            key: 'ttm_torchdistill.datasets.holdout_split'
            init:
              kwargs:
                dataset: !import_call {key: 'torchvision.datasets.CIFAR100', init: {kwargs: {...}}}
                holdout: 5000
                seed: 0
                sub_splits_configs: [{transform: ...training...}, {transform: ...validation...}]
          cifar100/train: !access_by_index_or_key {data: *split, index_or_key: 0}
          cifar100/holdout: !access_by_index_or_key {data: *split, index_or_key: 1}

    :param dataset_id: for the log line only, as in torchdistill.
    """
    held = holdout_indices(getattr(dataset, 'targets', None), len(dataset), int(holdout), seed, class_balanced)
    held_set = set(held)
    kept = [i for i in range(len(dataset)) if i not in held_set]
    logger.info(f'Holding out {len(held)} of the {len(dataset)} samples of {dataset_id or "the training set"} for '
                f'validation (seed {seed}{", class-balanced" if class_balanced else ""})')
    configs = sub_splits_configs or [dict(), dict()]
    if len(configs) != 2:
        raise ValueError(f'sub_splits_configs: expected 2 (training part, held-out part), got {len(configs)}')
    parts = []
    for indices, config in zip((kept, held), configs):
        unknown = sorted(set(config or dict()) - {'transform', 'target_transform'})
        if unknown:
            raise ValueError(f'sub_splits_configs: unknown keys {unknown}; expected transform, target_transform')
        copy_ = copy.deepcopy(dataset) if config else dataset
        for name in ('transform', 'target_transform'):
            if (config or dict()).get(name) is not None:
                setattr(copy_, name, config[name])
        parts.append(HoldoutPart(copy_, indices))
    return parts
