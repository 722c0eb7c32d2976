"""One process per run: a lock file in the run's folder recording who holds it, and how to tell a stale one.

The lock is created with ``O_CREAT | O_EXCL`` (one creator wins, also on NFS v3+), and holds JSON
``{host, pid, pid_start, uid, job_id, step_id, restart, since}`` (``restart``: ``SLURM_RESTART_COUNT``, how often
Slurm requeued the job). A lock is stale, and is taken over, when its holder is gone:

* same host, and the pid is not alive or was started at another time (the pid was reused); a live pid on this host
  holds its lock whatever job it belongs to (two study processes in one ``salloc`` allocation, two terminals);
* same Slurm job as the asking process, another host, and the asking process has a higher restart count: an
  earlier attempt of this job (requeued after preemption, ``scontrol requeue``, a node failure or a time limit;
  a requeued array task keeps its ``SLURM_ARRAY_JOB_ID``/``TASK_ID`` and may land on another node), whose
  processes Slurm ended before requeueing it. The same job on another host with the same restart count is another
  live process of this allocation (``srun -N2 ... --executor local``): kept;
* another Slurm job that ``squeue`` shows as not running. A job missing from squeue is not running when it is the
  asking user's own, or when the cluster shows every user's jobs; with ``PrivateData=jobs`` another user's job
  cannot be seen, and its lock is kept (:meth:`~.slurm_queue.QueueSnapshot.running`).

A lock of another host without a Slurm job id cannot be judged from here: it is kept (``study status`` shows it).
Taking over a stale lock happens under a POSIX record lock on ``<out>/.lock-mutex``, so two processes that find
the same stale lock do not both take it. The mutex and the locks are created with the mode ``open()`` gives
(0o666 less the umask): users sharing a study folder need a umask that keeps files group-writable (``umask 002``)
and a common group owning the folder; a mutex they cannot write is one ``error:`` line saying so.
"""
import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

from ..errors import StudyError
from .slurm_queue import QueueSnapshot

LOCK_FILE = 'lock'
MUTEX_FILE = '.lock-mutex'


def process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        with open(f'/proc/{pid}/stat') as fp:
            stat = fp.read()
    except OSError:
        return None
    return stat.rsplit(')', 1)[1].split()[19]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts: its parent has not reaped it yet)."""
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


def restart_count() -> int:
    """How often Slurm requeued this process's job (``SLURM_RESTART_COUNT``; 0 outside Slurm and before a requeue)."""
    value = os.environ.get('SLURM_RESTART_COUNT', '')
    return int(value) if value.isdigit() else 0


def holder_record(job_id: Optional[str] = None) -> Dict[str, object]:
    """What a lock taken by this process records (see the module docstring)."""
    pid = os.getpid()
    return {'host': socket.gethostname(), 'pid': pid, 'pid_start': process_start(pid), 'uid': os.getuid(),
            'job_id': job_id if job_id is not None else current_job_id(),
            'step_id': os.environ.get('SLURM_STEP_ID') or None, 'restart': restart_count(), 'since': time.time()}


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


def stale_reason(record: Dict[str, object], queue: QueueSnapshot, job_id: Optional[str] = None) -> Optional[str]:
    """Why the lock ``record`` no longer holds (None while its holder may be alive); see the module docstring.

    :param job_id: the asking process's Slurm job id (default: from the environment; ``''``: judge as an outsider).
    """
    mine = job_id if job_id is not None else current_job_id()
    held_job = record.get('job_id')
    if record.get('host') == socket.gethostname() and isinstance(record.get('pid'), int):
        pid = record['pid']
        if not pid_alive(pid):
            return f'process {pid} on {record["host"]} has ended'
        if record.get('pid_start') is not None and process_start(pid) != record.get('pid_start'):
            return f'process {pid} on {record["host"]} has ended (its pid was reused)'
        return None
    if held_job and mine and str(held_job) == str(mine):
        held_restart = record.get('restart') if isinstance(record.get('restart'), int) else 0
        if restart_count() > held_restart:
            return (f'an earlier attempt of Slurm job {held_job} (requeued: restart {held_restart}, now '
                    f'{restart_count()})')
        return None  # another live process of this allocation, on another node
    if held_job and queue.running(str(held_job), record.get('uid')) is False:
        return f'Slurm job {held_job} is not running'
    return None


def describe(record: Dict[str, object]) -> str:
    """``pid 12 on node-a, Slurm job 7_1`` (and ``step 0`` when the holder ran in a job step)."""
    job = f', Slurm job {record["job_id"]}' if record.get('job_id') else ''
    step = f' step {record["step_id"]}' if job and record.get('step_id') is not None else ''
    return f'pid {record.get("pid")} on {record.get("host")}{job}{step}'


@contextmanager
def _mutex(out_dir: str) -> Iterator[None]:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, MUTEX_FILE)
    try:  # 0o666 less the umask: group-writable where the users sharing the folder keep umask 002
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        raise StudyError(f'{path}: expected a file this user can open for writing (the lock mutex of the study '
                         f'folder), got mode {_mode(path)}: users sharing a study folder need a common group and '
                         f'umask 002 (chmod g+w {path} fixes this one)') from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # POSIX record locks: also across NFS clients
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)


def _mode(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError as exc:
        return f'unreadable ({exc.strerror})'
    return f'{info.st_mode & 0o777:o} owned by uid {info.st_uid} gid {info.st_gid}'


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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # less the umask
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    with os.fdopen(fd, 'w') as fp:
        json.dump(record, fp)
    return True


def acquire(folder: str, out_dir: str, queue: QueueSnapshot, job_id: Optional[str] = None):
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
