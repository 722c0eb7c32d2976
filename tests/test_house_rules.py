"""The package's house rules, checked on its source: short lines, short functions, rooms of a limited size, no
private name imported from another module, and no path of a particular machine."""
import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'ttm_torchdistill'
SOURCES = sorted(PACKAGE.rglob('*.py'))
MAX_LINE, MAX_FUNCTION, MAX_MODULES_PER_FOLDER = 120, 60, 12


def _id(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize('path', SOURCES + sorted((ROOT / 'tests').glob('*.py')), ids=_id)
def test_lines_fit_120_columns(path):
    long = [number for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > MAX_LINE]
    assert not long, f'{_id(path)}: lines over {MAX_LINE} characters: {long}'


@pytest.mark.parametrize('path', SOURCES, ids=_id)
def test_functions_are_at_most_60_lines_of_code(path):
    """Counted from the first statement after the docstring to the end of the function."""
    too_long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) and len(node.body) > 1 else node.body
            lines = node.end_lineno - body[0].lineno + 1
            if lines > MAX_FUNCTION:
                too_long.append(f'{node.name} ({lines} lines, line {node.lineno})')
    assert not too_long, f'{_id(path)}: {too_long}'


@pytest.mark.parametrize('folder', sorted({path.parent for path in SOURCES}), ids=_id)
def test_no_folder_holds_more_than_12_modules(folder):
    modules = [p.name for p in folder.glob('*.py') if p.name != '__init__.py']
    assert len(modules) <= MAX_MODULES_PER_FOLDER, f'{_id(folder)} holds {len(modules)} modules: {sorted(modules)}'


@pytest.mark.parametrize('path', SOURCES, ids=_id)
def test_no_private_name_is_imported_from_another_module(path):
    """A module's ``_name`` is its own; what another module needs is public in a private module (``_core.kernels``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(('ttm_torchdistill', '')):
            found += [alias.name for alias in node.names if alias.name.startswith('_')
                      and not alias.name.startswith('__')]
    assert not found, f'{_id(path)} imports private names {found}'


def _tracked_files():
    """git's list in a checkout (a worktree's ``.git`` is a file naming its machine's path, and is not tracked);
    outside one (an unpacked sdist), every file below the root but hidden folders and build metadata."""
    if (ROOT / '.git').exists():
        listed = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / name for name in listed.decode().split('\0') if name and (ROOT / name).is_file()]
    hidden = lambda p: any(part.startswith('.') or part.endswith('egg-info') for part in p.relative_to(ROOT).parts[:-1])
    return [p for p in ROOT.rglob('*') if p.is_file() and not hidden(p)]


def test_no_path_of_a_particular_machine_is_tracked():
    pattern = re.compile(r'(^|[^.\w])/(work|farm)/')
    suffixes = ('.py', '.md', '.yaml', '.cfg', '.toml', '.sh', '')
    tracked = [p for p in _tracked_files() if p.suffix in suffixes]
    leaks = [_id(p) for p in tracked if pattern.search(p.read_text(errors='ignore'))]
    assert not leaks, f'files naming a path of one machine: {leaks}'
