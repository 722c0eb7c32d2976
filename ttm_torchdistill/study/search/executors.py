"""The search on this machine's slots or as Slurm array tasks, then the confirm runs through ``study run``'s own
path (:func:`~ttm_torchdistill.study.run_study.run_study`).

Locally, each slot claims a trial, runs it to its end and claims the next, experiment after experiment, until no
trial is left to claim; Ctrl-C stops every command (each keeps its last checkpoint, its trial stays running in the
storage) and the next ``study run`` continues those trials first. On Slurm, each experiment whose search is not
finished gets one job array of as many tasks as trials remain; each task claims and runs one trial (a requeued
task claims again: its interrupted trial, whose lock it finds stale, continues with ``--resume``). ``--wait``
waits for the arrays, then runs the confirm phase; without it, a later ``study run`` submits the confirm runs once
the searches are finished.
"""
import os
import sys
import threading
import time
from dataclasses import replace
from typing import Dict, List, Optional

from .. import attempt as attempts
from .. import locks, task_state
from ...errors import StudyError
from ..local import visible_gpus
from ..plan import missing_teachers, missing_teachers_error
from ..run_study import RunRequest, run_study
from ..slurm_queue import QueueSnapshot, read_limits
from .confirm import confirm_plan, progress, write_tuned
from .engine import claim, search_dir
from .trials import INTERRUPTED, SearchPlan, run_trial, search_plan

SUBMITTED = 'submitted.json'


def _values(params: Dict[str, object]) -> str:
    return ', '.join(f'{k.rsplit(".", 1)[-1]}={v:.4g}' if isinstance(v, float) else f'{k.rsplit(".", 1)[-1]}={v}'
                     for k, v in params.items())


class LocalSearch:
    """The search in ``slots`` threads of this process (one visible GPU each, else a CPU slot)."""

    def __init__(self, search: SearchPlan, slots: Optional[int] = None):
        self.search, self.gpus = search, visible_gpus()
        self.slots = slots or max(len(self.gpus), 1)
        self.processes: Dict[int, object] = {}
        self.errors: List[str] = []
        self.stopping = False

    def env(self, index: int) -> Dict[str, str]:
        env = dict(os.environ)
        if self.gpus:
            env['CUDA_VISIBLE_DEVICES'] = self.gpus[index % len(self.gpus)]
        else:  # CPU slots share the cores: each run gets resources.cpus threads unless the caller chose
            env.setdefault('OMP_NUM_THREADS', str(self.search.plan.study.resources.cpus))
        return env

    def log(self, line: str) -> None:
        print(f'study {self.search.plan.study.name}: {line}', file=sys.stderr, flush=True)

    def worker(self, index: int) -> None:
        study = self.search.plan.study
        try:
            for template in self.search.templates:
                while not self.stopping:
                    claimed = claim(study.search, study.path, self.search.plan.out, study.out_dir,
                                    template.experiment, QueueSnapshot())
                    if claimed is None:
                        break
                    self.log(f'{template.experiment} trial {claimed.number} '
                             f'{"continues" if claimed.resumed else "starts"} ({_values(claimed.params)})')
                    outcome = run_trial(self.search, claimed, env=self.env(index),
                                        on_start=lambda p: self.processes.__setitem__(index, p))
                    self.log(f'{template.experiment} trial {claimed.number}: {outcome}')
                    if outcome == INTERRUPTED:
                        return
        except Exception as exc:  # a broken storage or folder ends this slot, and the study says why
            self.errors.append(f'error: {type(exc).__name__}: {exc}')
            self.log(self.errors[-1])

    def run(self) -> int:
        """Run the search here; returns 0, 1 when a slot failed, or 130 after Ctrl-C."""
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.slots)]
        for thread in threads:
            thread.start()
        try:
            while any(thread.is_alive() for thread in threads):
                time.sleep(0.2)
        except KeyboardInterrupt:
            self.stopping = True
            attempts.request_stop('Ctrl-C')  # the commands it ends were stopped, not crashed
            self.log('stopping (Ctrl-C): every trial keeps its runs\' last checkpoints; `study run` again continues')
            for process in list(self.processes.values()):
                if process.poll() is None:
                    process.send_signal(2)
            for thread in threads:
                thread.join()
            return 130
        return 1 if self.errors else 0


class SearchJob:
    """The call of a Slurm array task of a search: claim one trial of ``experiment`` and run it (again on requeue)."""

    def __init__(self, search: SearchPlan, experiment: str):
        self.search, self.experiment, self.process = search, experiment, None

    def __getstate__(self):
        return {'search': self.search, 'experiment': self.experiment}

    def __setstate__(self, data):
        self.search, self.experiment, self.process = data['search'], data['experiment'], None

    def __call__(self) -> str:
        from .. import slurm
        job_id = locks.current_job_id()
        slurm.note_sigterm()
        study, env = self.search.plan.study, dict(os.environ)
        if os.environ.get('SLURM_CPUS_PER_TASK') and 'OMP_NUM_THREADS' not in env:
            env['OMP_NUM_THREADS'] = os.environ['SLURM_CPUS_PER_TASK']
        claimed = claim(study.search, study.path, self.search.plan.out, study.out_dir, self.experiment,
                        QueueSnapshot(), job_id)
        if claimed is None:
            return 'no trial left to claim'
        slurm.name_job(f'{self.experiment}/trial{claimed.number}')
        outcome = run_trial(self.search, claimed, env=env, job_id=job_id, on_start=self.started)
        if outcome == INTERRUPTED:
            why = attempts.stop_requested() or 'see the console.log of its runs'
            raise RuntimeError(f'{self.experiment} trial {claimed.number}: interrupted ({why}); it stays running in '
                               f'the storage and the next claim continues it')
        return outcome

    def started(self, process) -> None:
        self.process = process

    def checkpoint(self):
        """On submitit's pre-timeout signal: stop the command and requeue the same call, which claims the trial
        again (its lock is then stale) and resumes it."""
        from .. import slurm
        if self.process is not None:
            attempts.stop_command(self.process.pid, 'the pre-timeout signal (submitit requeues the job)')
        return slurm.submitit_module().helpers.DelayedSubmission(SearchJob(self.search, self.experiment))


def submitted_jobs(out_dir: str, experiment: str) -> List[str]:
    data = task_state.read_json(os.path.join(search_dir(out_dir, experiment), SUBMITTED)) or {}
    return [job['job_id'] for job in data.get('jobs', [])]


def submit_search(search: SearchPlan, log=print) -> Dict[str, List[str]]:
    """One job array per experiment whose search is neither finished nor queued: a task per trial left."""
    from .. import slurm
    study, queue = search.plan.study, QueueSnapshot()
    if queue() is None:
        raise StudyError('--executor slurm: squeue is not available or fails here (is this a Slurm login node?)')
    todo = []
    for item in progress(search):
        if item.finished:
            continue
        queued = [job for job in submitted_jobs(study.out_dir, item.experiment) if queue.active(job)]
        if queued:
            log(f'search {item.experiment}: Slurm jobs {", ".join(queued)} still queued or running')
            continue
        ended = item.asked - item.counts.get('running', 0)
        todo.append((item.experiment, search.spec.trials - ended))
    if not todo:
        return {}
    limits = read_limits(study.slurm.partition)
    slurm.check_limits(search.plan, limits)
    alone = SearchPlan(replace(search.plan, runs=(), caches=()), search.templates)  # small pickles
    submitted = {}
    for experiment, count in todo:
        ids = []
        for first in range(0, count, limits.max_array_size):
            executor = slurm.make_executor(study, study.out_dir, f'{study.name}:search', None)
            with executor.batch():
                jobs = [executor.submit(SearchJob(alone, experiment))
                        for _ in range(min(limits.max_array_size, count - first))]
            ids += [str(job.job_id) for job in jobs]
        path = os.path.join(search_dir(study.out_dir, experiment), SUBMITTED)
        jobs = submitted_jobs(study.out_dir, experiment) + ids
        task_state.write_json(path, {'jobs': [{'job_id': job} for job in jobs]})
        log(f'submitted search {experiment}: {count} trial task(s), Slurm jobs {ids[0]}..{ids[-1]}')
        submitted[experiment] = ids
    return submitted


def wait_search(search: SearchPlan, poll_s: float = 5.0) -> None:
    """Wait until no search job of the study is queued or running."""
    while True:
        queue = QueueSnapshot()
        active = [job for t in search.templates for job in submitted_jobs(search.plan.study.out_dir, t.experiment)
                  if queue.active(job)]
        if not active:
            return
        time.sleep(poll_s)


def run_search(plan, request: RunRequest) -> int:
    """``study run`` of a study with ``search:``: the search (here or on Slurm), then, once every experiment's
    search is finished, the confirm runs (:func:`run_study`); returns the exit status."""
    search = search_plan(plan)
    missing = missing_teachers(plan, search.templates)
    if missing:
        raise missing_teachers_error(plan, missing)
    if request.executor == 'local':
        if request.wait or (request.slots is not None and request.slots < 1):
            raise StudyError('--wait applies to --executor slurm' if request.wait else
                             f'--slots must be at least 1, got {request.slots}')
        code = LocalSearch(search, request.slots).run()
        if code:
            return code
    else:
        if request.slots is not None:
            raise StudyError('--slots applies to --executor local (Slurm runs as many as array_parallelism allows)')
        submit_search(search, log=lambda line: print(f'study {plan.study.name}: {line}', flush=True))
        if request.wait:
            wait_search(search)
    found = progress(search)
    for item in found:
        print(f'study {plan.study.name}: {item.text()}', flush=True)
    if not all(item.finished for item in found):
        print(f'study {plan.study.name}: the confirm runs start once every search is finished', flush=True)
        return 0 if request.executor == 'slurm' and not request.wait else 1
    write_tuned(search, found)
    empty = [item.experiment for item in found if item.best_number is None]
    if empty:
        raise StudyError(f'{plan.study.path}: search: no trial of {", ".join(empty)} completed (every one was '
                         f'pruned or failed); nothing to confirm')
    return run_study(confirm_plan(search, found), request)
