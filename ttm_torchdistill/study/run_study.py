"""``study run`` from a checked plan to the runs started here or submitted to Slurm (the command line front is
:mod:`ttm_torchdistill.commands.study`).

Before anything starts: runs trained with other values than the study now asks are refused, continued
(``--continue-changed``) or set aside and started again (``--restart-changed``), see :func:`.plan.changed_runs`;
a study whose teacher checkpoints are missing starts nothing (:func:`.plan.missing_teachers`). Then the manifest
``<out>/plan.json`` is written and the executor chosen runs what is not done.
"""
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import StudyError
from . import slurm_queue, task_state
from .attempt import DONE
from .local import LocalExecutor
from .plan import (
    Plan, changed_runs, changed_runs_error, changed_runs_text, missing_teachers, missing_teachers_error, set_aside,
    with_continue_changed,
)
from .status import format_status, manifest

#: The study folder's list of runs (read by ``report <out>``).
MANIFEST = 'plan.json'


@dataclass(frozen=True)
class RunRequest:
    """The options of ``study run`` (see its ``--help``)."""
    executor: str
    slots: Optional[int] = None
    wait: bool = False
    continue_changed: bool = False
    restart_changed: bool = False


def _write_manifest(plan: Plan) -> None:
    task_state.write_json(os.path.join(plan.study.out_dir, MANIFEST), manifest(plan))


def _handle_changed(request: 'RunRequest', plan: Plan) -> Plan:
    """The plan to run, once the runs trained with other values than the study now asks are dealt with."""
    changed = changed_runs(plan)
    if not changed:
        return plan
    if request.continue_changed:
        print(f'study {plan.study.name}: continuing under the new values: {changed_runs_text(changed)}', flush=True)
        return with_continue_changed(plan, changed)
    if not request.restart_changed:
        raise changed_runs_error(plan, changed)
    queue = slurm_queue.QueueSnapshot()
    busy = [c.run.run_id for c in changed if task_state.task_state(c.run, queue).state in ('running', 'queued')]
    if busy:
        raise StudyError(f'{plan.study.path}: --restart-changed: {", ".join(busy)} running or queued; wait for them '
                         f'(or stop them) first')
    for folder in set_aside(plan, changed, time.strftime('%Y%m%d-%H%M%S')):
        print(f'study {plan.study.name}: moved aside to start again: {folder}', flush=True)
    return plan


def run_study(plan: Plan, request: RunRequest) -> int:
    """``study run``: refuse what cannot start (runs trained with other values, missing teachers), write the
    manifest, then run here or submit to Slurm; returns the exit status (0 when every task is done, or submitted
    without ``--wait``).

    :raises StudyError: a study that cannot start, or options of the other executor.
    """
    plan = _handle_changed(request, plan)
    missing = missing_teachers(plan, [run for run in plan.runs if not task_state.is_done(run)])
    if missing:
        raise missing_teachers_error(plan, missing)
    _write_manifest(plan)
    if request.executor == 'local':
        if request.wait:
            raise StudyError('--wait applies to --executor slurm (the local executor runs in the foreground)')
        if request.slots is not None and request.slots < 1:
            raise StudyError(f'--slots must be at least 1, got {request.slots}')
        try:
            outcomes = LocalExecutor(plan, slots=request.slots).run()
        except KeyboardInterrupt:
            return 130
        sys.stdout.write(format_status(plan, task_state.plan_states(plan, slurm_queue.QueueSnapshot(lambda: None))))
        return 0 if all(o == DONE for o in outcomes.values()) else 1
    if request.slots is not None:
        raise StudyError('--slots applies to --executor local (Slurm runs as many as array_parallelism allows)')
    from . import slurm  # submitit is imported only for Slurm
    submitted = slurm.submit(plan, log=lambda line: print(line, flush=True))
    if not submitted:
        print(f'study {plan.study.name}: nothing to submit (every run is done, running or queued)')
    if not request.wait:
        return 0
    states = slurm.wait(plan)
    sys.stdout.write(format_status(plan, states))
    return 0 if all(s.state == 'done' for s in states) else 1
