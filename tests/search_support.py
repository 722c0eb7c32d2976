"""Test-only helpers for the search tests: a study folder with a tiny CIFAR-100 of four classes (each its own colour
plus noise) and a search study file over the tiny WTTM config."""
import os

import yaml

import runner_support as support
import study_files

SPACE = {'train.criterion.kwargs.sub_terms.wttm.weight': {'low': 0.5, 'high': 16, 'log': True},
         'train.criterion.kwargs.sub_terms.wttm.criterion.kwargs.temperature': {'low': 1.0, 'high': 8.0}}


def search_folder(folder: str, **search) -> str:
    """The study folder of tests/study_files.py with the learnable data and ``study.yaml``: the WTTM config, 4
    trials of 2 epochs on 8 held-out images (pruning on), confirmed over seeds 0 and 1 (each run is a new process,
    some 10-25 s on a busy 2-core machine: 4 trials keep the test short). ``search`` replaces keys of
    ``search:``."""
    study_files.study_folder(folder)
    support.write_tiny_cifar100(os.path.join(folder, 'resource', 'dataset', 'cifar100'), num_train=48, num_test=16,
                                learnable_classes=4)
    keys = {'trials': 4, 'space': SPACE, 'seeds': [0], 'sampler_seed': 0, 'startup_trials': 4,
            'pruner': {'startup_trials': 1, 'warmup_epochs': 0}}
    keys.update(search)
    study_files.write_study(folder, configs=['configs/cifar100/wttm/tiny_from_tiny.yaml'], set=['train.num_epochs=2'],
                            runtime={'holdout': 8}, search=keys)
    return folder


def write_yaml(path: str, data: dict) -> None:
    with open(path, 'w') as fp:
        yaml.safe_dump(data, fp, sort_keys=False)
