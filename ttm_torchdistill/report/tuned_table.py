"""``report``'s tuned table, from a study folder's ``search/tuned.json`` and its confirm runs' summaries: per
experiment the chosen values, the validation top-1 of the choice (on the held-out images, mean over the trial's
seeds), the trials, the confirm runs' test top-1 (last epoch, full training set) as mean ± sample std over the
study's seeds, the paper's number and the difference."""
import json
import os
import statistics
from pathlib import Path
from typing import List, Optional, Sequence

from .tables import load_summary, paper_reference

TUNED_PATH = os.path.join('search', 'tuned.json')
COLUMNS = ['experiment', 'chosen (trial)', 'trials', 'val top-1 (holdout)', 'n', 'test top-1', 'paper top-1',
           'test - paper']


def tuned_rows(paths: Sequence[str]) -> List[dict]:
    """The tuned rows of the study folders among ``paths`` (none without a finished search)."""
    rows = []
    for folder in paths:
        path = os.path.join(folder, TUNED_PATH)
        if not os.path.isfile(path):
            continue
        with open(path) as fp:
            tuned = json.load(fp)
        for item in tuned['experiments']:
            found = [os.path.join(folder, s) for s in item['confirm'] if os.path.isfile(os.path.join(folder, s))]
            runs = [load_summary(s) for s in found]
            tests = [run.last_top1 for run in runs]
            paper = paper_reference(runs[0]).get('top1') if runs else None
            mean = statistics.fmean(tests) if tests else None
            rows.append({'experiment': item['experiment'], 'params': item['params'], 'trial': item['trial'],
                         'trials': item['trials'], 'val_top1': item['val_top1'], 'holdout': tuned['holdout'],
                         'n': len(runs), 'of': len(item['confirm']), 'seeds': [run.seed for run in runs],
                         'test_top1': {'mean': mean, 'std': statistics.stdev(tests) if len(tests) > 1 else None},
                         'paper_top1': paper, 'test_minus_paper': None if paper is None or mean is None
                         else mean - paper})
    return rows


def _value(value) -> str:
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def _number(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.2f}'


def tuned_markdown(rows: List[dict]) -> str:
    """The tuned table and its note (empty without rows)."""
    if not rows:
        return ''
    lines = ['### tuned on held-out training images, confirmed on test', '', '| ' + ' | '.join(COLUMNS) + ' |',
             '|---|---|---|---:|---:|---:|---:|---:|']
    for row in rows:
        chosen = ', '.join(f'{k.rsplit(".", 1)[-1]}={_value(v)}' for k, v in row['params'].items())
        trials = ', '.join(f'{n} {state}' for state, n in row['trials'].items() if n)
        test = row['test_top1']
        test_text = 'n/a' if test['mean'] is None else f'{test["mean"]:.2f} ± {_number(test["std"])}'
        difference = row['test_minus_paper']
        difference_text = 'n/a' if difference is None else f'{difference:+.2f}'
        lines.append(f'| {row["experiment"]} | {chosen} ({row["trial"]}) | {trials} | {_number(row["val_top1"])} '
                     f'| {row["n"]} of {row["of"]} | {test_text} | {_number(row["paper_top1"])} '
                     f'| {difference_text} |')
    note = ('The chosen setting is the best complete trial of a search that validated on held-out training images '
            'only (mean over the trial\'s seeds of each run\'s best held-out top-1); the confirm runs trained it on '
            'the full training set over the study\'s seeds, and "test top-1" is their last epoch\'s top-1 (the epoch '
            'count fixed in advance: nothing selected on the test set).')
    return '\n'.join(lines) + '\n\n' + note + '\n'


def with_tuned(text: str, fmt: str, paths: Sequence[str]) -> str:
    """The report with the tuned table of the study folders that searched (markdown: after the table; json: the
    ``tuned`` key; csv: unchanged)."""
    tuned = tuned_rows([path for path in paths if Path(path).is_dir()])
    if not tuned or fmt == 'csv':
        return text
    if fmt == 'json':
        return json.dumps(dict(json.loads(text), tuned=tuned), indent=1) + '\n'
    return text + '\n' + tuned_markdown(tuned)
