"""Test-only hooks for the study tests, imported by tests/configs/study/*.yaml through ``dependencies:``.

* The tiny CIFAR-100 of ``runner_support.write_tiny_cifar100`` is accepted by torchvision's reader: its md5
  check is reduced to "the file exists" (nothing else changes).
* ``test_study_hold_at_epoch`` (a pre-epoch process): ``eval_teacher_and_set_loss_epoch``, and, at the 0-indexed
  epoch ``$TTM_TEST_HOLD_EPOCH`` of the first process to get there, creates ``$TTM_TEST_HOLD_FILE`` (holding the
  process's Slurm job id) and waits there until the process is ended (or 300 s pass): a run that is still running
  after its first epoch, for a test to requeue. Later processes (the requeued attempt, other runs) pass through.
* The same pre-epoch process, for the crash tests: ``$TTM_TEST_CRASH_SIGNAL`` (``SEGV``, ``TERM``, ...) makes
  the runner send itself that signal before its first epoch; ``$TTM_TEST_ALLOCATE_MB`` makes it fill that many
  MiB (for a memory cgroup's OOM killer); ``$TTM_TEST_EPOCH_SLEEP_S`` makes each epoch that much longer (for
  time limits).
"""
import json
import os
import signal
import time

import torchvision.datasets.cifar as cifar

from ttm_torchdistill._registry import pre_epoch_process

cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)


@pre_epoch_process('test_study_hold_at_epoch')
def hold_at_epoch_pre_epoch_process(self, epoch=None, **kwargs):
    from ttm_torchdistill.processes import eval_teacher_and_set_loss_epoch
    eval_teacher_and_set_loss_epoch(self, epoch=epoch, **kwargs)
    crash_test_hooks(epoch)
    hold_file = os.environ.get('TTM_TEST_HOLD_FILE')
    if not hold_file or os.environ.get('TTM_TEST_HOLD_EPOCH') != str(epoch):
        return
    try:
        fd = os.open(hold_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    job = {'job_id': os.environ.get('SLURM_JOB_ID'), 'array_job_id': os.environ.get('SLURM_ARRAY_JOB_ID'),
           'array_task_id': os.environ.get('SLURM_ARRAY_TASK_ID'), 'pid': os.getpid(), 'cwd': os.getcwd()}
    with os.fdopen(fd, 'w') as fp:
        json.dump(job, fp)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.2)


def crash_test_hooks(epoch):
    """The crash and time-limit hooks of the module docstring (nothing without their environment variables)."""
    if os.environ.get('TTM_TEST_ALLOCATE_MB') and epoch == 0:
        filled = [b'\x01' * (1 << 20) for _ in range(int(os.environ['TTM_TEST_ALLOCATE_MB']))]
        time.sleep(60)  # the OOM killer ends it before this (filled stays referenced meanwhile)
        del filled
    if os.environ.get('TTM_TEST_CRASH_SIGNAL') and epoch == 0:
        os.kill(os.getpid(), getattr(signal, 'SIG' + os.environ['TTM_TEST_CRASH_SIGNAL']))
    if os.environ.get('TTM_TEST_EPOCH_SLEEP_S'):
        time.sleep(float(os.environ['TTM_TEST_EPOCH_SLEEP_S']))
