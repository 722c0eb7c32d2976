"""One attempt of a run or a cache build: lock, command, log, outcome. Both executors call :func:`settle`.

A run that has a last-epoch checkpoint continues from it (``--resume``), whatever ended the earlier attempt
(preemption, ``scontrol requeue``, node failure, time limit, Ctrl-C, a crash). Every attempt appends a header and
the command's output to ``console.log``, and the runner appends its log lines to ``run.log``: both keep every
attempt. ``attempts.jsonl`` gets a ``start`` line when an attempt takes the lock and an ``end`` line when it lets
it go: who held the run when (no two holders overlap).

How an attempt ended:

* *interrupted*, not failed, when the command was stopped: by Ctrl-C (exit status 130), by a signal that a
  scheduler or a user sends to stop a job (SIGTERM of ``scancel``, ``scontrol requeue``, preemption and time
  limits; SIGUSR2, submitit's pre-timeout signal; SIGINT, SIGHUP, SIGQUIT), or by any signal after this process
  was asked to stop (it sent the signal itself, or received SIGTERM or the pre-timeout signal: Slurm follows
  SIGTERM by SIGKILL after ``KillWait``). The next attempt continues;
* *crashed* when another signal ended it (SIGKILL of the kernel's OOM killer, SIGSEGV, SIGBUS, SIGABRT, ...). A
  crash is retried at once; the :data:`MAX_CRASHES`-th crashed attempt in a row records a failure naming the
  signal, whether the kernel says it was out of memory, and the command's last output line.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
from typing import Dict, List, Optional

from . import locks, task_state
from .plan import Plan, Run
from .slurm_queue import QueueSnapshot
from .task_state import Task

#: Outcomes of :func:`attempt` (WAITING: a run whose teacher cache is not built yet; nothing started).
DONE, FAILED, INTERRUPTED, LOCKED, CRASHED, WAITING = 'done', 'failed', 'interrupted', 'locked', 'crashed', 'waiting'
#: Exit status of the runner for Ctrl-C (``error: interrupted``).
INTERRUPTED_STATUS = 130
#: Crashed attempts in a row after which a run or cache is failed (its crashes are kept in ``crashes.json``).
MAX_CRASHES = 3
#: Signals that stop a job or a foreground command (scheduler, submitit, terminal): their end is an interruption.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
ATTEMPTS_LOG = 'attempts.jsonl'
#: Seconds a command has to end after the study asked it to stop before it is killed.
STOP_GRACE_S = 60.0

_stop: Dict[str, Optional[str]] = {'why': None}


def request_stop(why: str) -> None:
    """Record that this process asked its commands to stop (or was asked to): a command that a signal then ends was
    interrupted, not crashed, and no crashed attempt is retried."""
    _stop['why'] = why


def stop_requested() -> Optional[str]:
    """Why this process was asked to stop (None when it was not)."""
    return _stop['why']


def error_line(log_path: str, exit_code: int) -> str:
    """The command's ``error: ...`` line from the end of its console log, else its exit status."""
    for line in reversed(last_lines(log_path)):
        if line.startswith('error: '):
            return line
        if line.startswith('=== attempt'):
            break
    return f'error: the command ended with exit status {exit_code} without an error line (see the log)'


def last_lines(log_path: str, count: int = 400) -> List[str]:
    """The last ``count`` lines of a log (of its last 64 KiB)."""
    try:
        with open(log_path, 'rb') as fp:
            fp.seek(max(os.path.getsize(log_path) - 65536, 0))
            return fp.read().decode('utf-8', 'replace').splitlines()[-count:]
    except OSError:
        return []


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
    """Why a run cannot start: its cache failed (None when it has none, it is there, or it is merely missing:
    :func:`cache_missing`)."""
    if isinstance(task, Run) and task.cache is not None and not task_state.is_done(task.cache):
        failed = task_state.failure(task.cache)
        if failed:
            return (f'error: teacher cache {task.cache.key} failed: {failed.get("error")} '
                    f'(log: {task_state.console_log(task.cache)})')
    return None


def cache_missing(task: Task) -> bool:
    """Whether a run's cache is neither built nor failed (its job was cancelled, or its build interrupted): the run
    waits for it, and is not failed (Slurm 22.05 starts ``afterok`` dependants of an array task cancelled while
    pending)."""
    return isinstance(task, Run) and task.cache is not None and not task_state.is_done(task.cache) and \
        task_state.failure(task.cache) is None


def settle(task: Task, plan: Plan, env: Optional[Dict[str, str]] = None, job_id: Optional[str] = None,
           on_start=None, queue: Optional[QueueSnapshot] = None) -> str:
    """Attempts of ``task`` until one ends otherwise than crashed, or this process is asked to stop (then CRASHED
    may be returned: the next ``study run`` continues); arguments as :func:`attempt`."""
    while True:
        outcome = attempt(task, plan, env=env, job_id=job_id, on_start=on_start, queue=queue)
        if outcome != CRASHED or stop_requested():
            return outcome


def attempt(task: Task, plan: Plan, env: Optional[Dict[str, str]] = None, job_id: Optional[str] = None,
            on_start=None, queue: Optional[QueueSnapshot] = None) -> str:
    """Run one attempt of ``task`` in the study's base folder; returns one of the outcomes above.

    :param env: environment of the command (``CUDA_VISIBLE_DEVICES`` of the slot); default: this process's.
    :param job_id: the Slurm job id to record in the lock (default: from the environment).
    :param on_start: called with the ``subprocess.Popen`` of the command (to stop it on Ctrl-C).
    """
    if task_state.is_done(task):
        return DONE
    blocked = dependency_failure(task)
    if blocked is not None:
        os.makedirs(task.folder, exist_ok=True)
        task_state.record_failure(task, blocked, None)
        return FAILED
    if cache_missing(task):
        return WAITING
    lock, holder = locks.acquire(task.folder, plan.study.out_dir, queue or QueueSnapshot(), job_id)
    if lock is None:
        return LOCKED
    outcome = INTERRUPTED  # what an exception leaves (SystemExit of submitit's requeue, a broken folder)
    _log_attempt(task, 'start', lock.record)
    try:
        if task_state.is_done(task):  # finished by the process that held the lock a moment ago
            outcome = DONE
            return outcome
        task_state.clear_failure(task)
        outcome = _run_command(task, plan, lock, env, on_start)
        return outcome
    finally:
        _log_attempt(task, 'end', lock.record, outcome)
        lock.release()


def _run_command(task: Task, plan: Plan, lock: locks.RunLock, env, on_start) -> str:
    argv, resume = command(task, plan)
    log_path = task_state.console_log(task)
    header = _header(argv, resume, lock.record.get('job_id'))
    if lock.record.get('took_over'):
        header += f'=== took over the lock of {lock.record["took_over"]}\n'
    if isinstance(task, Run):
        with open(task.run_log, 'a') as run_log:
            run_log.write(header)
    oom_before = oom_kills()
    with open(log_path, 'a') as log:
        log.write(header)
        log.flush()
        process = subprocess.Popen(argv, cwd=plan.study.base, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        if on_start is not None:
            on_start(process)
        try:
            code = _wait(process)
        finally:  # also when submitit's requeue ends this process (SystemExit): the command ends first
            code = _end(process)
            log.write(f'=== exit status {code}\n')
    if code == 0 and task_state.is_done(task):
        task_state.clear_crashes(task)
        return DONE
    if code == INTERRUPTED_STATUS or (code < 0 and (-code in STOP_SIGNALS or stop_requested())):
        return INTERRUPTED
    if code < 0:
        return _crashed(task, -code, process.pid, oom_before, log_path)
    task_state.clear_crashes(task)
    task_state.record_failure(task, error_line(log_path, code) if code else
                         'error: the command succeeded but left no result (summary or metadata.json)', code)
    return FAILED


def _wait(process: subprocess.Popen) -> int:
    """Wait for the command; a Ctrl-C meanwhile is passed on to it (it stops at once, its last checkpoint kept)."""
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            request_stop('Ctrl-C')
            if process.poll() is None:
                process.send_signal(signal.SIGINT)


def _end(process: subprocess.Popen) -> int:
    """The command's exit status, after stopping it if it still runs (SIGINT, then SIGKILL after STOP_GRACE_S)."""
    if process.poll() is None:
        request_stop('the study process is ending')
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def stop_command(pid: int, why: str, timeout_s: float = STOP_GRACE_S) -> None:
    """Stop a command from a signal handler (submitit's pre-timeout handler, which then requeues the job and exits):
    SIGINT, and wait until it has ended (it stays a zombie for its parent's ``wait``), SIGKILL after ``timeout_s``.

    Polls ``/proc`` instead of ``Popen.wait``: the handler may run inside that ``wait``, which holds its lock.
    """
    request_stop(why)
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout_s
    while _process_state(pid) not in (None, 'Z'):
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = float('inf')
        time.sleep(0.1)


def _process_state(pid: int) -> Optional[str]:
    try:
        with open(f'/proc/{pid}/stat') as fp:
            return fp.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _crashed(task: Task, signum: int, pid: int, oom_before: Optional[int], log_path: str) -> str:
    """Record a crashed attempt; the MAX_CRASHES-th in a row records a failure with its cause."""
    name = signal_name(signum)
    oom = out_of_memory(signum, pid, oom_before)
    tail = [line for line in last_lines(log_path, 40) if line.strip() and not line.startswith('=== exit status')]
    count = task_state.record_crash(task, {'signal': name, 'oom': oom, 'log_tail': tail[-20:]})
    if count < MAX_CRASHES:
        return CRASHED
    cause = f'killed by {name}' if signum == signal.SIGKILL else f'crashed with {name}'
    last = f'; its last output: {tail[-1][:200]}' if tail else ''
    attempts = f'{count} attempt{"s" if count != 1 else ""}'
    task_state.record_failure(task, f'error: the command was {cause} in {attempts} in a row, not stopped by the study '
                                    f'or the scheduler ({oom}){last}', -signum)
    task_state.clear_crashes(task)
    return FAILED


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f'signal {signum}'


def out_of_memory(signum: int, pid: int, oom_before: Optional[int]) -> str:
    """What the kernel says about a command that ``signum`` ended: the OOM killer only ever sends SIGKILL."""
    if signum != signal.SIGKILL:
        return f'{signal_name(signum)} is not the out-of-memory killer\'s signal'
    after = oom_kills()
    if oom_before is not None and after is not None and after > oom_before:
        return (f'out of memory? the kernel\'s OOM killer ended a process of this memory cgroup (oom_kill '
                f'{oom_before} -> {after})')
    if kernel_log_killed(pid):
        return f'out of memory? the kernel log says it killed process {pid}'
    if oom_before is not None and after is not None:
        return 'not the OOM killer of this memory cgroup'
    return 'out of memory could not be checked: no memory cgroup counter or kernel log readable here'


def oom_kills() -> Optional[int]:
    """The OOM killer's kill count of this process's memory cgroup (cgroup v2 ``memory.events``, v1
    ``memory.oom_control``), or None where neither can be read."""
    try:
        with open('/proc/self/cgroup') as fp:
            entries = [line.rstrip('\n').split(':', 2) for line in fp if line.count(':') >= 2]
    except OSError:
        return None
    candidates = []
    for _, controllers, path in entries:
        if controllers == '':  # the v2 hierarchy: mounted at /sys/fs/cgroup, or beside v1 ones as unified
            candidates += [f'/sys/fs/cgroup{path}/memory.events', f'/sys/fs/cgroup/unified{path}/memory.events']
        elif 'memory' in controllers.split(','):
            candidates.append(f'/sys/fs/cgroup/memory{path}/memory.oom_control')
    for candidate in candidates:
        try:
            with open(candidate) as fp:
                found = re.search(r'^oom_kill (\d+)$', fp.read(), flags=re.M)
        except OSError:
            continue
        if found:
            return int(found.group(1))
    return None


def kernel_log_killed(pid: int) -> bool:
    """Whether the kernel log (``dmesg``, where this user may read it) says the OOM killer killed ``pid``."""
    try:
        result = subprocess.run(['dmesg'], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and re.search(rf'Killed process {pid}\b', result.stdout) is not None


def _log_attempt(task: Task, event: str, record: Dict[str, object], outcome: Optional[str] = None) -> None:
    """Append who holds (``start``) or let go of (``end``) the task's lock to ``attempts.jsonl``."""
    line = {'event': event, 'time': time.time(), 'host': record.get('host'), 'pid': record.get('pid'),
            'job_id': record.get('job_id'), 'restart': record.get('restart'), 'since': record.get('since')}
    if outcome is not None:
        line['outcome'] = outcome
    elif record.get('took_over'):  # the earlier holder ended without its end line (killed): judged gone
        line['took_over'] = record['took_over']
    with open(os.path.join(task.folder, ATTEMPTS_LOG), 'a') as fp:  # one short line per write: appends stay whole
        fp.write(json.dumps(line) + '\n')
