"""Helpers of the tracker tests: a zero loss term that can kill its process at a chosen step, the tiny run folder,
and readers of what each tracker wrote (each with the tracker's own reader)."""
import os
import signal
import time

from torch import nn
from ttm_torchdistill._registry import mid_level_loss

import runner_support as support

CONFIG = os.path.join(support.CONFIG_DIR, 'runner_tiny_track.yaml')


@mid_level_loss('test_track_probe')
class ProbeLoss(nn.Module):
    """A zero loss counting its calls; at call ``$TTM_TEST_KILL_AT_CALL`` (1-indexed, over the process) it waits
    ``$TTM_TEST_KILL_WAIT`` seconds (so that trackers' background writers catch up, as time passes in a real run)
    and SIGKILLs its process: a kill in the middle of an epoch."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, student_io_dict, teacher_io_dict, targets=None, *args, **kwargs):
        self.calls += 1
        if os.environ.get('TTM_TEST_KILL_AT_CALL') == str(self.calls):
            time.sleep(float(os.environ.get('TTM_TEST_KILL_WAIT', '1.5')))
            os.kill(os.getpid(), signal.SIGKILL)
        return (0.0 * student_io_dict['.']['output'].sum()).abs()  # +0.0 in the log lines


def prepare_folder(folder: str) -> str:
    """``folder`` with the teacher checkpoint and the generated CIFAR-100 (40 training, 20 test images)."""
    support.prepare_tiny_run_folder(folder)
    # the teacher of width 16 of prepare_tiny_run_folder has 10 classes: this config's has 100 and width 8
    import torch
    torch.manual_seed(0)
    torch.save({'model': support.TinyBNNet(100, width=8).state_dict()}, os.path.join(folder, 'teacher.pt'))
    support.write_tiny_cifar100(os.path.join(folder, 'data', 'cifar100'))
    return folder
