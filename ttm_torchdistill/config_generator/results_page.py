"""``docs/results.md``: the papers' top-1 of every shipped experiment, written from the experiment table.

One table per dataset, a row per student/teacher pair, a column per method: the paper's top-1 (``n/a`` where no paper
reports it) and, in brackets, the hyperparameters a method is tuned by per pair (TTM's and WTTM's (γ, β), DKD's β,
the MLKD+AT weight). ``*`` marks a value the table infers (its source says why); numbered notes carry the table's
notes. ``tests/test_results_page.py`` compares the page with this module's output, so the page cannot drift from the
configs; rewrite it with ``python -m ttm_torchdistill.config_generator.results_page > docs/results.md``.
"""
import sys
from typing import Dict, List, Optional, Tuple

from . import EXPERIMENTS
from .schema import Experiment

#: Columns in order: (method, title, hyperparameters shown in brackets).
METHODS: Dict[str, List[Tuple[str, str, Tuple[str, ...]]]] = {
    'cifar100': [('kd', 'KD', ()), ('dist', 'DIST', ()), ('ttm', 'TTM (γ, β)', ('gamma', 'beta')),
                 ('wttm', 'WTTM (γ, β)', ('gamma', 'beta')), ('wttm_crd', 'WTTM+CRD (γ, β)', ('gamma', 'beta')),
                 ('wttm_itrd', 'WTTM+ITRD (γ, β)', ('gamma', 'beta')), ('atkd', 'ATKD', ()),
                 ('dkd', 'DKD (β)', ('beta',)), ('dkd_at', 'DKD+AT (β)', ('beta',)), ('mlkd', 'MLKD', ()),
                 ('mlkd_at', 'MLKD+AT (weight)', ('weight',))],
    'ilsvrc2012': [('kd', 'KD', ()), ('dist', 'DIST', ()), ('ttm', 'TTM (γ, β)', ('gamma', 'beta')),
                   ('wttm', 'WTTM (γ, β)', ('gamma', 'beta')), ('atkd', 'ATKD', ())],
}
TITLES = {'cifar100': 'CIFAR-100', 'ilsvrc2012': 'ILSVRC 2012'}


def _number(value) -> str:
    return f'{value:g}' if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _cell(exp: Optional[Experiment], shown: Tuple[str, ...], notes: List[str]) -> str:
    if exp is None:
        return '-'
    text = 'n/a' if exp.reference.top1 is None else f'{exp.reference.top1:.2f}'
    values = []
    for name in shown:
        param = exp.hyper[name]
        values.append(_number(param.value) + ('*' if param.source.startswith('inferred') else ''))
    if values:
        text += f' ({", ".join(values)})'
    if exp.reference.note:
        if exp.reference.note not in notes:
            notes.append(exp.reference.note)
        text += f' [{notes.index(exp.reference.note) + 1}]'
    return text


def _pairs(dataset: str) -> List[Tuple[str, str]]:
    pairs: List[Tuple[str, str]] = []
    for exp in EXPERIMENTS:
        if exp.dataset == dataset and exp.teacher is not None and not exp.variant:
            pair = (exp.student.name, exp.teacher.name)
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def dataset_section(dataset: str) -> List[str]:
    """The table of one dataset and its notes."""
    by_key = {(e.method, e.student.name, e.teacher.name): e for e in EXPERIMENTS
              if e.dataset == dataset and e.teacher is not None and not e.variant}
    methods = METHODS[dataset]
    notes: List[str] = []
    lines = [f'## {TITLES[dataset]}', '', '| student ← teacher | ' + ' | '.join(t for _, t, _ in methods) + ' |',
             '|---|' + '---:|' * len(methods)]
    for student, teacher in _pairs(dataset):
        cells = [_cell(by_key.get((m, student, teacher)), shown, notes) for m, _, shown in methods]
        lines.append(f'| {student} ← {teacher} | ' + ' | '.join(cells) + ' |')
    lines += [''] + [f'[{i}] {note}' + ('' if note.endswith('.') else '.') for i, note in enumerate(notes, 1)]
    return lines


def results_page() -> str:
    """The whole page."""
    lines = ['# Results the shipped configs are compared with', '',
             'The papers\' top-1 (%) of every shipped experiment, as its config records it (`reference:`; the same '
             'number `report` compares a run with), written from the experiment table '
             '(`ttm_torchdistill/config_generator/`) by `python -m ttm_torchdistill.config_generator.results_page`. In '
             'brackets, the hyperparameters tuned per pair: TTM and WTTM (γ, β) with temperature 1/γ and weight β '
             '(TTM Tables 8 and 9), DKD\'s β (NCKD weight), the MLKD+AT loss weight. `*`: inferred (the config says '
             'from what); `n/a`: no paper reports it; `-`: no config. **No full 240-epoch or ImageNet training has '
             'been run with these configs**: the numbers are the papers\'.', '']
    for dataset in METHODS:
        lines += dataset_section(dataset) + ['']
    return '\n'.join(lines).rstrip('\n') + '\n'


if __name__ == '__main__':
    sys.stdout.write(results_page())
