"""Test-only helpers for the runner tests: tiny models (test-only registry keys), tiny datasets, a tiny CIFAR-100.

Imported by the runner tests and, in subprocess runs, by configs through ``dependencies: [{name: runner_support}]``
(the ``tests`` folder is put on ``PYTHONPATH``).
"""
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ttm_torchdistill._registry import mid_level_loss, model, pre_epoch_process
from ttm_torchdistill.datasets import CIFAR100Format

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, 'tests')
CONFIG_DIR = os.path.join(TESTS_DIR, 'configs')


@model('test_runner_tiny_bn_net')
class TinyBNNet(nn.Module):
    """conv3x3 -> BatchNorm -> ReLU -> global average pool -> linear (has BatchNorm buffers)."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


@model('test_runner_tiny_linear_net')
class TinyLinearNet(nn.Module):
    """Flatten -> linear -> ReLU -> linear: no BatchNorm, so DDP equals one process on the global batch."""

    def __init__(self, num_classes: int = 10, in_features: int = 3 * 8 * 8, hidden: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@model('test_runner_nan_net')
class NaNAfterNet(TinyLinearNet):
    """Outputs NaN from its ``nan_from_call``-th forward in train mode on (to test the non-finite-loss stop)."""

    def __init__(self, num_classes: int = 10, nan_from_call: int = 3, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.nan_from_call = nan_from_call
        self.calls = 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.nan_from_call:
                out = out * float('nan')
        return out


@model('test_runner_worse_after_net')
class WorseAfterNet(TinyBNNet):
    """TinyBNNet that, in eval mode and after ``worse_from_call`` training forwards, predicts its last class only.

    With the tiny datasets' labels (``i % 10``) and ``num_classes: 11`` its validation accuracy is then 0: the best
    epoch is an early one, so best and last weights differ.
    """

    def __init__(self, num_classes: int = 11, width: int = 8, worse_from_call: int = 3):
        super().__init__(num_classes=num_classes, width=width)
        self.worse_from_call = worse_from_call
        self.calls = 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
        elif self.calls >= self.worse_from_call:
            out = torch.zeros_like(out)
            out[:, -1] = 1.0
        return out


@model('test_runner_tiny_dropout_net')
class TinyDropoutNet(TinyBNNet):
    """TinyBNNet with dropout before the classifier: each rank's dropout masks come from its own torch generator."""

    def __init__(self, num_classes: int = 10, width: int = 8, p: float = 0.5):
        super().__init__(num_classes=num_classes, width=width)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


class TinyTensorDataset(Dataset):
    """``num_samples`` random images (fixed by ``seed``) with labels ``i % num_classes``; optional per-item delay."""

    def __init__(self, num_samples: int = 32, image_size: int = 8, num_classes: int = 10, seed: int = 0,
                 delay_s: float = 0.0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(num_samples, 3, image_size, image_size, generator=generator)
        self.targets = [i % num_classes for i in range(num_samples)]
        self.classes = [f'class_{i}' for i in range(num_classes)]  # as torchvision's datasets (CRDDatasetWrapper)
        self.delay_s = delay_s

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        if self.delay_s:
            import time
            time.sleep(self.delay_s)
        return self.images[index], self.targets[index]


class ReadRecordingCIFAR100(CIFAR100Format):
    """The plugin's own-format CIFAR-100, appending ``<split> build`` and ``<split> read`` lines to
    ``$TTM_TEST_READS`` (O_APPEND: the file's order is the order of events) when it is built and read."""

    def _record(self, event: str) -> None:
        fd = os.open(os.environ['TTM_TEST_READS'], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f'{"train" if self.train else "test"} {event}\n'.encode())
        finally:
            os.close(fd)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._record('build')

    def __getitem__(self, index):
        self._record('read')
        return super().__getitem__(index)


def every_index_sampler(dataset, **kwargs):
    """SequentialSampler accepting (and ignoring) DistributedSampler's kwargs such as ``shuffle``."""
    return torch.utils.data.SequentialSampler(dataset)


def write_tiny_cifar100(root: str, num_train: int = 40, num_test: int = 20, seed: int = 0,
                        learnable_classes: int = 0) -> str:
    """Write ``root/cifar-100-python/{train,test,meta}`` in torchvision's on-disk format; returns ``root``.

    Labels cycle through 0..99 so every split has several classes; pixels are random. With ``learnable_classes``
    K > 0, labels cycle through 0..K-1 instead and each image is its class's colour plus noise (a task a tiny model
    learns in an epoch or two). The files' md5 differ from the real archive's, so torchvision's integrity check must
    be bypassed by the test (and only that).
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(learnable_classes, 3)) if learnable_classes else None
    folder = os.path.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    for name, count in (('train', num_train), ('test', num_test)):
        fine = [i % (learnable_classes or 100) for i in range(count)]
        if learnable_classes:
            planes = np.repeat(colours[fine][:, :, None], 32 * 32, axis=2).reshape(count, -1)
            data = np.clip(planes + rng.normal(0, 40, size=planes.shape), 0, 255).astype(np.uint8)
        else:
            data = rng.integers(0, 256, size=(count, 3 * 32 * 32), dtype=np.uint8)
        entry = {'filenames': [f'{name}_{i}.png' for i in range(count)], 'batch_label': f'tiny {name}',
                 'fine_labels': fine, 'coarse_labels': [label // 5 for label in fine], 'data': data}
        with open(os.path.join(folder, name), 'wb') as fp:
            pickle.dump(entry, fp)
    meta = {'fine_label_names': [f'class_{i}' for i in range(100)],
            'coarse_label_names': [f'super_{i}' for i in range(20)]}
    with open(os.path.join(folder, 'meta'), 'wb') as fp:
        pickle.dump(meta, fp)
    return root


def write_tiny_cifar10(root: str, num_train: int = 50, num_test: int = 20, seed: int = 0) -> str:
    """Write ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` in torchvision's on-disk format
    (the training images spread over the five batches, labels cycling through 0..9); returns ``root``."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    train = np.array_split(np.arange(num_train), 5)
    for name, indices in [(f'data_batch_{i + 1}', part) for i, part in enumerate(train)] + \
            [('test_batch', np.arange(num_test))]:
        entry = {'batch_label': name, 'labels': [int(i) % 10 for i in indices],
                 'data': rng.integers(0, 256, size=(len(indices), 3 * 32 * 32), dtype=np.uint8),
                 'filenames': [f'{name}_{i}.png' for i in indices]}
        with open(os.path.join(folder, name), 'wb') as fp:
            pickle.dump(entry, fp)
    with open(os.path.join(folder, 'batches.meta'), 'wb') as fp:
        pickle.dump({'label_names': [f'class_{i}' for i in range(10)], 'num_cases_per_batch': num_train // 5}, fp)
    return root


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def subprocess_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for CLI subprocesses: this worktree's package and ``tests`` importable, one thread."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([REPO_ROOT, TESTS_DIR] + [p for p in [env.get('PYTHONPATH')] if p])
    env['OMP_NUM_THREADS'] = '1'
    env.update(extra or dict())
    return env


def run_cli(args: List[str], cwd: str, timeout: float = 120, extra_env=None) -> subprocess.CompletedProcess:
    """Run ``python -m ttm_torchdistill ARGS`` in ``cwd``."""
    return subprocess.run([sys.executable, '-m', 'ttm_torchdistill'] + args, cwd=cwd, env=subprocess_env(extra_env),
                          capture_output=True, text=True, timeout=timeout)


@pre_epoch_process('test_runner_dump_pre_epoch_process')
def dump_student_pre_epoch_process(self, epoch=None, **kwargs):
    """eval_teacher_and_set_loss_epoch, then save this rank's student and teacher states
    (``params_rank{r}_epoch{e}.pt``, ``teacher_rank{r}_epoch{e}.pt``)."""
    from torch import distributed as dist
    from ttm_torchdistill.processes import eval_teacher_and_set_loss_epoch
    eval_teacher_and_set_loss_epoch(self, epoch=epoch, **kwargs)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    student = self.student_model.module if hasattr(self.student_model, 'module') else self.student_model
    torch.save({k: v.detach().clone() for k, v in student.state_dict().items()},
               f'params_rank{rank}_epoch{epoch}.pt')
    torch.save({k: v.detach().clone() for k, v in self.teacher_model.state_dict().items()},
               f'teacher_rank{rank}_epoch{epoch}.pt')


@mid_level_loss('test_runner_epoch_recorder')
class EpochRecorderLoss(nn.Module):
    """A zero loss recording the epochs handed to ``set_epoch`` (tests the pre-epoch hand-off)."""

    def __init__(self, student_module_path: str = '.', student_module_io: str = 'output'):
        super().__init__()
        self.student_module_path, self.student_module_io = student_module_path, student_module_io
        self.epochs = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def forward(self, student_io_dict, teacher_io_dict, targets=None, *args, **kwargs):
        return 0.0 * student_io_dict[self.student_module_path][self.student_module_io].sum()


@pre_epoch_process('test_runner_exit_at_epoch')
def exit_at_epoch_pre_epoch_process(self, epoch=None, **kwargs):
    """eval_teacher_and_set_loss_epoch; then, when ``$TTM_TEST_EXIT_AT_EPOCH`` equals the 0-indexed epoch, end the
    process at once (``os._exit``, no clean-up): a kill right after the previous epoch's checkpoints were written."""
    from ttm_torchdistill.processes import eval_teacher_and_set_loss_epoch
    if os.environ.get('TTM_TEST_EXIT_AT_EPOCH') == str(epoch):
        os._exit(3)
    eval_teacher_and_set_loss_epoch(self, epoch=epoch, **kwargs)


@pre_epoch_process('test_runner_rank_draws')
def rank_draws_pre_epoch_process(self, epoch=None, **kwargs):
    """eval_teacher_and_set_loss_epoch after drawing ``rank + 1`` numbers from the python, numpy and torch generators
    (ranks that draw differently, as with uneven shards or data-dependent augmentation); then, when
    ``$TTM_TEST_KILL_AT_EPOCH`` equals the 0-indexed epoch, SIGKILL this process (the previous epoch's checkpoints
    are written: rank 0 writes them before the end-of-epoch barrier)."""
    import random
    import signal
    from torch import distributed as dist
    from ttm_torchdistill.processes import eval_teacher_and_set_loss_epoch
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if os.environ.get('TTM_TEST_KILL_AT_EPOCH') == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)
    for _ in range(rank + 1):
        random.random()
    np.random.rand(rank + 1)
    torch.rand(rank + 1)
    eval_teacher_and_set_loss_epoch(self, epoch=epoch, **kwargs)


@mid_level_loss('test_runner_stateful_embed_loss')
class StatefulEmbedLoss(nn.Module):
    """``0.01 * mean(embed**2)`` of the student's auxiliary embedding (so its head trains), counting its calls in a
    buffer (loss state that an exact ``--resume`` must restore)."""

    def __init__(self, student_module_path: str = 'embed', student_module_io: str = 'output'):
        super().__init__()
        self.student_module_path, self.student_module_io = student_module_path, student_module_io
        self.register_buffer('calls', torch.zeros((), dtype=torch.int64))

    def forward(self, student_io_dict, teacher_io_dict, targets=None, *args, **kwargs):
        self.calls += 1
        return 0.01 * student_io_dict[self.student_module_path][self.student_module_io].pow(2).mean()


def kill_after_first_checkpoint(folder: str, args: List[str], last: str, timeout: float = 240) -> None:
    """Start ``python -m ttm_torchdistill ARGS`` in ``folder`` and SIGKILL it as soon as its last-epoch checkpoint
    ``last`` (relative to ``folder``) exists, as a user's kill or the OOM killer would; fails if the run ended first."""
    process = subprocess.Popen([sys.executable, '-m', 'ttm_torchdistill'] + args, cwd=folder, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while not os.path.exists(os.path.join(folder, last)) and process.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, 'the run ended before it could be killed'


def prepare_tiny_run_folder(folder: str) -> str:
    """Create ``folder`` with the ``teacher.pt`` the tiny configs read (a seeded TinyBNNet of width 16)."""
    os.makedirs(folder)
    torch.manual_seed(0)
    torch.save({'model': TinyBNNet(10, width=16).state_dict()}, os.path.join(folder, 'teacher.pt'))
    return folder


def cli_ok(capsys, args: List[str]) -> str:
    """Run ``python -m ttm_torchdistill ARGS`` in this process expecting success; return its stdout."""
    from ttm_torchdistill import cli
    code = cli.main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    return captured.out


def cli_error(capsys, args: List[str]) -> str:
    """Run the command line expecting a user error: exit 1, one ``error:`` line on stderr, no traceback."""
    from ttm_torchdistill import cli
    code = cli.main(args)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1 and 'Traceback' not in captured.err and len(lines) == 1, captured.err
    assert lines[0].startswith('error: '), lines[0]
    return lines[0]
