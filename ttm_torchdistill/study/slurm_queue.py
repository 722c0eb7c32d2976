"""What Slurm says about jobs, from ``squeue`` (not ``sacct``: accounting is often disabled), and about the limits
a submission must fit, from ``scontrol show config``, ``scontrol show partition`` and ``sinfo``.

Only the jobs squeue lists are known: pending, running, completing, requeued. A job that has left the queue
(finished, failed, cancelled) is absent, and the study reads the outcome from the run folder instead.

On a cluster with ``PrivateData=jobs`` squeue lists only the caller's own jobs, and ``squeue -j``/``scontrol show
job`` answer "Invalid job id specified" for another user's job exactly as for a job that does not exist (seen on
Slurm 22.05). There, another user's job missing from the list is "cannot tell", never "not running"
(:meth:`QueueSnapshot.running`).
"""
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional

from ..errors import StudyError

ACTIVE = ('PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING',
          'SUSPENDED', 'STAGE_OUT', 'SIGNALING')


def squeue_jobs() -> Optional[Dict[str, str]]:
    """``{job id: state}`` of every job in the queue, array tasks one by one (``123_4``); None without squeue or
    when it fails (no cluster reachable)."""
    if shutil.which('squeue') is None:
        return None
    try:
        result = subprocess.run(['squeue', '-h', '-r', '-o', '%i %T'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    jobs = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            jobs[parts[0]] = parts[1]
    return jobs


#: States in which a job's processes may be running (a lock it holds is live).
RUNNING = ('RUNNING', 'COMPLETING', 'CONFIGURING', 'SIGNALING', 'STAGE_OUT', 'SUSPENDED', 'RESIZING',
           'REQUEUED')  # REQUEUED: its processes are still being ended


def hides_other_users_jobs() -> Optional[bool]:
    """Whether squeue shows this user only their own jobs: ``PrivateData`` lists ``jobs`` (or ``all``) and the user
    is not root; None when ``scontrol show config`` cannot be read."""
    if os.getuid() == 0:  # root (and SlurmUser) see every job whatever PrivateData says
        return False
    try:
        result = subprocess.run(['scontrol', 'show', 'config'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    found = re.search(r'^PrivateData\s*=\s*(.*)$', result.stdout, flags=re.M)
    if found is None:
        return None
    return bool(re.search(r'\b(jobs|all)\b', found.group(1)))


class QueueSnapshot:
    """One ``squeue`` call, made on first use and reused (a status or a submission reads the queue once).

    :param private: whether squeue hides other users' jobs here (:func:`hides_other_users_jobs`), asked only when a
        lock of another user names a job that the queue does not list.
    """

    def __init__(self, reader=squeue_jobs, private=hides_other_users_jobs):
        self._reader, self._jobs, self._read = reader, None, False
        self._private, self._hidden, self._asked = private, None, False

    def __call__(self) -> Optional[Dict[str, str]]:
        if not self._read:
            self._jobs, self._read = self._reader(), True
        return self._jobs

    def active(self, job_id: str) -> Optional[bool]:
        """Whether ``job_id`` is pending or running (None when the queue cannot be read)."""
        jobs = self()
        if jobs is None:
            return None
        return jobs.get(str(job_id)) in ACTIVE

    def running(self, job_id: str, owner_uid: Optional[int]) -> Optional[bool]:
        """Whether the processes of job ``job_id`` (submitted by ``owner_uid``) may be running: True, False, or None
        when this process cannot tell (no squeue, or another user's job on a cluster that hides it)."""
        jobs = self()
        if jobs is None:
            return None
        if str(job_id) in jobs:
            return jobs[str(job_id)] in RUNNING
        if owner_uid == os.getuid():
            return False  # everyone sees their own jobs
        if not self._asked:
            self._hidden, self._asked = self._private(), True
        return None if self._hidden is not False else False


@dataclass(frozen=True)
class Limits:
    """What a submission to one partition must fit.

    :param max_time_min: the partition's MaxTime in minutes (None: unlimited).
    :param cpus, mem_mb, gpus: the most CPUs, memory (MB) and GPUs of one node of the partition.
    :param max_array_size: MaxArraySize: an array's task indices must stay below it.
    """
    partition: str
    max_time_min: Optional[int]
    cpus: int
    mem_mb: int
    gpus: int
    max_array_size: int
    enforce_part_limits: str
    job_requeue: bool


def key_values(text: str) -> Dict[str, str]:
    """``Key = value`` lines (``scontrol show config``) or ``Key=value`` words (``scontrol show partition -o``)."""
    if re.search(r'^\S+\s+= ', text, flags=re.M):
        return {m.group(1): m.group(2).strip() for m in re.finditer(r'^(\S+)\s+= ?(.*)$', text, flags=re.M)}
    return dict(word.split('=', 1) for word in text.split() if '=' in word)


def minutes(text: str) -> Optional[int]:
    """A Slurm time (``UNLIMITED``, ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in whole minutes, rounded up;
    None when unlimited."""
    if text.upper() in ('UNLIMITED', 'INFINITE'):
        return None
    found = re.fullmatch(r'(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?', text)
    if found is None:
        raise StudyError(f'expected a Slurm time such as 60, 01:00:00 or 1-00:00:00, got {text!r}')
    days, a, b, c = found.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    else:  # MM[:SS]
        seconds = int(a) * 60 + int(b or 0)
    return -(-seconds // 60)


def _scontrol(*args: str) -> str:
    try:
        result = subprocess.run(['scontrol', *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StudyError(f'--executor slurm: `scontrol {" ".join(args)}` failed: {exc}') from None
    if result.returncode != 0:
        raise StudyError(f'--executor slurm: `scontrol {" ".join(args)}` failed: '
                         f'{(result.stderr or result.stdout).strip()}')
    return result.stdout


def read_limits(partition: Optional[str]) -> Limits:
    """The limits of ``partition`` (the cluster's default one when None) from scontrol and sinfo."""
    config = key_values(_scontrol('show', 'config'))
    partitions = [key_values(line) for line in _scontrol('show', 'partition', '-o').splitlines() if line.strip()]
    chosen = [p for p in partitions if (p.get('PartitionName') == partition if partition else p.get('Default') ==
                                        'YES')]
    if not chosen:
        names = ', '.join(p.get('PartitionName', '?') for p in partitions) or 'none'
        raise StudyError(f'slurm.partition: expected one of the cluster\'s partitions ({names}), got {partition!r}'
                         if partition else f'slurm.partition: the cluster has no default partition; name one of '
                                           f'{names}')
    name = chosen[0]['PartitionName']
    nodes = subprocess.run(['sinfo', '-h', '-N', '-p', name, '-o', '%c %m %G'], capture_output=True, text=True,
                           timeout=60).stdout.split('\n')
    cpus, mem, gpus = 0, 0, 0
    for line in nodes:
        parts = line.split(None, 2)
        if len(parts) == 3:
            cpus, mem = max(cpus, int(parts[0].rstrip('+'))), max(mem, int(parts[1].rstrip('+')))
            gpus = max([gpus] + [int(n) for n in re.findall(r'gpu(?::[^:(,]+)?:(\d+)', parts[2])])
    return Limits(name, minutes(chosen[0].get('MaxTime', 'UNLIMITED')), cpus, mem, gpus,
                  int(config.get('MaxArraySize', '1001')), config.get('EnforcePartLimits', 'NO'),
                  config.get('JobRequeue', '1') != '0')


def limit_violations(resources, slurm, limits: Limits) -> List[str]:
    """One line per way a job of ``resources`` (:class:`~.study_file.Resources`) and ``slurm`` options breaks
    ``limits``: such a job is refused by sbatch or, with ``EnforcePartLimits=NO``, pends forever."""
    where = f'partition {limits.partition}'
    found = []
    if limits.max_time_min is not None and resources.time_min > limits.max_time_min:
        found.append(f'resources.time_min: expected at most {limits.max_time_min} (MaxTime of {where}), got '
                     f'{resources.time_min}: its jobs would never start '
                     f'(EnforcePartLimits={limits.enforce_part_limits})')
    if resources.time_min * 60 <= slurm.signal_delay_s:
        found.append(f'slurm.signal_delay_s: expected less than resources.time_min ({resources.time_min} min = '
                     f'{resources.time_min * 60} s), got {slurm.signal_delay_s}: the pre-timeout signal would come '
                     f'as the job starts')
    if resources.cpus > limits.cpus:
        found.append(f'resources.cpus: expected at most {limits.cpus} (the largest node of {where}), got '
                     f'{resources.cpus}')
    if resources.mem_gb * 1024 > limits.mem_mb:
        found.append(f'resources.mem_gb: expected at most {limits.mem_mb / 1024:g} (the largest node of {where}: '
                     f'{limits.mem_mb} MB), got {resources.mem_gb:g}')
    if resources.gpus > limits.gpus:
        found.append(f'resources.gpus: expected at most {limits.gpus} (GPUs of the largest node of {where}), got '
                     f'{resources.gpus}')
    return found
