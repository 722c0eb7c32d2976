"""``python -m ttm_torchdistill generate-configs``: write every config of the experiment table.

``--check`` writes nothing: it lists the files that differ from what the table produces (stale, missing, or present
under the output folder without a row) and exits 1 if there are any. The work is done by
:mod:`ttm_torchdistill.experiments.generate`.

Examples::

    python -m ttm_torchdistill generate-configs            # rewrite configs/ from the table
    python -m ttm_torchdistill generate-configs --check    # CI: are the shipped configs up to date?
    python -m ttm_torchdistill generate-configs --out /tmp/configs
"""
import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..experiments.generate import SOURCE_ROOT, compare, default_out, expected_files, write

PROG = 'python -m ttm_torchdistill generate-configs'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description='Write the experiment YAMLs under configs/ from the table in '
                               'ttm_torchdistill/experiments/table.py (see docs/configs.md).',
        epilog='example: python -m ttm_torchdistill generate-configs --check')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; list stale, missing or unexpected files and exit 1 if there are any')
    parser.add_argument('--out', metavar='DIR', type=Path,
                        help='output folder (default: configs/ of the source checkout holding this package)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``generate-configs``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.out is None:
        args.out = default_out()
        if args.out is None:
            print(f'error: {SOURCE_ROOT} is not a source checkout (no setup.cfg); pass --out DIR',
                  file=sys.stderr)
            return 1
    try:
        expected = expected_files()
    except (KeyError, TypeError, ValueError) as error:  # a malformed row: name it, no traceback
        print(f'error: the experiment table cannot be rendered: {error}', file=sys.stderr)
        return 1
    if args.check:
        problems = compare(args.out, expected)
        for problem in problems:
            print(args.out / problem)
        if problems:
            print(f'error: {len(problems)} file(s) under {args.out} do not match the table; run {PROG}',
                  file=sys.stderr)
            return 1
        print(f'{len(expected)} configs under {args.out} match the table')
        return 0
    if args.out.exists() and not args.out.is_dir():
        print(f'error: --out {args.out} is a file; expected a folder', file=sys.stderr)
        return 1
    try:
        written = write(args.out, expected)
    except OSError as error:
        print(f'error: cannot write under {args.out}: {error}', file=sys.stderr)
        return 1
    for relative in written:
        print(args.out / relative)
    unexpected = [p for p in compare(args.out, expected) if p.endswith('(add a row or delete the file)')]
    for problem in unexpected:
        print(f'{PROG}: note: {args.out / problem}', file=sys.stderr)
    print(f'{len(written)} of {len(expected)} configs written under {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
