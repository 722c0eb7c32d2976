"""What Slurm's queue says about jobs, from ``squeue`` (not ``sacct``: accounting is often disabled).

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
from typing import Dict, Optional

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
