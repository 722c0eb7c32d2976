"""``python -m ttm_torchdistill study plan|run|status STUDY.yaml``: a whole results table as one command.

``plan`` lists the runs (configs x grid variants x seeds) and the teacher caches built first; ``run`` runs what
is not done, here (``--executor local``) or on Slurm (``--executor slurm``, through submitit), and a second
``run`` continues where the first stopped; ``status`` counts the states and shows failures and running epochs.
``python -m ttm_torchdistill report OUT`` tabulates the finished runs over seeds. See docs/studies.md.
"""
import argparse
import sys
from typing import List, Optional

from ..errors import error_line
from ..study import slurm_queue, task_state
from ..study.plan import changed_runs, make_plan
from ..study.run_study import RunRequest, run_study
from ..study.study_file import load_study
from ..study.status import format_plan, format_status

PROG = 'python -m ttm_torchdistill study'


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


def _run(args, plan) -> int:
    request = RunRequest(executor=args.executor, slots=args.slots, wait=args.wait,
                         continue_changed=args.continue_changed, restart_changed=args.restart_changed)
    if plan.study.search is not None:
        from ..study.search.executors import run_search  # Optuna is imported only for a search
        return run_search(plan, request)
    return run_study(plan, request)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m ttm_torchdistill study``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        plan = make_plan(load_study(args.study))
        if plan.study.search is not None and args.command in ('plan', 'status'):
            from ..study.search.views import search_text
            sys.stdout.write(search_text(plan))
            return 0
        if args.command == 'plan':
            sys.stdout.write(format_plan(plan, task_state.plan_states(plan, slurm_queue.QueueSnapshot())))
            return 0
        if args.command == 'status':
            sys.stdout.write(format_status(plan, task_state.plan_states(plan, slurm_queue.QueueSnapshot()),
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
