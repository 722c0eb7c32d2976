"""``docs/results.md`` is what the experiment table says: the page equals the generator's output, and its numbers
are the configs' own ``reference.top1`` (read from the YAML files, so a number cannot agree with itself only)."""
import re
from pathlib import Path

import yaml

from ttm_torchdistill.config_generator.results_page import METHODS, results_page

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / 'docs' / 'results.md'


def test_the_page_is_the_generators_output():
    assert PAGE.read_text() == results_page(), (
        'docs/results.md differs from the experiment table: rewrite it with '
        'python -m ttm_torchdistill.config_generator.results_page > docs/results.md')


def test_each_number_is_the_configs_reference():
    checked = 0
    for dataset, methods in METHODS.items():
        section = PAGE.read_text().split(f'\n## ')[list(METHODS).index(dataset) + 1]
        for line in section.splitlines():
            match = re.match(r'\| (\S+) ← (\S+) \| (.*) \|$', line)
            if not match or match.group(1) == 'student':
                continue
            student, teacher, cells = match.group(1), match.group(2), match.group(3).split(' | ')
            for (method, _, _), cell in zip(methods, cells):
                path = ROOT / 'configs' / dataset / method / f'{student}_from_{teacher}.yaml'
                if cell == '-':
                    assert not path.exists(), f'{path} exists but docs/results.md shows no config'
                    continue
                reference = yaml.safe_load(path.read_text().split('\ndatasets:')[0])['reference']
                shown = cell.split(' ')[0]
                assert shown == ('n/a' if reference['top1'] is None else f'{reference["top1"]:.2f}'), (path, cell)
                checked += 1
    assert checked > 150


def _bracket_values(cell):
    match = re.search(r'\(([^)]*)\)', cell)
    return [] if match is None else [v.strip() for v in match.group(1).split(',')]


def test_ttm_wttm_and_dkd_brackets_are_what_the_configs_train_with():
    """(γ, β) of TTM/WTTM cells are the config's ``temperature = 1/gamma`` and ``weight`` lines; DKD's β its ``beta``
    line: read from the YAML text, so a bracket cannot agree with the generator only."""
    checked = 0
    section = PAGE.read_text().split('\n## ')[1]
    methods = METHODS['cifar100']
    for line in section.splitlines():
        match = re.match(r'\| (\S+) ← (\S+) \| (.*) \|$', line)
        if not match or match.group(1) == 'student':
            continue
        for (method, _, shown), cell in zip(methods, match.group(3).split(' | ')):
            if cell == '-' or not shown or method == 'mlkd_at':
                continue
            text = (ROOT / 'configs' / 'cifar100' / method / f'{match.group(1)}_from_{match.group(2)}.yaml').read_text()
            values = [v.rstrip('*') for v in _bracket_values(cell)]
            if shown == ('gamma', 'beta'):
                assert re.search(rf'temperature: \S+  # = 1/gamma, gamma = {re.escape(values[0])} ', text), cell
                assert re.search(rf'weight: {float(values[1])!r}  # beta', text), (method, cell)
            else:
                assert re.search(rf'beta: {float(values[0])!r}  # (inferred )?NCKD weight', text), (method, cell)
            checked += 1
    assert checked >= 78  # 13 pairs x (TTM, WTTM, WTTM+CRD, WTTM+ITRD, DKD, DKD+AT)
