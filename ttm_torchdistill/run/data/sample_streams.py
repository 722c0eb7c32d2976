"""Per-sample random streams for torchdistill's data loaders: the same augmentation whatever the worker processes.

torch's ``DataLoader`` seeds each worker process once per iterator from a base seed drawn from the main process's
generator. With ``persistent_workers: True`` (every shipped config) the base seed is drawn once, at the first
epoch, and each worker's augmentation stream then runs on across epochs; a ``--resume``\\ d process draws a new base
seed from the restored generator at its first epoch and restarts the workers' streams, so the resumed run trains on
other crops and flips than the uninterrupted one. The streams also depend on the number of workers, which the
runner caps by the cores of the machine (:mod:`~ttm_torchdistill.run.machine.fit_to_machine`).

Here every sample draws its random augmentation from streams seeded by ``(run seed, epoch, sample index)``
(:func:`sample_seed`), in whichever process loads it: torch's CPU generator, python's ``random`` and numpy's legacy
global state (torchvision's transforms draw from torch, RepDistiller-style CRD negatives from numpy). A run then
trains on the same batches with 0, 2 or 8 workers, persistent or not, and ``--resume`` continues bit for bit. In
the main process (``num_workers: 0``) the global states are put back after each batch, so the order, dropout and
everything else drawn there is the same as with workers. The loader's own base seed comes from a private generator
for the same reason (with persistent workers it is drawn at the first epoch only).

The runner rebuilds each torchdistill loader once (:func:`install_seeded_loaders`): the dataset wrapped in
:class:`SeededSamples`, the batch sampler in :class:`EpochBatches` (which tags every index with the epoch), every
other option as built. Under torchrun a ``DistributedSampler`` whose config gives no ``seed`` gets the run seed
(torch's default is 0 for every run, so every ``--seed`` would read the same order), as the device data path does.
"""
import logging
import random
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, get_worker_info

logger = logging.getLogger('ttm_torchdistill.run')

#: Recorded in the run identity: checkpoints of a run whose loaders drew otherwise do not resume bitwise.
STREAMS_VERSION = 'per-sample-1'
#: The loaders of a box that are rebuilt (the test loader is built after training and draws nothing that matters).
BOX_LOADERS = ('train_data_loader', 'val_data_loader')

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One step of the SplitMix64 mixer (Steele, Lea and Flood, OOPSLA 2014): a bijection of 64-bit integers whose
    outputs for consecutive inputs look independent."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def sample_seed(run_seed: int, epoch: int, index: int) -> int:
    """The 64-bit seed of sample ``index`` in epoch ``epoch`` (0-indexed, over all stages) of the run ``run_seed``."""
    return _splitmix64(_splitmix64(_splitmix64(run_seed & _MASK64) ^ (epoch & _MASK64)) ^ (index & _MASK64))


def seed_global_streams(seed: int) -> None:
    """Seed torch's CPU generator, python's ``random`` and numpy's global state (with the low 32 bits) with ``seed``.

    ``torch.default_generator.manual_seed`` rather than ``torch.manual_seed``: the latter also visits every
    accelerator's generators (~150 us on a CUDA build); per-sample transforms run on the CPU.
    """
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)


class _GlobalStreamsKept:
    """Puts torch's CPU generator, python's ``random`` and numpy's global state back as they were on entry."""

    def __enter__(self):
        self.states = torch.get_rng_state(), random.getstate(), np.random.get_state()

    def __exit__(self, *exc_info):
        torch_state, python_state, numpy_state = self.states
        torch.set_rng_state(torch_state)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        return False


class SeededSamples(Dataset):
    """A map-style dataset whose item ``(epoch, index)`` is ``dataset[index]`` drawn with :func:`sample_seed`.

    :param dataset: the dataset the loader was built on (after torchdistill's dataset wrapper).
    :param run_seed: the run's seed (:mod:`~ttm_torchdistill.run.machine.seeding`).
    """

    def __init__(self, dataset: Dataset, run_seed: int):
        self.dataset, self.run_seed = dataset, int(run_seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, key: Tuple[int, int]):
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(f'SeededSamples: expected an (epoch, index) key from EpochBatches, got {key!r}')
        epoch, index = key
        seed_global_streams(sample_seed(self.run_seed, epoch, index))
        return self.dataset[index]

    def __getitem__(self, key: Tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: List[Tuple[int, int]]) -> List[Any]:
        # DataLoader's fetcher hands over a whole batch: in the main process the global states are saved and put
        # back once per batch (numpy's costs ~0.15 ms), in a worker process nothing else draws from them.
        if get_worker_info() is not None:
            return [self._load(key) for key in keys]
        with _GlobalStreamsKept():
            return [self._load(key) for key in keys]


class EpochBatches:
    """The loader's batch sampler, each index tagged with the epoch set by the runner: ``[(epoch, index), ...]``.

    ``sampler`` is the wrapped batch sampler's, so torchdistill's pre-epoch process reaches a ``DistributedSampler``
    through ``loader.batch_sampler.sampler.set_epoch`` as before.
    """

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self.epoch = 0

    @property
    def sampler(self):
        return self.batch_sampler.sampler

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        epoch = self.epoch  # read once: the main process iterates batches while the next epoch is not yet set
        for batch in self.batch_sampler:
            yield [(epoch, int(index)) for index in batch]


def _private_generator(run_seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(_splitmix64(run_seed & _MASK64))
    return generator


def seeded_loader(loader: DataLoader, run_seed: int) -> DataLoader:
    """``loader`` rebuilt with :class:`SeededSamples` and :class:`EpochBatches` (every other option kept)."""
    options: Dict[str, Any] = dict(
        num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context, generator=_private_generator(run_seed),
        persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        options['prefetch_factor'] = loader.prefetch_factor
    if getattr(loader, 'pin_memory_device', ''):
        options['pin_memory_device'] = loader.pin_memory_device
    if hasattr(loader, 'in_order'):  # torch >= 2.6
        options['in_order'] = loader.in_order
    return DataLoader(SeededSamples(loader.dataset, run_seed), batch_sampler=EpochBatches(loader.batch_sampler),
                      **options)


def _unsupported(loader: DataLoader) -> Optional[str]:
    if isinstance(loader.dataset, IterableDataset):
        return 'an iterable dataset draws its own samples'
    if loader.batch_sampler is None:
        return 'batch_size: null (no batch sampler)'
    return None


def _seed_distributed_sampler(loader: DataLoader, loader_config: Dict[str, Any], run_seed: int) -> Optional[int]:
    """A ``DistributedSampler`` without a configured ``seed`` takes the run seed; returns the sampler's seed."""
    sampler = getattr(loader.batch_sampler, 'sampler', None)
    if not isinstance(sampler, DistributedSampler):
        return None
    configured = ((loader_config.get('sampler') or dict()).get('kwargs') or dict()).get('seed')
    if configured is None:
        sampler.seed = int(run_seed)
    return int(sampler.seed)


def install_seeded_loaders(box, stage_config: Dict[str, Any], where: str, run_seed: int) -> Dict[str, Optional[int]]:
    """Rebuild the box's training and validation loaders once (after a stage change too); returns the
    ``DistributedSampler`` seed of each (None without one).

    :param stage_config: the ``train:`` block of the box's current stage, for the samplers' configured ``seed``.
    :param where: its config path, for the message about a loader that cannot be rebuilt.
    """
    seeds: Dict[str, Optional[int]] = dict()
    for name in BOX_LOADERS:
        loader = getattr(box, name, None)
        if not isinstance(loader, DataLoader):
            continue
        if isinstance(loader.batch_sampler, EpochBatches):
            seeds[name] = _seed_distributed_sampler(loader, stage_config.get(name) or dict(), run_seed)
            continue
        reason = _unsupported(loader)
        if reason is not None:
            logger.warning(f'{where}.{name}: {reason}; its random draws follow torch\'s worker seeding, so --resume '
                           f'and runs with another num_workers are not bitwise identical')
            continue
        seeds[name] = _seed_distributed_sampler(loader, stage_config.get(name) or dict(), run_seed)
        setattr(box, name, seeded_loader(loader, run_seed))
    return seeds


def set_loader_epoch(box, epoch: int) -> None:
    """Tag the samples the box's rebuilt loaders yield next with ``epoch`` (0-indexed, also right after a resume)."""
    for name in BOX_LOADERS:
        loader = getattr(box, name, None)
        if isinstance(loader, DataLoader) and isinstance(loader.batch_sampler, EpochBatches):
            loader.batch_sampler.set_epoch(epoch)
