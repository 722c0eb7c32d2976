"""Every config of the experiment table as text, compared with or written to a folder.

Each row of :mod:`.table` becomes ``<out>/<dataset>/<method>/<name>.yaml`` (``<out>`` is ``configs/`` of the
repository by default). The command line is :mod:`ttm_torchdistill.commands.generate_configs`.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import EXPERIMENTS
from .render import render
from .schema import Experiment

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
