"""``docs/results.md`` is what the experiment table says: the page equals the generator's output, and its numbers
are the configs' own ``reference.top1`` (read from the YAML files, so a number cannot agree with itself only)."""
import re
from pathlib import Path

import yaml

from ttm_torchdistill.experiments.results_page import METHODS, results_page

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / 'docs' / 'results.md'


def test_the_page_is_the_generators_output():
    assert PAGE.read_text() == results_page(), (
        'docs/results.md differs from the experiment table: rewrite it with '
        'python -m ttm_torchdistill.experiments.results_page > docs/results.md')


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
