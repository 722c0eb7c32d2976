"""Per-sample random streams of torchdistill's loaders (``run/data/sample_streams.py``): the batches of an epoch
depend on (run seed, epoch, sample index) only, not on worker processes, persistence or what came before.

The runner-level checks (the shipped config's loader settings, SIGKILL and ``--resume``, torchrun) are in
``test_resume_with_workers.py``.
"""
import gc
import logging
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, RandomSampler

from ttm_torchdistill.run.data.sample_streams import (
    EpochBatches, SeededSamples, install_seeded_loaders, sample_seed, seeded_loader, set_loader_epoch,
)


@pytest.fixture(autouse=True)
def _no_garbage_to_fork():
    """Loader workers are forked from the test process: an unreachable gloo process group left by an earlier test
    (in-process distributed tests) would be collected in the child, whose destructor waits for threads that were not
    forked, and the worker would hang. Collect it here, in the parent."""
    gc.collect()


class DrawingDataset(Dataset):
    """Each item draws from torch, python's random and numpy, as augmentations and CRD's negatives do."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.tensor([float(index), torch.rand(()).item(), random.random(), float(np.random.rand())])


def _loader(num_workers=0, persistent=False, shuffle=True):
    dataset = DrawingDataset()
    sampler = RandomSampler(dataset) if shuffle else torch.utils.data.SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=num_workers,
                      persistent_workers=persistent)


def _epochs(loader, epochs, seed=0):
    torch.manual_seed(seed)  # the run seed's generator draws the RandomSampler's order, as in the runner
    loader = seeded_loader(loader, seed)
    batches = []
    for epoch in epochs:
        loader.batch_sampler.set_epoch(epoch)
        batches.append(torch.cat(list(loader)))
    return batches


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_sample_seed_depends_on_each_part_and_is_64_bit():
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 3 * 3 * 50
    assert all(0 <= seed < 2 ** 64 for seed in seeds)
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    assert sample_seed(-1, 0, 0) == sample_seed(2 ** 64 - 1, 0, 0)  # a negative run seed is taken mod 2**64


@pytest.mark.parametrize('workers,persistent', [(1, False), (2, False), (2, True)],
                         ids=['1-worker', '2-workers', '2-persistent-workers'])
def test_batches_are_the_same_whatever_the_workers(workers, persistent):
    in_main = _epochs(_loader(), range(3))
    assert _same(_epochs(_loader(workers, persistent), range(3)), in_main)
    assert not torch.equal(in_main[0], in_main[1])  # epochs draw afresh


@pytest.mark.parametrize('persistent', [False, True], ids=['workers', 'persistent-workers'])
def test_a_resumed_process_draws_what_the_uninterrupted_one_drew(persistent):
    """Epochs 1 and 2 of a new loader (the resumed process, global generator restored) equal the uninterrupted
    loader's; with persistent workers torch would draw a new base seed here and restart the workers' streams."""
    torch.manual_seed(0)
    uninterrupted = seeded_loader(_loader(2, persistent), 0)
    batches, state_after_epoch_0 = [], None
    for epoch in range(3):
        uninterrupted.batch_sampler.set_epoch(epoch)
        batches.append(torch.cat(list(uninterrupted)))
        if epoch == 0:
            state_after_epoch_0 = torch.get_rng_state()
    torch.set_rng_state(state_after_epoch_0)
    resumed = seeded_loader(_loader(2, persistent), 0)
    for epoch in (1, 2):
        resumed.batch_sampler.set_epoch(epoch)
        assert torch.equal(torch.cat(list(resumed)), batches[epoch]), f'epoch {epoch}'


def test_another_run_seed_draws_other_augmentations():
    unshuffled = _epochs(_loader(shuffle=False), [0], seed=0)[0]
    other = _epochs(_loader(shuffle=False), [0], seed=1)[0]
    assert torch.equal(unshuffled[:, 0], other[:, 0]) and not torch.equal(unshuffled[:, 1:], other[:, 1:])


def test_loading_in_the_main_process_leaves_its_generators_as_they_were():
    loader = seeded_loader(_loader(), 0)
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected = torch.rand(3), random.random(), np.random.rand()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    for index in range(12):
        loader.dataset[(0, index)]
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert np.random.rand() == expected[2]


def test_items_are_read_by_epoch_and_index():
    dataset = SeededSamples(DrawingDataset(), 0)
    assert torch.equal(dataset[(1, 3)], dataset[(1, 3)]) and not torch.equal(dataset[(1, 3)], dataset[(2, 3)])
    with pytest.raises(TypeError, match=r'SeededSamples: expected an \(epoch, index\) key from EpochBatches, got 3'):
        dataset[3]


def test_epoch_batches_tag_each_index_and_forward_the_sampler():
    loader = _loader(shuffle=False)
    batches = EpochBatches(loader.batch_sampler)
    batches.set_epoch(4)
    assert list(batches)[0] == [(4, 0), (4, 1), (4, 2), (4, 3)] and len(batches) == 3
    assert batches.sampler is loader.sampler


class _Box:
    def __init__(self, train, val):
        self.train_data_loader, self.val_data_loader = train, val


def _distributed_loader(seed=None):
    dataset = DrawingDataset()
    kwargs = {} if seed is None else {'seed': seed}
    return DataLoader(dataset, batch_size=4, sampler=DistributedSampler(dataset, num_replicas=2, rank=0, **kwargs))


@pytest.mark.parametrize('configured', [None, 11], ids=['unset-takes-run-seed', 'configured-kept'])
def test_distributed_sampler_seed_comes_from_the_run_unless_configured(configured):
    """torchdistill builds DistributedSampler(dataset, **sampler.kwargs): without a seed there, torch's default 0
    would give every --seed the same order."""
    box = _Box(_distributed_loader(configured), _distributed_loader())
    stage = {'train_data_loader': {'sampler': {'kwargs': None if configured is None else {'seed': configured}}},
             'val_data_loader': {'sampler': {'kwargs': None}}}
    seeds = install_seeded_loaders(box, stage, 'train', run_seed=7)
    expected = 7 if configured is None else configured
    assert seeds == {'train_data_loader': expected, 'val_data_loader': 7}
    assert box.train_data_loader.batch_sampler.sampler.seed == expected
    assert isinstance(box.train_data_loader.dataset, SeededSamples)
    again = box.train_data_loader
    install_seeded_loaders(box, stage, 'train', run_seed=7)
    assert box.train_data_loader is again  # rebuilt once


def test_set_loader_epoch_tags_both_loaders():
    box = _Box(_loader(), _loader(shuffle=False))
    install_seeded_loaders(box, {}, 'train', run_seed=0)
    set_loader_epoch(box, 3)
    assert box.train_data_loader.batch_sampler.epoch == 3 and box.val_data_loader.batch_sampler.epoch == 3


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(range(4))


def test_an_iterable_dataset_is_left_as_built_with_a_warning(caplog):
    loader = DataLoader(_Stream(), batch_size=2)
    box = _Box(loader, None)
    with caplog.at_level(logging.WARNING, logger='ttm_torchdistill.run'):
        assert install_seeded_loaders(box, {}, 'train.stage2', run_seed=0) == {}
    assert box.train_data_loader is loader
    assert ('train.stage2.train_data_loader: an iterable dataset draws its own samples; its random draws follow '
            "torch's worker seeding, so --resume and runs with another num_workers are not bitwise identical") \
        in caplog.text
