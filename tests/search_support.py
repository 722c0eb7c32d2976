"""Test-only helpers for the search tests: a study folder with a tiny CIFAR-100 of four classes (each its own colour
plus noise) and a search study file over the tiny WTTM config."""
import os
import pickle

import numpy as np
import yaml

import study_files

SPACE = {'train.criterion.kwargs.sub_terms.wttm.weight': {'low': 0.5, 'high': 16, 'log': True},
         'train.criterion.kwargs.sub_terms.wttm.criterion.kwargs.temperature': {'low': 1.0, 'high': 8.0}}


def write_learnable_cifar100(root: str, num_train: int = 48, num_test: int = 16) -> None:
    """``root/cifar-100-python`` in torchvision's format: labels cycle through 0..3, pixels are the class's colour
    plus noise."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(4, 3))
    folder = os.path.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    for name, count in (('train', num_train), ('test', num_test)):
        fine = [i % 4 for i in range(count)]
        planes = np.repeat(colours[fine][:, :, None], 32 * 32, axis=2).reshape(count, -1)
        data = np.clip(planes + rng.normal(0, 40, size=planes.shape), 0, 255).astype(np.uint8)
        entry = {'filenames': [f'{name}_{i}.png' for i in range(count)], 'batch_label': f'tiny {name}',
                 'fine_labels': fine, 'coarse_labels': [label // 5 for label in fine], 'data': data}
        with open(os.path.join(folder, name), 'wb') as fp:
            pickle.dump(entry, fp)
    meta = {'fine_label_names': [f'class_{i}' for i in range(100)],
            'coarse_label_names': [f'super_{i}' for i in range(20)]}
    with open(os.path.join(folder, 'meta'), 'wb') as fp:
        pickle.dump(meta, fp)


def search_folder(folder: str, **search) -> str:
    """The study folder of tests/study_files.py with the learnable data and ``study.yaml``: the WTTM config, 4
    trials of 2 epochs on 8 held-out images (pruning on), confirmed over seeds 0 and 1 (each run is a new process,
    some 10-25 s on a busy 2-core machine: 4 trials keep the test short). ``search`` replaces keys of
    ``search:``."""
    study_files.study_folder(folder)
    write_learnable_cifar100(os.path.join(folder, 'resource', 'dataset', 'cifar100'))
    keys = {'trials': 4, 'space': SPACE, 'seeds': [0], 'sampler_seed': 0, 'startup_trials': 4,
            'pruner': {'startup_trials': 1, 'warmup_epochs': 0}}
    keys.update(search)
    study_files.write_study(folder, configs=['configs/cifar100/wttm/tiny_from_tiny.yaml'], set=['train.num_epochs=2'],
                            runtime={'holdout': 8}, search=keys)
    return folder


def write_yaml(path: str, data: dict) -> None:
    with open(path, 'w') as fp:
        yaml.safe_dump(data, fp, sort_keys=False)
