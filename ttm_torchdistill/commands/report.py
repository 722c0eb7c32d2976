"""``python -m ttm_torchdistill report``: results of many runs, across seeds, next to the papers' numbers.

Give run summaries (``<dst_ckpt without suffix>.json``) or study folders (``study run``'s ``out``: its
``plan.json`` lists the runs, so missing and failed ones are listed too). One row per dataset, experiment (with
its ``--set`` variant) and runtime: seeds, best-epoch and last-epoch top-1 as mean ± sample std, the paper's
top-1 and the difference, epoch time and images/s. The work is done by :mod:`ttm_torchdistill.report`.

Examples::

    python -m ttm_torchdistill report runs/ttm_cifar100 --plot ttm.png
    python -m ttm_torchdistill report ./resource/ckpt/cifar100/wttm/*.json --format csv > wttm.csv
"""
import argparse
import sys
from typing import List, Optional

from ..errors import error_line
from ..report import FORMATS, ReportError, plot_runs, report_text

PROG = 'python -m ttm_torchdistill report'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Tabulate run summaries (the <checkpoint>.json files the runner writes) or study folders across '
                    'seeds: best and last-epoch top-1 as mean ± sample std per experiment and runtime, next to the '
                    'paper\'s number, with epoch time and images/s.',
        epilog='examples:\n  python -m ttm_torchdistill report runs/ttm_cifar100 --plot ttm.png\n'
               '  python -m ttm_torchdistill report ./resource/ckpt/cifar100/wttm/*.json --format csv',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('summaries', nargs='+', metavar='RUN_SUMMARY|STUDY_OUT',
                        help='run-summary JSON files (e.g. ./resource/ckpt/cifar100/wttm/*.json) or study folders '
                             '(the out: of a study file)')
    parser.add_argument('--format', choices=tuple(FORMATS), default='markdown',
                        help='markdown (default: one table per dataset), csv or json (unrounded numbers)')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='also draw validation top-1 per epoch (mean and band over seeds) into FILE.png '
                             '(needs matplotlib)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m ttm_torchdistill report``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        text, rows, _ = report_text(args.summaries, args.format)
        notices = plot_runs(rows, args.plot) if args.plot else []
    except ReportError as error:
        print(error_line(error), file=sys.stderr)
        return 1
    sys.stdout.write(text)
    for notice in notices:
        print(f'{PROG}: note: {notice}', file=sys.stderr)
    if args.plot:
        print(f'{PROG}: wrote {args.plot}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
