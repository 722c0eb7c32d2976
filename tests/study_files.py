"""Test-only helpers for the study tests: a folder with the two tiny CIFAR-100 configs, their teacher, the tiny
CIFAR-100 and a study file over them."""
import contextlib
import io
import os
import shutil

import torch
import yaml

import runner_support as support

STUDY_CONFIGS = os.path.join(support.CONFIG_DIR, 'study')
#: The experiments of the two study configs once copied below ``configs/``.
KD, WTTM = 'cifar100/kd/tiny_from_tiny', 'cifar100/wttm/tiny_from_tiny'


def study_folder(folder: str) -> str:
    """Lay out ``folder`` (the study's base): configs/cifar100/{kd,wttm}/tiny_from_tiny.yaml, teacher.pt, the tiny
    CIFAR-100 under resource/dataset/cifar100. Returns ``folder``."""
    for method in ('kd', 'wttm'):
        os.makedirs(os.path.join(folder, 'configs', 'cifar100', method), exist_ok=True)
        shutil.copy(os.path.join(STUDY_CONFIGS, f'{method}.yaml'),
                    os.path.join(folder, 'configs', 'cifar100', method, 'tiny_from_tiny.yaml'))
    support.write_tiny_cifar100(os.path.join(folder, 'resource', 'dataset', 'cifar100'), num_train=40, num_test=20)
    torch.manual_seed(0)
    torch.save({'model': support.TinyBNNet(100, width=16).state_dict()}, os.path.join(folder, 'teacher.pt'))
    return folder


def write_study(folder: str, name: str = 'study.yaml', **keys) -> str:
    """A study file in ``folder`` (defaults: both configs, seeds 0 and 1, device data and an automatic teacher
    cache, one CPU and 1 GB per run); ``keys`` replace or add top-level keys (None deletes one)."""
    data = {'out': 'runs/tiny', 'configs': ['configs/cifar100/*/tiny_from_tiny.yaml'], 'seeds': [0, 1],
            'runtime': {'device_data': True, 'teacher_cache': 'auto'},
            'resources': {'gpus': 0, 'cpus': 1, 'mem_gb': 1, 'time_min': 10}}
    data.update(keys)
    data = {k: v for k, v in data.items() if v is not None}
    path = os.path.join(folder, name)
    with open(path, 'w') as fp:
        yaml.safe_dump(data, fp, sort_keys=False)
    return path


def student_weights(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)['model']


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def in_process(argv, main=None):
    """``(exit status, stdout, stderr)`` of ``python -m ttm_torchdistill study ...`` (or of ``main``) run in this
    process: a command that only reads or submits the plan needs no new interpreter."""
    from ttm_torchdistill.commands import study as study_cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = (main or study_cli.main)(argv)
    return code, out.getvalue(), err.getvalue()
