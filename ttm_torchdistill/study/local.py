"""The local executor: the study's caches, then its runs, in this machine's slots, in the foreground.

A slot is one visible GPU (``CUDA_VISIBLE_DEVICES`` is set per run; a run with ``resources.gpus: G`` takes G of
them and runs under torchrun), or, on a machine without GPUs, one CPU slot unless ``--slots N``. A run starts when
its teacher cache is built; a failed cache fails the runs that read it, and a failed run never stops the others.
Ctrl-C stops every command (each keeps its last checkpoint) and a later ``study run`` continues.
"""
import os
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, TextIO

from . import attempt as attempts
from . import task_state
from ..errors import StudyError
from .plan import Plan, Run
from .task_state import Task, task_id

#: Seconds between progress lines while nothing changes.
PROGRESS_EVERY_S = 60.0


def visible_gpus() -> List[str]:
    """The GPUs a run may be given: ``CUDA_VISIBLE_DEVICES`` entries, else ``0..n-1`` of torch's device count."""
    listed = os.environ.get('CUDA_VISIBLE_DEVICES')
    if listed is not None:
        return [d.strip() for d in listed.split(',') if d.strip() and d.strip() != '-1']
    import torch
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def format_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class LocalExecutor:
    """Runs a :class:`~ttm_torchdistill.study.plan.Plan` here.

    :param slots: concurrent commands on a CPU-only machine (default 1); with GPUs, how many of them to use.
    :param stream: where progress lines go.
    """

    def __init__(self, plan: Plan, slots: Optional[int] = None, stream: Optional[TextIO] = None,
                 gpus: Optional[List[str]] = None):
        self.plan, self.stream = plan, stream
        gpus = visible_gpus() if gpus is None else gpus
        per_run = max(plan.study.resources.gpus, 1)
        if gpus:
            gpus = gpus[:slots * per_run] if slots else gpus
            if per_run > len(gpus):
                raise StudyError(f'--executor local: resources.gpus is {per_run} but {len(gpus)} GPU(s) are visible '
                                 f'here')
            self.free: List[List[str]] = [gpus[i:i + per_run] for i in range(0, len(gpus) - per_run + 1, per_run)]
        else:
            if plan.study.resources.gpus > 1:
                raise StudyError(f'--executor local: resources.gpus is {plan.study.resources.gpus} but this machine '
                                 f'has no GPU')
            self.free = [[] for _ in range(slots or 1)]
        self.lock = threading.Lock()
        self.processes: Dict[str, object] = {}
        self.outcomes: Dict[str, str] = {}
        self.durations: List[float] = []
        self.started: Dict[str, float] = {}
        self.stopping = False

    @property
    def slots(self) -> int:
        return len(self.free) + len(self.started)

    def _env(self, devices: List[str]) -> Dict[str, str]:
        env = dict(os.environ)
        if devices:
            env['CUDA_VISIBLE_DEVICES'] = ','.join(devices)
        else:  # CPU slots share the cores: each run gets resources.cpus threads unless the caller chose
            env.setdefault('OMP_NUM_THREADS', str(self.plan.study.resources.cpus))
        return env

    def _worker(self, task: Task, devices: List[str]) -> None:
        name = task_id(task)
        try:
            outcome = attempts.settle(task, self.plan, env=self._env(devices),
                                      on_start=lambda p: self.processes.__setitem__(name, p))
        except Exception as exc:  # a broken study folder (permissions, disk full) is this task's failure only
            outcome = attempts.FAILED
            task_state.record_failure(task, f'error: {type(exc).__name__}: {exc}', None)
        with self.lock:
            self.outcomes[name] = outcome
            self.durations.append(time.time() - self.started.pop(name))
            self.processes.pop(name, None)
            self.free.append(devices)

    def _cache_outcome(self, task: Task) -> Optional[str]:
        """DONE for a task without a cache (or with a built one), else its cache's outcome so far (None: waiting).

        A run whose cache failed is attempted (and fails with the cache's error line); one whose cache another
        process holds, or whose build was interrupted, is skipped like its cache.
        """
        if not isinstance(task, Run) or task.cache is None or task_state.is_done(task.cache):
            return attempts.DONE
        return self.outcomes.get(task_id(task.cache))

    def run(self, log: Callable[[str], None] = None) -> Dict[str, str]:
        """Run every task that is not done; returns ``{task id: outcome}`` of the tasks attempted."""
        log = log or (lambda line: print(line, file=self.stream or sys.stderr, flush=True))
        todo: List[Task] = [t for t in list(self.plan.caches) + list(self.plan.runs) if not task_state.is_done(t)]
        total, threads = len(todo), []
        caches = len(self.plan.caches)
        log(f'study {self.plan.study.name}: {len(self.plan.runs)} runs and {caches} teacher '
            f'cache{"" if caches == 1 else "s"}, {total} to do, {self.slots} slot(s)')
        last_line, last_time = '', 0.0
        try:
            while todo or self.started:
                with self.lock:
                    for task in list(todo):
                        if not self.free or self.stopping:
                            break
                        cache = self._cache_outcome(task)
                        if cache in (attempts.LOCKED, attempts.INTERRUPTED, attempts.CRASHED):
                            todo.remove(task)
                            self.outcomes[task_id(task)] = cache
                        elif cache in (attempts.DONE, attempts.FAILED):
                            todo.remove(task)
                            devices = self.free.pop(0)
                            self.started[task_id(task)] = time.time()
                            thread = threading.Thread(target=self._worker, args=(task, devices), daemon=True)
                            threads.append(thread)
                            thread.start()
                    line = self._progress(total, len(todo))
                if line != last_line or time.time() - last_time > PROGRESS_EVERY_S:
                    log(line)
                    last_line, last_time = line, time.time()
                time.sleep(0.2)
        except KeyboardInterrupt:
            self.stopping = True
            attempts.request_stop('Ctrl-C')  # the commands it ends were stopped, not crashed
            log(f'study {self.plan.study.name}: stopping (Ctrl-C): every run keeps its last checkpoint; '
                f'`study run` again continues')
            for process in list(self.processes.values()):
                if process.poll() is None:
                    process.send_signal(2)  # SIGINT: the runner stops with `error: interrupted`
            for thread in threads:
                thread.join()
            raise
        for thread in threads:
            thread.join()
        log(self._progress(total, 0))
        return dict(self.outcomes)

    def _progress(self, total: int, waiting: int) -> str:
        done = sum(o == attempts.DONE for o in self.outcomes.values())
        failed = sum(o == attempts.FAILED for o in self.outcomes.values())
        other = sum(o in (attempts.INTERRUPTED, attempts.LOCKED, attempts.CRASHED, attempts.WAITING)
                    for o in self.outcomes.values())
        running = len(self.started)
        line = f'study {self.plan.study.name}: {done} done, {running} running, {failed} failed'
        if other:
            line += f', {other} skipped (locked by another process or interrupted)'
        line += f', {waiting} waiting'
        if self.durations and (waiting or running):
            mean = sum(self.durations) / len(self.durations)
            line += f'; ETA {format_eta(mean * (waiting + running / 2) / max(self.slots, 1))}'
        return line

