"""The Slurm executor, through submitit: the caches as one job array, the runs as job arrays that depend on them.

Runs that read the same teacher cache form one array with ``--dependency=afterok:<cache job>`` and
``--kill-on-invalid-dep=yes`` (a failed cache cancels its runs instead of leaving them pending forever; their
state then reads as failed with the cache's error line); runs without a cache form one array without a
dependency. Each array task calls :class:`StudyJob`, which makes one :func:`~ttm_torchdistill.study.attempt.attempt`
of its run: the runner's own command, resumed from the last checkpoint when an earlier attempt left one. A job
requeued by Slurm (preemption, ``scontrol requeue``, node failure) runs the same call again; on the pre-timeout
signal submitit calls :meth:`StudyJob.checkpoint` and requeues the job, which then resumes.

Submitit writes its files (the pickled calls, the job logs ``<job>_0_log.out``/``.err``) to ``<out>/slurm``.
Job states come from ``squeue`` and the run folders, never from ``sacct`` (often disabled).
"""
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, TextIO

from . import attempt as attempts
from . import locks, task_state
from ..errors import StudyError
from .plan import Plan, Run
from .study_file import Study
from .slurm_queue import Limits, QueueSnapshot, limit_violations, read_limits
from .task_state import Task, task_id

SLURM_DIR = 'slurm'
#: Seconds between two looks at the queue and the folders with ``--wait``.
WAIT_POLL_S = 5.0
#: How often a job may reach its time limit and be requeued (submitit's max_num_timeout).
MAX_TIMEOUTS = 50


def submitit_module():
    try:
        import submitit
    except ImportError:
        raise StudyError('--executor slurm needs submitit, which is not installed: pip install -e ".[slurm]" '
                         '(or pip install submitit)') from None
    return submitit


class StudyJob:
    """The call a Slurm job makes: attempts of one task of a plan (picklable; run again on requeue).

    The job fails (a non-zero exit, so ``afterok`` dependants never start on a missing cache) unless the task's result
    is there at the end: a failed attempt, and also one that was interrupted, crashed below the limit or found the
    run locked by another process. A job that Slurm requeues (``scontrol requeue``, preemption) or that submitit
    requeues on its pre-timeout signal is requeued all the same: the requeue is the controller's.
    """

    def __init__(self, plan: Plan, task: Task):
        self.plan, self.task = plan, task
        self._process = None  # the running command, for checkpoint()

    def __getstate__(self):
        return {'plan': self.plan, 'task': self.task}

    def __setstate__(self, data):
        self.plan, self.task, self._process = data['plan'], data['task'], None

    def __call__(self) -> str:
        job_id = locks.current_job_id()
        name_job(task_id(self.task))
        note_sigterm()
        env = dict(os.environ)
        cpus = os.environ.get('SLURM_CPUS_PER_TASK')
        if cpus and 'OMP_NUM_THREADS' not in env:
            env['OMP_NUM_THREADS'] = cpus
        outcome = attempts.settle(self.task, self.plan, env=env, job_id=job_id, on_start=self._started)
        if outcome == attempts.FAILED:
            failed = task_state.failure(self.task) or {}
            raise RuntimeError(f'{task_id(self.task)}: {failed.get("error")} (log: {failed.get("log")})')
        if outcome != attempts.DONE and not task_state.is_done(self.task):
            why = attempts.stop_requested() or 'see its console.log'
            raise RuntimeError(f'{task_id(self.task)}: the attempt ended {outcome} ({why}) without a result: the job '
                               f'fails so that jobs depending on it do not start; the next `study run` submits it '
                               f'again unless Slurm requeued it')
        return attempts.DONE

    def _started(self, process) -> None:
        self._process = process

    def checkpoint(self):
        """On submitit's pre-timeout (or preemption) signal: stop the command (it keeps its last epoch's checkpoint)
        and requeue the same call, which resumes from there."""
        if self._process is not None:
            attempts.stop_command(self._process.pid, 'the pre-timeout signal (submitit requeues the job)')
        return submitit_module().helpers.DelayedSubmission(StudyJob(self.plan, self.task))


def note_sigterm() -> None:
    """Remember a SIGTERM (scancel, scontrol requeue, preemption, time limit) before submitit's handler logs it: a
    command that Slurm kills with SIGKILL after it was then stopped, not crashed."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        attempts.request_stop('SIGTERM from Slurm (scancel, requeue, preemption or time limit)')
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:  # outside submitit: end as SIGTERM would have ended this process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGTERM, on_sigterm)


def name_job(name: str) -> None:
    """Show the run id as the job's name in squeue (an array has one name for all its tasks until they start)."""
    job = os.environ.get('SLURM_JOB_ID')
    if job:
        result = subprocess.run(['scontrol', 'update', f'JobId={job}', f'JobName={name}'], capture_output=True,
                                text=True)
        if result.returncode != 0:
            print(f'study: could not name job {job} {name!r}: {result.stderr.strip()}', file=sys.stderr)


def make_executor(study: Study, out: str, name: str, dependency: Optional[str]):
    submitit = submitit_module()
    # a long run may meet its time limit many times; each time it resumes from its last checkpoint
    executor = submitit.SlurmExecutor(folder=os.path.join(out, SLURM_DIR), max_num_timeout=MAX_TIMEOUTS)
    resources, slurm = study.resources, study.slurm
    additional = dict(slurm.additional)
    if dependency is not None:
        additional.setdefault('kill-on-invalid-dep', 'yes')
    # without it a cluster with JobRequeue=0 cancels a preempted job or one on a failed node instead of requeueing
    additional.setdefault('requeue', True)
    parameters = dict(job_name=name, time=resources.time_min, cpus_per_task=resources.cpus,
                      mem=f'{int(round(resources.mem_gb * 1024))}M', ntasks_per_node=1, nodes=1,
                      array_parallelism=slurm.array_parallelism, additional_parameters=additional,
                      setup=list(slurm.setup), stderr_to_stdout=False, signal_delay_s=slurm.signal_delay_s,
                      # srun of Slurm 22.05-23.02 does not take --cpus-per-task from the batch job: the run's step
                      # would get one CPU (its threads and loader workers pinned to it)
                      srun_args=['--cpus-per-task', str(resources.cpus)])
    if resources.gpus:
        parameters['gpus_per_node'] = resources.gpus
    for key in ('partition', 'account', 'qos', 'constraint'):
        if getattr(slurm, key) is not None:
            parameters[key] = getattr(slurm, key)
    if dependency is not None:
        parameters['dependency'] = dependency
    executor.update_parameters(**parameters)
    return executor


def _submit_array(plan: Plan, tasks: List[Task], name: str, dependency: Optional[str], max_array_size: int
                  ) -> List[str]:
    """Job arrays of at most ``max_array_size`` tasks (a single job for one task); records each task's job id in
    its folder."""
    # each job pickles its own task; the plan's other runs would make every pickle as large as the study
    alone = Plan(plan.study, (), (), plan.python)
    ids = []
    for first in range(0, len(tasks), max_array_size):
        chunk = tasks[first:first + max_array_size]
        executor = make_executor(plan.study, plan.study.out_dir, name, dependency)
        with executor.batch():
            jobs = [executor.submit(StudyJob(alone, task)) for task in chunk]
        for task, job in zip(chunk, jobs):
            task_state.record_submission(task, str(job.job_id))
        ids += [str(job.job_id) for job in jobs]
    return ids


def check_limits(plan: Plan, limits: Limits) -> None:
    """Every way the study's jobs break the cluster's limits, one ``error:`` line each, before anything is
    submitted (the last one is the StudyError)."""
    problems = [f'{plan.study.path}: {line}' for line in limit_violations(plan.study.resources, plan.study.slurm,
                                                                          limits)]
    for line in problems[:-1]:
        print(f'error: {line}', file=sys.stderr, flush=True)
    if problems:
        raise StudyError(problems[-1])


def submit(plan: Plan, queue: Optional[QueueSnapshot] = None, log=print, limits: Optional[Limits] = None
           ) -> Dict[str, str]:
    """Submit every task that is neither done, running nor queued; returns ``{task id: job id}``.

    :param limits: the cluster's (default: read with :func:`~.slurm_queue.read_limits`), checked first.
    """
    queue = queue or QueueSnapshot()
    states = {task_id(s.task): s for s in task_state.plan_states(plan, queue)}
    if queue() is None:
        raise StudyError('--executor slurm: squeue is not available or fails here (is this a Slurm login node?)')

    def needed(task: Task) -> bool:
        return states[task_id(task)].state not in ('done', 'running', 'queued')
    if not any(needed(task) for task in list(plan.caches) + list(plan.runs)):
        return {}
    limits = limits or read_limits(plan.study.slurm.partition)
    check_limits(plan, limits)
    submitted: Dict[str, str] = {}
    cache_jobs: Dict[str, Optional[str]] = {}
    caches = [c for c in plan.caches if needed(c) and any(r.cache is c and needed(r) for r in plan.runs)]
    if caches:
        jobs = _submit_array(plan, caches, f'{plan.study.name}:caches', None, limits.max_array_size)
        for cache, job in zip(caches, jobs):
            submitted[task_id(cache)] = cache_jobs[cache.key] = job
    for cache in plan.caches:
        if cache.key not in cache_jobs and states[task_id(cache)].state in ('running', 'queued'):
            cache_jobs[cache.key] = task_state.submitted_job(cache)
    groups: Dict[Optional[str], List[Run]] = {}
    for run in plan.runs:
        if needed(run):
            groups.setdefault(None if run.cache is None else run.cache.key, []).append(run)
    for key, runs in groups.items():
        job = cache_jobs.get(key) if key is not None else None
        if key is not None and job is None and not task_state.is_done(plan.cache(key)):
            # built by a process outside this study's Slurm jobs: no job to depend on, and a run started before the
            # cache is complete would fail for want of it
            log(f'not submitted: {len(runs)} run(s) of teacher cache {key}, which is being built '
                f'({states[task_id(plan.cache(key))].detail}); `study run` again once it is done')
            continue
        name = runs[0].run_id if len(runs) == 1 else f'{plan.study.name}:runs' + (f':{key}' if key else '')
        for run, run_job in zip(runs, _submit_array(plan, runs, name, f'afterok:{job}' if job else None,
                                                    limits.max_array_size)):
            submitted[task_id(run)] = run_job
    for name, job in submitted.items():
        log(f'submitted {name}: Slurm job {job}')
    return submitted


def wait(plan: Plan, stream: Optional[TextIO] = None, poll_s: float = WAIT_POLL_S) -> List[task_state.TaskState]:
    """Wait until no task of the plan is queued or running; prints a progress line when the counts change."""
    last = ''
    while True:
        states = task_state.plan_states(plan, QueueSnapshot())
        counts = {name: sum(s.state == name for s in states) for name in task_state.STATES}
        line = f'study {plan.study.name}: ' + ', '.join(f'{n} {name}' for name, n in counts.items() if n)
        if line != last:
            print(line, file=stream or sys.stderr, flush=True)
            last = line
        if not counts['running'] and not counts['queued']:
            return states
        time.sleep(poll_s)
