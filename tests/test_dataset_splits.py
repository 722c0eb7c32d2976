"""A validation split carved from the training set in torchdistill's vocabulary (``split_dataset`` anchored once,
its parts named by two dataset ids through aliases): the runner builds the split once, so the parts are disjoint
and cover the source, seeded or not, on torchdistill's loader, under ``--smoke`` and under torchrun; ``--set`` where
the split is defined reaches both parts; a missing data folder is named.

The config is the tests' own (``tests/configs/torchdistill_vocabulary/random_split_ce.yaml``), written in the layout
of torchdistill 1.x's ``*-hyperparameter_tuning.yaml`` samples, on CIFAR-10 files generated in torchvision's format.
"""
import json
import os
import subprocess
import sys

import pytest
from torchdistill.common.yaml_util import load_yaml_file

import runner_support as support
from ttm_torchdistill.run.config.loading import load_config
from ttm_torchdistill.run.data.real_datasets import build_real_datasets
from ttm_torchdistill.run.data.synthetic import build_smoke_datasets

CONFIG = os.path.join(support.CONFIG_DIR, 'torchdistill_vocabulary', 'random_split_ce.yaml')
TRAIN, VAL = 'cifar10/sub_train', 'cifar10/sub_val'
UNSEEDED = 'datasets.cifar10_sub_splits.init.kwargs.generator_seed=null'


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    support.write_tiny_cifar10('data/cifar10', num_train=50, num_test=20)
    return tmp_path


def _parts(overrides=()):
    datasets = build_real_datasets(load_config(CONFIG, list(overrides)))
    return list(datasets[TRAIN].indices), list(datasets[VAL].indices)


def _assert_partition(train, val, total):
    assert not set(train) & set(val), f'{len(set(train) & set(val))} validation images are also training images'
    assert sorted(train + val) == list(range(total))


@pytest.mark.parametrize('overrides', [[], [UNSEEDED]], ids=['generator_seed-42', 'generator_seed-null'])
def test_the_split_is_built_once_so_its_parts_are_disjoint_and_cover_the_source(data, overrides):
    train, val = _parts(overrides)
    assert (len(train), len(val)) == (40, 10)
    _assert_partition(train, val, 50)


def test_a_seeded_split_is_the_one_torchdistill_builds_from_the_same_file(data):
    theirs = load_yaml_file(CONFIG)['datasets']
    assert _parts() == (list(theirs[TRAIN].indices), list(theirs[VAL].indices))


def test_set_where_the_split_is_defined_reaches_both_parts(data):
    train, val = _parts(['datasets.cifar10_sub_splits.init.kwargs.lengths=[0.5, 0.5]'])
    assert (len(train), len(val)) == (25, 25)
    _assert_partition(train, val, 50)
    # through an alias, the override changes that place only (the documented way to give one use its own value)
    train, val = _parts(['datasets.cifar10/sub_train.data.init.kwargs.lengths=[0.5, 0.5]'])
    assert (len(train), len(val)) == (25, 10)


def test_a_missing_data_folder_names_the_dataset_class_and_its_root(data, capsys):
    line = support.cli_error(capsys, ['--config', CONFIG, '--device', 'cpu', '--set',
                                      'datasets.cifar10_sub_splits._root=./elsewhere'])
    folder = os.path.abspath('elsewhere')
    assert line.startswith("error: dataset 'cifar10_sub_splits' (ttm_torchdistill.datasets.CIFAR10Format) could not be "
                           f"loaded from {folder}: ")
    assert line.endswith(f"expected {folder}/cifar-10-batches-py/ with your own files in CIFAR's format")


def test_smoke_splits_synthetic_data_with_the_configured_transforms(data):
    datasets = build_smoke_datasets(load_config(CONFIG), 10, {TRAIN}, train_samples=8, eval_samples=4)
    train, val = datasets[TRAIN], datasets[VAL]
    assert (len(train), len(val)) == (8, 4)
    # the parts of one split of the synthetic source, each cut to its smoke size
    _assert_partition(list(train.dataset.indices), list(val.dataset.indices), len(train.dataset.dataset))
    assert train[0][0].shape == val[0][0].shape == (3, 32, 32)  # CIFAR-sized, through each part's transform
    assert datasets['cifar10/test'][0][0].shape == (3, 32, 32)


def test_smoke_run_of_the_split_config(data, capsys):
    out = support.cli_ok(capsys, ['--config', CONFIG, '--smoke'])
    assert 'has no init.kwargs.transform' not in out and 'Smoke run of' in out


def test_every_rank_splits_alike_under_torchrun(data):
    """Unseeded, the split draws from the run's generator, seeded alike on every rank: the ranks' parts are equal."""
    probed = os.path.join(data, 'probed.yaml')  # the same config, with the probe that records each rank's parts
    with open(CONFIG) as source, open(probed, 'w') as target:
        target.write("dependencies:\n  - name: 'distributed_probes'\n" + source.read())
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={support.free_port()}', '-m', 'ttm_torchdistill', '--config', probed, '--device', 'cpu',
               '--world_size', '2', '--seed', '3', '--set', UNSEEDED]
    result = subprocess.run(command, cwd=data, env=support.subprocess_env({'TTM_TEST_PROBE': 'split_indices'}),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = []
    for rank in (0, 1):
        with open(os.path.join(data, f'split_indices_rank{rank}.json')) as fp:
            ranks.append(json.load(fp))
    assert ranks[0] == ranks[1]
    _assert_partition(ranks[0][TRAIN], ranks[0][VAL], 50)
