"""``python -m ttm_torchdistill study plan|run|status STUDY.yaml``: a whole results table as one command.

``plan`` lists the runs (configs x grid variants x seeds) and the teacher caches built first; ``run`` runs what
is not done, here (``--executor local``) or on Slurm (``--executor slurm``, through submitit), and a second
``run`` continues where the first stopped; ``status`` counts the states and shows failures and running epochs.
``python -m ttm_torchdistill report OUT`` tabulates the finished runs over seeds. See docs/studies.md.
"""
import argparse
import os
import sys
import time
from typing import List, Optional

from ..errors import error_line
from ..study import slurm_queue, state
from ..study.attempt import DONE
from ..study.errors import StudyError
from ..study.local import LocalExecutor
from ..study.plan import (
    changed_runs, changed_runs_error, changed_runs_text, make_plan, missing_teachers, missing_teachers_error,
    set_aside, with_continue_changed,
)
from ..study.schema import load_study
from ..study.status import format_plan, format_status, manifest

PROG = 'python -m ttm_torchdistill study'
MANIFEST = 'plan.json'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description='Run a whole results table (configs x grid variants x seeds) locally or on Slurm, '
                               'requeue-safe, teacher caches built once; see docs/studies.md.',
        epilog='examples:\n'
               '  python -m ttm_torchdistill study plan configs/studies/ttm_cifar100.yaml\n'
               '  python -m ttm_torchdistill study run configs/studies/ttm_cifar100.yaml --executor local\n'
               '  python -m ttm_torchdistill study run configs/studies/ttm_cifar100.yaml --executor slurm --wait\n'
               '  python -m ttm_torchdistill study status configs/studies/ttm_cifar100.yaml\n'
               '  python -m ttm_torchdistill report runs/ttm_cifar100',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='{plan,run,status}')
    plan = commands.add_parser('plan', help='list the runs and the teacher caches built first')
    run = commands.add_parser('run', help='run what is not done (locally, or submit to Slurm)')
    status = commands.add_parser('status', help='counts per state, failed runs and their error line, running epochs')
    for sub in (plan, run, status):
        sub.add_argument('study', metavar='STUDY.yaml', help='the study file (paths in it are relative to the '
                                                             'current folder)')
        sub.add_argument('--traceback', action='store_true', help='show the Python traceback of errors')
    run.add_argument('--executor', choices=('local', 'slurm'), required=True,
                     help='local: this machine\'s GPUs (one run per GPU) or one CPU slot, in the foreground; '
                          'slurm: one job array through submitit (pip install -e ".[slurm]")')
    run.add_argument('--slots', type=int, metavar='N',
                     help='local: runs at once (default: one per visible GPU, one on a CPU-only machine)')
    run.add_argument('--wait', action='store_true', help='slurm: wait until every job has left the queue')
    changed = run.add_mutually_exclusive_group()
    changed.add_argument('--continue-changed', action='store_true',
                         help='continue the unfinished runs that were trained with other values than the study now '
                              'asks (their summaries record the change); refused by default')
    changed.add_argument('--restart-changed', action='store_true',
                         help='start those runs (finished ones too) again; their folders are moved to '
                              '<out>/replaced/<time>/')
    return parser


def _write_manifest(plan) -> None:
    state.write_json(os.path.join(plan.study.out_dir, MANIFEST), manifest(plan))


def _handle_changed(args, plan):
    """The plan to run, once the runs trained with other values than the study now asks are dealt with."""
    changed = changed_runs(plan)
    if not changed:
        return plan
    if args.continue_changed:
        print(f'study {plan.study.name}: continuing under the new values: {changed_runs_text(changed)}', flush=True)
        return with_continue_changed(plan, changed)
    if not args.restart_changed:
        raise changed_runs_error(plan, changed)
    queue = slurm_queue.QueueSnapshot()
    busy = [c.run.run_id for c in changed if state.task_state(c.run, queue).state in ('running', 'queued')]
    if busy:
        raise StudyError(f'{plan.study.path}: --restart-changed: {", ".join(busy)} running or queued; wait for them '
                         f'(or stop them) first')
    for folder in set_aside(plan, changed, time.strftime('%Y%m%d-%H%M%S')):
        print(f'study {plan.study.name}: moved aside to start again: {folder}', flush=True)
    return plan


def _run(args, plan) -> int:
    plan = _handle_changed(args, plan)
    missing = missing_teachers(plan, [run for run in plan.runs if not state.is_done(run)])
    if missing:
        raise missing_teachers_error(plan, missing)
    _write_manifest(plan)
    if args.executor == 'local':
        if args.wait:
            raise StudyError('--wait applies to --executor slurm (the local executor runs in the foreground)')
        if args.slots is not None and args.slots < 1:
            raise StudyError(f'--slots must be at least 1, got {args.slots}')
        try:
            outcomes = LocalExecutor(plan, slots=args.slots).run()
        except KeyboardInterrupt:
            return 130
        sys.stdout.write(format_status(plan, state.plan_states(plan, slurm_queue.QueueSnapshot(lambda: None))))
        return 0 if all(o == DONE for o in outcomes.values()) else 1
    if args.slots is not None:
        raise StudyError('--slots applies to --executor local (Slurm runs as many as array_parallelism allows)')
    from ..study import slurm
    submitted = slurm.submit(plan, log=lambda line: print(line, flush=True))
    if not submitted:
        print(f'study {plan.study.name}: nothing to submit (every run is done, running or queued)')
    if not args.wait:
        return 0
    states = slurm.wait(plan)
    sys.stdout.write(format_status(plan, states))
    return 0 if all(s.state == 'done' for s in states) else 1


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m ttm_torchdistill study``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        plan = make_plan(load_study(args.study))
        if args.command == 'plan':
            sys.stdout.write(format_plan(plan, state.plan_states(plan, slurm_queue.QueueSnapshot())))
            return 0
        if args.command == 'status':
            sys.stdout.write(format_status(plan, state.plan_states(plan, slurm_queue.QueueSnapshot()),
                                           changed_runs(plan)))
            return 0
        return _run(args, plan)
    except Exception as exc:  # StudyError and the runner's errors: one line; anything else too, unless --traceback
        if args.traceback:
            raise
        print(error_line(exc), file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
