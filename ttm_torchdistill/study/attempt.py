"""One attempt of a run or a cache build: lock, command, log, outcome. Both executors call :func:`attempt`.

A run that has a last-epoch checkpoint continues from it (``--resume``), whatever ended the earlier attempt
(preemption, ``scontrol requeue``, node failure, time limit, Ctrl-C). Every attempt appends a header and the
command's output to ``console.log``, and the runner appends its log lines to ``run.log``: both keep every attempt.
An attempt ended by a signal or by Ctrl-C is *interrupted*, not failed: the next attempt continues.
"""
import os
import signal
import socket
import subprocess
import time
from typing import Dict, Optional

from . import locks, state
from .plan import Plan, Run
from .slurm_queue import QueueSnapshot
from .state import Task

#: Outcomes of :func:`attempt`.
DONE, FAILED, INTERRUPTED, LOCKED = 'done', 'failed', 'interrupted', 'locked'
#: Exit status of the runner for Ctrl-C (``error: interrupted``).
INTERRUPTED_STATUS = 130


def error_line(log_path: str, exit_code: int) -> str:
    """The command's ``error: ...`` line from the end of its console log, else its exit status."""
    try:
        with open(log_path, 'rb') as fp:
            fp.seek(max(os.path.getsize(log_path) - 65536, 0))
            lines = fp.read().decode('utf-8', 'replace').splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith('error: '):
            return line
        if line.startswith('=== attempt'):
            break
    return f'error: the command ended with exit status {exit_code} without an error line (see the log)'


def _header(argv, resume: bool, job_id: Optional[str]) -> str:
    job = f' Slurm job {job_id}' if job_id else ''
    what = 'resuming from the last checkpoint' if resume else 'starting'
    return (f'=== attempt at {time.strftime("%Y-%m-%d %H:%M:%S")} on {socket.gethostname()} pid {os.getpid()}{job}: '
            f'{what}\n=== {subprocess.list2cmdline(argv)}\n')


def command(task: Task, plan: Plan):
    """``(argv, resume)`` of the next attempt of ``task``."""
    if isinstance(task, Run):
        resume = os.path.isfile(task.last_ckpt)
        return task.argv(plan.python, resume), resume
    return task.build_argv(plan.python), False


def dependency_failure(task: Task) -> Optional[str]:
    """Why a run cannot start: its cache was not built (None when it has none or it is there)."""
    if isinstance(task, Run) and task.cache is not None and not state.is_done(task.cache):
        failed = state.failure(task.cache)
        reason = failed.get('error') if failed else 'it has not been built (no metadata.json)'
        return f'error: teacher cache {task.cache.key} failed: {reason} (log: {state.console_log(task.cache)})'
    return None


def attempt(task: Task, plan: Plan, env: Optional[Dict[str, str]] = None, job_id: Optional[str] = None,
            on_start=None, queue: Optional[QueueSnapshot] = None) -> str:
    """Run one attempt of ``task`` in the study's base folder; returns DONE, FAILED, INTERRUPTED or LOCKED.

    :param env: environment of the command (``CUDA_VISIBLE_DEVICES`` of the slot); default: this process's.
    :param job_id: the Slurm job id to record in the lock (default: from the environment).
    :param on_start: called with the ``subprocess.Popen`` of the command (to stop it on Ctrl-C).
    """
    if state.is_done(task):
        return DONE
    blocked = dependency_failure(task)
    if blocked is not None:
        os.makedirs(task.folder, exist_ok=True)
        state.record_failure(task, blocked, None)
        return FAILED
    lock, holder = locks.acquire(task.folder, plan.study.out_dir, queue or QueueSnapshot(), job_id)
    if lock is None:
        return LOCKED
    try:
        if state.is_done(task):  # finished by the process that held the lock a moment ago
            return DONE
        state.clear_failure(task)
        argv, resume = command(task, plan)
        log_path = state.console_log(task)
        header = _header(argv, resume, lock.record.get('job_id'))
        if lock.record.get('took_over'):
            header += f'=== took over the lock of {lock.record["took_over"]}\n'
        if isinstance(task, Run):
            with open(task.run_log, 'a') as run_log:
                run_log.write(header)
        with open(log_path, 'a') as log:
            log.write(header)
            log.flush()
            process = subprocess.Popen(argv, cwd=plan.study.base, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
            if on_start is not None:
                on_start(process)
            code = _wait(process)
            log.write(f'=== exit status {code}\n')
        if code == 0 and state.is_done(task):
            return DONE
        if code < 0 or code == INTERRUPTED_STATUS:
            return INTERRUPTED
        state.record_failure(task, error_line(log_path, code) if code else
                             'error: the command succeeded but left no result (summary or metadata.json)', code)
        return FAILED
    finally:
        lock.release()


def _wait(process: subprocess.Popen) -> int:
    """Wait for the command; a Ctrl-C meanwhile is passed on to it (it stops at once, its last checkpoint kept)."""
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
