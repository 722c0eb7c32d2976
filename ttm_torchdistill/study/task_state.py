"""The state of a run or a cache build, read from its folder (never from scheduler accounting).

Files of a task folder (a run's ``<out>/runs/<run id>``, a cache's ``<out>/caches/<key>``):

* the result: the run summary ``student.json`` (done), or the cache's ``logits/metadata.json`` (done);
* ``lock``: held while an attempt runs (:mod:`.locks`);
* ``failed.json``: the last attempt failed: ``{error, exit_code, log, host, job_id, time}``; removed when an
  attempt starts;
* ``crashes.json``: the crashed attempts in a row (a signal that neither the study nor the scheduler sent):
  ``{crashes: [{signal, oom, log_tail, host, job_id, time}]}``; removed when an attempt ends otherwise;
* ``attempts.jsonl``: a ``start`` and an ``end`` line for every holder of the lock (:mod:`.attempt`);
* ``submitted.json``: the Slurm job ids it was submitted as (the last one counts);
* ``console.log``: every attempt's header and the command's output; a run's ``run.log`` holds the runner's log
  lines of every attempt, ``student.last.pt`` its last completed epoch.
"""
import glob
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from ..atomic import atomic_file
from . import locks
from .caches import CacheNeed
from .plan import CONSOLE_LOG, Run
from .slurm_queue import QueueSnapshot

FAILED_FILE, SUBMITTED_FILE, CRASHES_FILE = 'failed.json', 'submitted.json', 'crashes.json'
STATES = ('done', 'running', 'queued', 'failed', 'interrupted', 'pending')
#: Age after which a state file's temporary file is a killed writer's leftover (see :func:`write_json`).
STALE_TEMP_S = 600.0
_EPOCH_LINE = re.compile(r'Epoch (\d+)/(\d+) done')

Task = Union[Run, CacheNeed]


def task_id(task: Task) -> str:
    return task.run_id if isinstance(task, Run) else f'cache {task.key}'


def console_log(task: Task) -> str:
    return os.path.join(task.folder, CONSOLE_LOG)


def is_done(task: Task) -> bool:
    """A run is done when its summary holds at least the epochs the study asks (a study that asks for more epochs
    continues its finished runs); a cache when its metadata is written."""
    if isinstance(task, Run):
        return task.is_finished()
    return os.path.isfile(os.path.join(task.logits_dir, 'metadata.json'))


def has_started(task: Task) -> bool:
    """Whether an earlier attempt began (a run with a last-epoch checkpoint resumes from it)."""
    return os.path.isfile(console_log(task))


def read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as fp:
            data = json.load(fp)
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str, data: dict) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file of its own (two ``study run`` writing ``plan.json``
    at once each rename a complete file; the last one wins), fsync'ed, then renamed. A killed writer's temporary
    file (``.NAME.*.tmp``) is never read, and a later write removes the ones older than :data:`STALE_TEMP_S`."""
    with atomic_file(path, 'w') as pending:
        json.dump(data, pending.file, indent=1)
    remove_stale_temps(path)


def remove_stale_temps(path: str, older_than_s: float = None) -> List[str]:
    """Remove the temporary files that killed writers of ``path`` left (older than ``older_than_s``, default
    :data:`STALE_TEMP_S`: a live writer of a small JSON file renames its own within milliseconds); returns them."""
    older_than_s = STALE_TEMP_S if older_than_s is None else older_than_s
    folder, name = os.path.split(os.path.abspath(path))
    removed = []
    for temp in glob.glob(os.path.join(glob.escape(folder), f'.{glob.escape(name)}.*.tmp')):
        try:
            if time.time() - os.path.getmtime(temp) > older_than_s:
                os.remove(temp)
                removed.append(temp)
        except FileNotFoundError:  # another writer removed or renamed it meanwhile
            pass
    return removed


def record_failure(task: Task, error: str, exit_code: Optional[int]) -> None:
    write_json(os.path.join(task.folder, FAILED_FILE),
               {'error': error, 'exit_code': exit_code, 'log': console_log(task), 'host': locks.holder_record()['host'],
                'job_id': locks.current_job_id(), 'time': time.strftime('%Y-%m-%d %H:%M:%S')})


def clear_failure(task: Task) -> None:
    try:
        os.remove(os.path.join(task.folder, FAILED_FILE))
    except FileNotFoundError:
        pass


def failure(task: Task) -> Optional[dict]:
    return read_json(os.path.join(task.folder, FAILED_FILE))


def record_crash(task: Task, crash: dict) -> int:
    """Add a crashed attempt (``{signal, oom, log_tail}``) to ``crashes.json``; returns the crashes in a row."""
    path = os.path.join(task.folder, CRASHES_FILE)
    found = crashes(task) + [dict(crash, host=locks.holder_record()['host'], job_id=locks.current_job_id(),
                                  time=time.strftime('%Y-%m-%d %H:%M:%S'))]
    write_json(path, {'crashes': found})
    return len(found)


def crashes(task: Task) -> List[dict]:
    """The crashed attempts in a row of ``task`` (the last attempt crashed when there are any)."""
    return list((read_json(os.path.join(task.folder, CRASHES_FILE)) or {}).get('crashes') or [])


def clear_crashes(task: Task) -> None:
    try:
        os.remove(os.path.join(task.folder, CRASHES_FILE))
    except FileNotFoundError:
        pass


def record_submission(task: Task, job_id: str) -> None:
    path = os.path.join(task.folder, SUBMITTED_FILE)
    jobs = (read_json(path) or {}).get('jobs', [])
    write_json(path, {'jobs': jobs + [{'job_id': job_id, 'time': time.strftime('%Y-%m-%d %H:%M:%S')}]})


def submitted_job(task: Task) -> Optional[str]:
    jobs = (read_json(os.path.join(task.folder, SUBMITTED_FILE)) or {}).get('jobs') or []
    return jobs[-1]['job_id'] if jobs else None


def last_epoch(run: Run) -> Optional[str]:
    """``'3/240'``: the last epoch the run's log reports as done (None before the first)."""
    try:
        with open(run.run_log, 'rb') as fp:
            fp.seek(max(os.path.getsize(run.run_log) - 65536, 0))
            tail = fp.read().decode('utf-8', 'replace')
    except OSError:
        return None
    found = _EPOCH_LINE.findall(tail)
    return f'{found[-1][0]}/{found[-1][1]}' if found else None


@dataclass
class TaskState:
    """``state`` is one of :data:`STATES`; ``detail`` the error line, the lock holder or the job id."""
    task: Task
    state: str
    detail: str = ''
    log: Optional[str] = None


def task_state(task: Task, queue: QueueSnapshot, caches: Optional[Dict[str, 'TaskState']] = None) -> TaskState:
    """The state of ``task`` from its folder (and squeue for jobs submitted to Slurm).

    :param caches: states of the caches, by key: a run whose cache failed has failed too.
    """
    if is_done(task):
        return TaskState(task, 'done')
    held = locks.read_lock(task.folder)
    if held is not None and (not held or locks.stale_reason(held, queue, job_id='') is None):
        return TaskState(task, 'running', locks.describe(held) if held else 'starting')
    job = submitted_job(task)
    if job is not None and queue.active(job):
        return TaskState(task, 'queued', f'Slurm job {job} {queue()[job].lower()}')
    failed = failure(task)
    if failed is not None:
        return TaskState(task, 'failed', str(failed.get('error')), failed.get('log'))
    if isinstance(task, Run) and task.cache is not None and caches is not None:
        cache = caches.get(task.cache.key)
        if cache is not None and cache.state == 'failed':
            return TaskState(task, 'failed', f'teacher cache {task.cache.key} failed: {cache.detail}', cache.log)
    if has_started(task):
        detail = 'continues from its last checkpoint' if isinstance(task, Run) and os.path.isfile(task.last_ckpt) \
            else 'starts again'
        crashed = crashes(task)
        if crashed:
            detail = f'crashed {len(crashed)} time(s) in a row: {crashed[-1].get("signal")}, ' \
                     f'{crashed[-1].get("oom")}; {detail}'
        return TaskState(task, 'interrupted', detail, console_log(task))
    return TaskState(task, 'pending')


def plan_states(plan, queue: QueueSnapshot) -> List[TaskState]:
    """States of every cache, then every run, of ``plan``."""
    caches = {cache.key: task_state(cache, queue) for cache in plan.caches}
    return list(caches.values()) + [task_state(run, queue, caches) for run in plan.runs]
