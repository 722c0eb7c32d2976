"""One process per run: a lock file in the run's folder recording who holds it, and how to tell a stale one.

The lock is created with ``O_CREAT | O_EXCL`` (one creator wins, also on NFS v3+), and holds JSON
``{host, pid, pid_start, job_id, since}``. A lock is stale, and is taken over, when its holder is gone:

* same host, and the pid is not alive or was started at another time (the pid was reused);
* it records the Slurm job id of the asking process: an earlier attempt of the same job (requeued after
  preemption, ``scontrol requeue``, a node failure or a time limit), whose processes Slurm has ended;
* it records a Slurm job id that ``squeue`` no longer lists as running.

A lock of another host without a Slurm job id cannot be judged from here: it is kept (``study status`` shows it).
Taking over a stale lock happens under a POSIX record lock on ``<out>/.lock-mutex``, so two processes that find
the same stale lock do not both take it.
"""
import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional

LOCK_FILE = 'lock'
MUTEX_FILE = '.lock-mutex'

#: ``job id -> state`` of the jobs squeue lists (None when squeue is not available): :mod:`.slurm_queue`.
QueueReader = Callable[[], Optional[Dict[str, str]]]


def process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        with open(f'/proc/{pid}/stat') as fp:
            stat = fp.read()
    except OSError:
        return None
    return stat.rsplit(')', 1)[1].split()[19]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def current_job_id() -> Optional[str]:
    """This process's Slurm job id as squeue shows it (``<array>_<task>`` for an array task), or None outside Slurm."""
    array, task = os.environ.get('SLURM_ARRAY_JOB_ID'), os.environ.get('SLURM_ARRAY_TASK_ID')
    if array and task:
        return f'{array}_{task}'
    return os.environ.get('SLURM_JOB_ID') or None


def holder_record(job_id: Optional[str] = None) -> Dict[str, object]:
    pid = os.getpid()
    return {'host': socket.gethostname(), 'pid': pid, 'pid_start': process_start(pid),
            'job_id': job_id if job_id is not None else current_job_id(), 'since': time.time()}


def read_lock(folder: str) -> Optional[Dict[str, object]]:
    """The holder recorded in ``folder``'s lock, or None when there is no lock. An unreadable lock (being written)
    reads as ``{}``."""
    try:
        with open(os.path.join(folder, LOCK_FILE)) as fp:
            text = fp.read()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def stale_reason(record: Dict[str, object], queue: QueueReader, job_id: Optional[str] = None) -> Optional[str]:
    """Why the lock ``record`` no longer holds (None while its holder may be alive); see the module docstring."""
    mine = job_id if job_id is not None else current_job_id()
    held_job = record.get('job_id')
    if held_job and mine and str(held_job) == str(mine):
        return f'an earlier attempt of Slurm job {held_job}'
    if record.get('host') == socket.gethostname() and isinstance(record.get('pid'), int):
        pid = record['pid']
        if not pid_alive(pid):
            return f'process {pid} on {record["host"]} has ended'
        if record.get('pid_start') is not None and process_start(pid) != record.get('pid_start'):
            return f'process {pid} on {record["host"]} has ended (its pid was reused)'
        return None
    if held_job:
        jobs = queue()
        if jobs is not None and jobs.get(str(held_job)) not in ('RUNNING', 'COMPLETING', 'CONFIGURING'):
            return f'Slurm job {held_job} is not running'
    return None


def describe(record: Dict[str, object]) -> str:
    job = f', Slurm job {record["job_id"]}' if record.get('job_id') else ''
    return f'pid {record.get("pid")} on {record.get("host")}{job}'


@contextmanager
def _mutex(out_dir: str) -> Iterator[None]:
    os.makedirs(out_dir, exist_ok=True)
    fd = os.open(os.path.join(out_dir, MUTEX_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)


class RunLock:
    """The lock of one run (or cache) folder; use :func:`acquire`."""

    def __init__(self, folder: str, record: Dict[str, object]):
        self.folder, self.record = folder, record

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if read_lock(self.folder) == self.record:
            try:
                os.remove(os.path.join(self.folder, LOCK_FILE))
            except FileNotFoundError:
                pass


def _create(folder: str, record: Dict[str, object]) -> bool:
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    with os.fdopen(fd, 'w') as fp:
        json.dump(record, fp)
    return True


def acquire(folder: str, out_dir: str, queue: QueueReader, job_id: Optional[str] = None):
    """Take the lock of ``folder``: returns ``(RunLock, None)``, or ``(None, holder description)`` when another live
    process holds it. A stale lock is taken over (``RunLock.record['took_over']`` says from whom)."""
    os.makedirs(folder, exist_ok=True)
    record = holder_record(job_id)
    if _create(folder, record):
        return RunLock(folder, record), None
    with _mutex(out_dir):
        held = read_lock(folder)
        if held is None:  # released meanwhile
            return (RunLock(folder, record), None) if _create(folder, record) else (None, 'another process')
        reason = stale_reason(held, queue, job_id) if held else None
        if reason is None:
            return None, describe(held) if held else 'a process writing its lock'
        os.remove(os.path.join(folder, LOCK_FILE))
        record['took_over'] = f'{describe(held)}: {reason}'
        if not _create(folder, record):
            return None, 'another process'
        return RunLock(folder, record), None
