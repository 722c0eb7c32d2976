"""``python -m ttm_torchdistill generate-configs``: write every config of the experiment table.

Each row of :mod:`.table` becomes ``<out>/<dataset>/<method>/<name>.yaml`` (``<out>`` is ``configs/`` of the
repository by default). ``--check`` writes nothing: it lists the files that differ from what the table
produces (stale, missing, or present under ``<out>`` without a row) and exits 1 if there are any.

Examples::

    python -m ttm_torchdistill generate-configs            # rewrite configs/ from the table
    python -m ttm_torchdistill generate-configs --check    # CI: are the shipped configs up to date?
    python -m ttm_torchdistill generate-configs --out /tmp/configs
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import EXPERIMENTS
from .render import render
from .schema import Experiment

PROG = 'python -m ttm_torchdistill generate-configs'
#: The source tree this package lives in (ttm_torchdistill/experiments/ -> repository root), if it is one.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def default_out() -> Optional[Path]:
    """``configs/`` of the source checkout, or None for an installed copy (no setup.cfg beside the package)."""
    return SOURCE_ROOT / 'configs' if (SOURCE_ROOT / 'setup.cfg').is_file() else None


#: Study files (``python -m ttm_torchdistill study``) live in configs/studies/; they name experiments, are none.
STUDIES_DIR = 'studies'


def expected_files(experiments: Sequence[Experiment] = EXPERIMENTS) -> Dict[str, str]:
    """{path below the output folder: text} for every row, e.g. ``'cifar100/ce/resnet20.yaml'``."""
    return {f'{exp.name}.yaml': render(exp) for exp in experiments}


def compare(out: Path, expected: Dict[str, str]) -> List[str]:
    """Paths (below ``out``) that are stale, missing, or not produced by the table, each with the reason."""
    problems = []
    for relative, text in sorted(expected.items()):
        path = out / relative
        if not path.is_file():
            problems.append(f'{relative}: missing')
        elif path.read_text(encoding='utf-8') != text:
            problems.append(f'{relative}: differs from the table')
    present = sorted(p.relative_to(out).as_posix() for p in out.rglob('*.yaml')) if out.is_dir() else []
    present = [relative for relative in present if not relative.startswith(f'{STUDIES_DIR}/')]
    problems += [f'{relative}: not produced by the table (add a row or delete the file)'
                 for relative in present if relative not in expected]
    return problems


def write(out: Path, expected: Dict[str, str]) -> List[str]:
    """Write the files whose text changed; returns their paths below ``out``."""
    written = []
    for relative, text in sorted(expected.items()):
        path = out / relative
        if path.is_file() and path.read_text(encoding='utf-8') == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # newline='\n': the same bytes on every platform
        with open(path, 'w', encoding='utf-8', newline='\n') as f:
            f.write(text)
        written.append(relative)
    return written


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
