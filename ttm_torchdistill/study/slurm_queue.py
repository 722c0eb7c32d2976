"""What Slurm's queue says about jobs, from ``squeue`` (not ``sacct``: accounting is often disabled).

Only the jobs squeue lists are known: pending, running, completing, requeued. A job that has left the queue
(finished, failed, cancelled) is absent, and the study reads the outcome from the run folder instead.
"""
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


class QueueSnapshot:
    """One ``squeue`` call, made on first use and reused (a status or a submission reads the queue once)."""

    def __init__(self, reader=squeue_jobs):
        self._reader, self._jobs, self._read = reader, None, False

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
