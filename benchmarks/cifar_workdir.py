"""The working folder the runner benchmarks share: generated CIFAR-100 files and a random teacher checkpoint.

Imported by the scripts beside it (``python benchmarks/<script>.py`` puts this folder on ``sys.path``); it imports
torch and the test suite's data writer only when called, after the script has set up ``sys.path``.
"""
import os
from pathlib import Path
from typing import Optional


def cifar_workdir(workdir: str, num_train: int, num_test: int, threads: Optional[int]) -> Path:
    """Make ``workdir`` the current folder, with CIFAR-100 files of ``num_train``/``num_test`` images under ``data/``.

    Existing data is kept (a rerun with ``--reuse_cache`` must see the images its cache was built on). torchvision
    checks the real files by md5; the generated ones have other sums, so the check becomes an existence test here
    (in this process only).
    """
    import torch
    import torchvision.datasets.cifar as cifar

    from runner_support import write_tiny_cifar100

    if threads:
        torch.set_num_threads(threads)
    cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    if not (work / 'data' / 'cifar-100-python' / 'train').is_file():
        write_tiny_cifar100(str(work / 'data'), num_train=num_train, num_test=num_test, seed=0)
    return work


def random_teacher(work: Path, name: str = 'resnet32x4') -> Path:
    """A checkpoint of the CIFAR model ``name`` with seed-1 random weights (timing does not need a trained one)."""
    import torch

    from ttm_torchdistill.models import cifar_resnet

    path = work / f'teacher_{name}_random.pt'
    if not path.is_file():
        torch.manual_seed(1)
        torch.save({'model': getattr(cifar_resnet, name)(num_classes=100).state_dict()}, path)
    return path
