"""Excerpts of shipped files in the docs are the files' own lines: a fenced block whose introducing paragraph says
"from `<path>`" must appear in that file, line for line, so a page cannot drift from what it shows."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / 'docs').glob('*.md')) + [ROOT / 'README.md']
# the paragraph right before a fence ends with "from `path`:" (possibly across a line break)
EXCERPT = re.compile(r'from\s+`([^`]+\.(?:yaml|py))`:\s*\n\n```[a-z]*\n(.*?)\n```', re.S)


def _excerpts():
    found = []
    for page in PAGES:
        for path, body in EXCERPT.findall(page.read_text()):
            found.append(pytest.param(page, path, body, id=f'{page.relative_to(ROOT)}:{path}:{len(found)}'))
    return found


EXCERPTS = _excerpts()


def test_the_docs_show_excerpts():
    assert any(str(page).endswith('crd_itrd.md') for page, _, _ in (e.values for e in EXCERPTS))


@pytest.mark.parametrize('page, path, body', EXCERPTS)
def test_an_excerpt_is_its_files_own_lines(page, path, body):
    source = ROOT / path
    assert source.is_file(), f'{page.name} shows an excerpt of {path}, which does not exist'
    lines, shown = source.read_text().split('\n'), body.split('\n')
    starts = [i for i in range(len(lines) - len(shown) + 1) if lines[i:i + len(shown)] == shown]
    assert starts, (f'{page.name}: the excerpt of {path} starting {shown[0]!r} is not in the file line for line; '
                    f'copy it again from the file')
