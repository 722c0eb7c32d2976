"""Every ``ttm_torchdistill.x.y`` named in the package's docstrings and comments and in the docs resolves to a module
or an attribute of one: a moved module cannot leave a reference behind."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / 'ttm_torchdistill').rglob('*.py')) + sorted((ROOT / 'docs').rglob('*.md')) + \
    [ROOT / 'README.md', ROOT / 'BENCHMARKS.md'] + sorted((ROOT / 'benchmarks').glob('*.py'))
DOTTED = re.compile(r'\bttm_torchdistill(?:\.[A-Za-z_][A-Za-z0-9_]*)+')
#: Names that are not references, with why.
NOT_REFERENCES = {
    'ttm_torchdistill.device_data': 'the device data stream\'s version tag (run/data/device_dataset.py STREAM), '
                                    'recorded in caches',
    'ttm_torchdistill.functional.reverse_kd_loss': 'the function docs/extending.md shows how to add',
}


def resolves(dotted: str) -> bool:
    parts = dotted.split('.')
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module('.'.join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            if not hasattr(target, part):
                return False
            target = getattr(target, part)
        return True
    return False


@pytest.mark.parametrize('path', FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_reference_resolves(path):
    names = {name for name in DOTTED.findall(path.read_text()) if name not in NOT_REFERENCES}
    broken = sorted(name for name in names if not resolves(name))
    assert not broken, f'{path.relative_to(ROOT)} names {broken}, which do not exist (moved or renamed?)'
