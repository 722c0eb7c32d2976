"""``python -m ttm_torchdistill report``: results of many runs, across seeds, next to the papers' numbers.

The runner writes one JSON summary per run next to the student's checkpoint (``<dst_ckpt without suffix>.json``).
This command reads any number of them, groups them by ``experiment`` (the config path below ``configs/``),
and prints one Markdown table per dataset with, for each experiment: the seeds, the best-epoch and the
last-epoch validation top-1 as mean ± sample standard deviation, the paper's top-1 with the table it comes from,
and the difference between the last-epoch mean and the paper. The paper's number is the experiment's row in
the experiment table (:mod:`ttm_torchdistill.experiments`, which also generates the shipped configs); for an
experiment the table does not know (a config of your own) it is the ``reference`` block the run recorded.

Both best and last are shown on purpose: RepDistiller (and so CRD) reported the last epoch, TTM does not say
which it reports, and the best epoch selected on the test split is optimistic. ``--plot FILE.png`` draws the
validation top-1 of every run per epoch (needs matplotlib: ``pip install 'ttm_torchdistill[plot]'``).

Example::

    python -m ttm_torchdistill report ./resource/ckpt/cifar100/wttm/*.json --plot wttm.png
"""
import argparse
import json
import math
import statistics
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .errors import UserError, error_line
from .experiments import by_name
from .run.summary import SUMMARY_FORMAT

PROG = 'python -m ttm_torchdistill report'
# --set keys that move files or tune loading but leave the experiment itself unchanged
_BOOKKEEPING_KEYS = ('dst_ckpt', 'root', 'num_workers', 'pin_memory', 'log_freq')


class ReportError(UserError):
    """A run summary that cannot be reported, or a report that cannot be drawn; the message names the file."""


class RunSummary:
    """The fields of one run summary that the report uses (validated on load)."""

    def __init__(self, path: Path, experiment: str, dataset: Optional[str], reference: Optional[dict],
                 seed: Optional[int], best_top1: float, last_top1: float, epochs: List[dict],
                 overrides: Sequence[str] = (), planned_epochs: Optional[int] = None):
        self.path = path
        self.config_experiment = experiment  # the config's name, before --set variants are appended
        variant = [o for o in overrides if not o.split('=', 1)[0].endswith(_BOOKKEEPING_KEYS)]
        # runs of one config with different --set values (an ablation) are different experiments
        self.experiment = experiment + (f' [{"; ".join(variant)}]' if variant else '')
        self.is_variant = bool(variant)
        self.planned_epochs = planned_epochs
        self.dataset = dataset
        self.reference = reference
        self.seed = seed
        self.best_top1 = best_top1
        self.last_top1 = last_top1
        self.epochs = epochs


def _get(data: dict, dotted: str, path: Path):
    node = data
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            raise ReportError(f"{path}: missing key '{dotted}' (not a run summary written by the runner?)")
        node = node[part]
    return node


def _number(data: dict, dotted: str, path: Path) -> float:
    value = _get(data, dotted, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ReportError(f"{path}: '{dotted}' must be a finite number, got {value!r}")
    return float(value)


def load_summary(path) -> RunSummary:
    """Read and validate one run summary JSON (schema ``format: 1``)."""
    path = Path(path)
    if path.is_dir():
        raise ReportError(f'{path}: is a directory; pass run-summary files, e.g. {path}/*.json')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ReportError(f'{path}: no such file') from None
    except json.JSONDecodeError as error:
        raise ReportError(f'{path}: not valid JSON ({error})') from None
    if not isinstance(data, dict):
        raise ReportError(f'{path}: expected a JSON object (a run summary), got {type(data).__name__}')
    fmt = _get(data, 'format', path)
    if fmt != SUMMARY_FORMAT:
        raise ReportError(f'{path}: run-summary format {fmt!r} is not supported (expected {SUMMARY_FORMAT})')
    experiment = _get(data, 'experiment', path)
    if not isinstance(experiment, str) or not experiment:
        raise ReportError(f"{path}: 'experiment' must be a non-empty string, got {experiment!r}")
    dataset = _get(data, 'dataset', path)
    if dataset is not None and not isinstance(dataset, str):
        raise ReportError(f"{path}: 'dataset' must be a string or null, got {dataset!r}")
    reference = _get(data, 'reference', path)
    if reference is not None:
        if not isinstance(reference, dict):
            raise ReportError(f"{path}: 'reference' must be an object or null, got {reference!r}")
        top1 = reference.get('top1')
        if top1 is not None and (isinstance(top1, bool) or not isinstance(top1, (int, float))):
            raise ReportError(f"{path}: 'reference.top1' must be a number or null, got {top1!r}")
    seed = _get(data, 'seed', path)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ReportError(f"{path}: 'seed' must be an integer or null, got {seed!r}")
    epochs = _get(data, 'epochs', path)
    if not isinstance(epochs, list):
        raise ReportError(f"{path}: 'epochs' must be a list, got {type(epochs).__name__}")
    for index, entry in enumerate(epochs):
        for key in ('epoch', 'val_top1'):
            if not isinstance(entry, dict) or key not in entry:
                raise ReportError(f"{path}: missing key 'epochs[{index}].{key}'")
    overrides = data.get('overrides', [])  # absent from summaries written before it was recorded
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ReportError(f"{path}: 'overrides' must be a list of strings, got {overrides!r}")
    planned = data.get('planned_epochs')
    if planned is not None and (isinstance(planned, bool) or not isinstance(planned, int)):
        raise ReportError(f"{path}: 'planned_epochs' must be an integer or null, got {planned!r}")
    return RunSummary(path, experiment, dataset, reference, seed, _number(data, 'best.top1', path),
                      _number(data, 'last.top1', path), epochs, overrides, planned)


def group_runs(runs: Sequence[RunSummary]) -> Dict[str, Dict[str, List[RunSummary]]]:
    """{dataset: {experiment: [runs]}} in the order first seen; refuses duplicated or inconsistent runs."""
    grouped: Dict[str, Dict[str, List[RunSummary]]] = OrderedDict()
    seen_files = {}
    for run in runs:
        resolved = run.path.resolve()
        if resolved in seen_files:
            raise ReportError(f'{run.path}: given twice (also as {seen_files[resolved]}); pass each run once')
        seen_files[resolved] = run.path
        dataset = run.dataset if run.dataset is not None else '(dataset not recorded)'
        experiments = grouped.setdefault(dataset, OrderedDict())
        others = experiments.setdefault(run.experiment, [])
        for other in others:
            if run.seed is not None and other.seed == run.seed:
                raise ReportError(f'{run.path}: same experiment {run.experiment!r} and seed {run.seed} as '
                                  f'{other.path}; a seed should count once in the mean')
            if (other.reference or {}).get('top1') != (run.reference or {}).get('top1'):
                raise ReportError(f"{run.path}: reference.top1 {(run.reference or {}).get('top1')!r} differs from "
                                  f"{(other.reference or {}).get('top1')!r} in {other.path} for experiment "
                                  f'{run.experiment!r}; were they run from different configs?')
        others.append(run)
    return grouped


def mean_std(values: Sequence[float]):
    """Mean and sample standard deviation (n - 1 in the denominator); std is None for a single value."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def _mean_std_text(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f'{mean:.2f} ± {"n/a" if std is None else f"{std:.2f}"}'


def _seeds_text(runs: Sequence[RunSummary]) -> str:
    seeds = [run.seed for run in runs]
    numbered = sorted(s for s in seeds if s is not None)
    text = ', '.join(str(s) for s in numbered)
    unseeded = sum(s is None for s in seeds)
    if unseeded:
        text = (text + ', ' if text else '') + f'{unseeded} unseeded'
    return text


def _epochs_text(runs: Sequence[RunSummary]) -> str:
    """Epochs run (of planned): '240', or e.g. '3 of 240 (incomplete)', so short runs are not taken for results."""
    texts = []
    for run in runs:
        done = len(run.epochs)
        text = str(done) if run.planned_epochs in (None, done) else f'{done} of {run.planned_epochs} (incomplete)'
        if text not in texts:
            texts.append(text)
    return ', '.join(texts)


def _difference_text(runs: Sequence[RunSummary], last_mean: float, paper: Optional[float]) -> str:
    # a run with overridden settings is not the paper's experiment: its distance to the paper means nothing
    if paper is None:
        return 'n/a'
    if runs[0].is_variant:
        return 'n/a (--set)'
    return f'{last_mean - paper:+.2f}'


def paper_reference(run: RunSummary) -> dict:
    """{'paper', 'table', 'top1', ...} of a run's experiment: its row in the experiment table, else the
    ``reference`` block the run recorded (empty when it has none)."""
    row = by_name(run.config_experiment)
    if row is None:
        return run.reference or {}
    ref = row.reference
    return {'paper': ref.paper, 'table': ref.table, 'top1': ref.top1, 'note': ref.note}


def format_tables(grouped: Dict[str, Dict[str, List[RunSummary]]]) -> str:
    """The Markdown report: one table per dataset, then a note on the statistics."""
    blocks = []
    for dataset, experiments in grouped.items():
        lines = [f'### {dataset}', '',
                 '| experiment | n | seeds | epochs | best top-1 | last top-1 | paper top-1 | last - paper '
                 '| paper source |',
                 '|---|---:|---|---|---:|---:|---:|---:|---|']
        for experiment, runs in experiments.items():
            reference = paper_reference(runs[0])
            paper = reference.get('top1')
            last_mean, _ = mean_std([run.last_top1 for run in runs])
            source = ' '.join(str(reference[k]) for k in ('paper', 'table') if reference.get(k)) or 'n/a'
            lines.append('| {} | {} | {} | {} | {} | {} | {} | {} | {} |'.format(
                experiment, len(runs), _seeds_text(runs), _epochs_text(runs),
                _mean_std_text([run.best_top1 for run in runs]), _mean_std_text([run.last_top1 for run in runs]),
                'n/a' if paper is None else f'{paper:.2f}',
                _difference_text(runs, last_mean, paper), source))
        blocks.append('\n'.join(lines))
    note = ('Top-1 in %, mean ± sample standard deviation (n - 1 denominator) over the runs; n/a for a single run. '
            '"best" is the best validation epoch of each run, "last" its final epoch; the difference uses the '
            'last-epoch mean. Paper numbers come from the experiment table (ttm_torchdistill/experiments/table.py), '
            'or for experiments not in it from the reference block each run recorded. Runs with different --set '
            'overrides are listed as separate experiments, without a difference to the paper; "incomplete" runs '
            'stopped before the planned epochs.')
    return '\n\n'.join(blocks + [note]) + '\n'


def plot_runs(grouped: Dict[str, Dict[str, List[RunSummary]]], out_path) -> List[str]:
    """Draw validation top-1 per epoch of every run (one panel per dataset) into ``out_path``.

    :return: notices about runs that had nothing to draw.
    :raises ReportError: if matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use('Agg')  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("--plot needs matplotlib, which is not installed: pip install 'ttm_torchdistill[plot]' "
                          '(or pip install matplotlib)') from None
    notices = []
    fig, axes = plt.subplots(1, len(grouped), figsize=(7 * len(grouped), 5), squeeze=False)
    for axis, (dataset, experiments) in zip(axes[0], grouped.items()):
        colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
        for index, (experiment, runs) in enumerate(experiments.items()):
            color = colors[index % len(colors)]
            for run in runs:
                if not run.epochs:
                    notices.append(f'{run.path}: no epochs recorded, not drawn')
                    continue
                label = f'{experiment} (seed {run.seed})'
                axis.plot([e['epoch'] for e in run.epochs], [e['val_top1'] for e in run.epochs], color=color,
                          linewidth=1, label=label)
            paper = paper_reference(runs[0]).get('top1')
            if paper is not None:
                axis.axhline(paper, color=color, linestyle='--', linewidth=1, label=f'{experiment} paper {paper:.2f}')
        axis.set_title(dataset)
        axis.set_xlabel('epoch')
        axis.set_ylabel('validation top-1 (%)')
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize='small')
    fig.tight_layout()
    try:
        fig.savefig(out_path)
    except OSError as error:
        raise ReportError(f'--plot {out_path}: cannot write the figure ({error})') from None
    finally:
        plt.close(fig)
    return notices


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Tabulate run summaries (the <checkpoint>.json files the runner writes) across seeds: '
                    'best and last-epoch top-1 as mean ± sample std per experiment, next to the paper\'s number.',
        epilog='example: python -m ttm_torchdistill report ./resource/ckpt/cifar100/wttm/*.json --plot wttm.png')
    parser.add_argument('summaries', nargs='+', metavar='RUN_SUMMARY',
                        help='run-summary JSON files, e.g. ./resource/ckpt/cifar100/wttm/*.json')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='also draw validation top-1 per epoch of every run into FILE.png (needs matplotlib)')
    return parser


def main(argv=None) -> int:
    """Entry point of ``python -m ttm_torchdistill report``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        grouped = group_runs([load_summary(path) for path in args.summaries])
        notices = plot_runs(grouped, args.plot) if args.plot else []
    except ReportError as error:
        print(error_line(error), file=sys.stderr)
        return 1
    sys.stdout.write(format_tables(grouped))
    for notice in notices:
        print(f'{PROG}: note: {notice}', file=sys.stderr)
    if args.plot:
        print(f'{PROG}: wrote {args.plot}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
