"""Results of many runs, across seeds, next to the papers' numbers: load, group, aggregate, format, plot.

The runner writes one JSON summary per run next to the student's checkpoint (``<dst_ckpt without suffix>.json``);
a study folder (``python -m ttm_torchdistill study run``) also holds ``plan.json``, the runs it should contain.
Runs are grouped by dataset, experiment (the config path below ``configs/``, with the ``--set`` values that make
it a variant), the digest of the config they trained with (runs of one experiment name from edited configs are
separate rows, labelled ``[config <digest>]``) and runtime (the speed options: a stock and a fast-path run of one seed
are two rows, side by side). A run whose config changed between its sessions (``--resume --continue-changed``) is
never averaged: it is listed apart, with its changes.
Each row has the seeds, the best-epoch and the last-epoch validation top-1 as mean ± sample standard deviation,
the paper's top-1 with its source and the difference of the last-epoch mean to it, the mean epoch time and the
training images per second. The paper's number is the experiment's row in the experiment table
(:mod:`ttm_torchdistill.config_generator`), else the ``reference`` block the run recorded.

Both best and last are shown on purpose: RepDistiller (and so CRD) reported the last epoch, TTM does not say
which it reports, and the best epoch selected on the test split is optimistic. The command line is
:mod:`ttm_torchdistill.commands.report`.
"""
import csv
import io
import json
import math
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UserError
from ..config_generator import by_name
from ..run.summary import SUMMARY_FORMAT

# --set keys that move files or tune loading but leave the experiment itself unchanged
_BOOKKEEPING_KEYS = ('dst_ckpt', 'root', 'num_workers', 'pin_memory', 'log_freq')
#: The study folder's list of runs (written by ``study run``).
STUDY_MANIFEST = 'plan.json'
#: Columns of every format, in order.
COLUMNS = ('experiment', 'runtime', 'n', 'seeds', 'epochs', 'best top-1', 'last top-1', 'test top-1', 'paper top-1',
           'last - paper', 'epoch time (s)', 'img/s', 'paper source')
RUNTIME_ORDER = ('device_data', 'amp', 'channels_last', 'compile', 'teacher_cache')


class ReportError(UserError):
    """A run summary that cannot be reported, or a report that cannot be drawn; the message names the file."""


def runtime_label(runtime) -> str:
    """``'stock'``, or the speed options that are on (``'device_data, amp=bf16, teacher_cache'``); the cache's
    folder is left out (every seed reads its own). ``'not recorded'`` for summaries without the block."""
    if not isinstance(runtime, dict):
        return 'not recorded'
    on = []
    for key in RUNTIME_ORDER + tuple(k for k in runtime if k not in RUNTIME_ORDER):
        value = runtime.get(key)
        if value in (False, None, 'off') or (key == 'holdout_seed' and not runtime.get('holdout')):
            continue
        on.append(key if value is True or key == 'teacher_cache' else f'{key}={value}')
    return ', '.join(on) if on else 'stock'


class RunSummary:
    """The fields of one run summary that the report uses (validated on load)."""

    def __init__(self, path: Path, experiment: str, dataset: Optional[str], reference: Optional[dict],
                 seed: Optional[int], best_top1: float, last_top1: float, epochs: List[dict],
                 overrides: Sequence[str] = (), planned_epochs: Optional[int] = None, runtime: Optional[dict] = None,
                 config_digest: Optional[str] = None, changed_mid_run: Sequence[str] = (),
                 test_top1: Optional[float] = None):
        self.path = path
        self.test_top1 = test_top1  # the test top-1 of the best checkpoint (None when the run recorded none)
        self.config_digest = config_digest
        self.changed_mid_run = list(changed_mid_run)
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
        self.runtime = runtime_label(runtime)

    def epoch_time(self) -> Optional[float]:
        """Mean ``epoch_time_s`` over the recorded epochs (None when none has it)."""
        times = [e['epoch_time_s'] for e in self.epochs if _is_number(e.get('epoch_time_s'))]
        return statistics.fmean(times) if times else None

    def images_per_s(self) -> Optional[float]:
        """Training images per second of training time over the epochs that record both."""
        pairs = [(e['train_images'], e['train_time_s']) for e in self.epochs
                 if _is_number(e.get('train_images')) and _is_number(e.get('train_time_s')) and e['train_time_s'] > 0]
        return sum(i for i, _ in pairs) / sum(t for _, t in pairs) if pairs else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _get(data: dict, dotted: str, path: Path):
    node = data
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            raise ReportError(f"{path}: missing key '{dotted}' (not a run summary written by the runner?)")
        node = node[part]
    return node


def _number(data: dict, dotted: str, path: Path) -> float:
    value = _get(data, dotted, path)
    if not _is_number(value):
        raise ReportError(f"{path}: '{dotted}' must be a finite number, got {value!r}")
    return float(value)


def _read_json(path: Path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise ReportError(f'{path}: no such file') from None
    except json.JSONDecodeError as error:
        raise ReportError(f'{path}: not valid JSON ({error})') from None


def load_summary(path) -> RunSummary:
    """Read and validate one run summary JSON (schema ``format: 1``)."""
    path = Path(path)
    data = _read_json(path)
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
    runtime = data.get('runtime')
    if runtime is not None and not isinstance(runtime, dict):
        raise ReportError(f"{path}: 'runtime' must be an object or null, got {runtime!r}")
    digest = data.get('config_digest')  # absent from summaries written before it was recorded
    if digest is not None and not isinstance(digest, str):
        raise ReportError(f"{path}: 'config_digest' must be a string or null, got {digest!r}")
    changed = data.get('changed_mid_run', [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        raise ReportError(f"{path}: 'changed_mid_run' must be a list of strings, got {changed!r}")
    student_test = ((data.get('test') or dict()).get('student') or dict()).get('top1')
    return RunSummary(path, experiment, dataset, reference, seed, _number(data, 'best.top1', path),
                      _number(data, 'last.top1', path), epochs, overrides, planned, runtime, digest, changed,
                      float(student_test) if _is_number(student_test) else None)


@dataclass
class StudyRuns:
    """What a study folder holds: the summaries of finished runs, and the runs that are missing or failed.

    :param missing: ``[(run id, what is known)]`` of planned runs without a summary and without a failure.
    :param failed: ``[(run id, error line, log path)]``.
    :param changed: ``[(summary path, changes)]`` of finished runs whose config changed between sessions (filled by
        :func:`report_text`; never averaged).
    """
    summaries: List[Path] = field(default_factory=list)
    missing: List[Tuple[str, str]] = field(default_factory=list)
    failed: List[Tuple[str, str, Optional[str]]] = field(default_factory=list)
    changed: List[Tuple[str, List[str]]] = field(default_factory=list)


def read_study_folder(folder: Path) -> StudyRuns:
    """The runs of a study folder, from its ``plan.json`` and the run folders (see :mod:`ttm_torchdistill.study`)."""
    manifest_path = folder / STUDY_MANIFEST
    if not manifest_path.is_file():
        raise ReportError(f'{folder}: is a directory without {STUDY_MANIFEST} (not a study folder written by '
                          f'`study run`); pass run-summary files, e.g. {folder}/*.json')
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get('runs'), list):
        raise ReportError(f"{manifest_path}: expected an object with a 'runs' list (written by `study run`)")
    result = StudyRuns()
    for entry in manifest['runs']:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ('id', 'summary', 'folder')):
            raise ReportError(f"{manifest_path}: every run needs 'id', 'summary' and 'folder' strings, got {entry!r}")
        summary = folder / entry['summary']
        if summary.is_file():
            result.summaries.append(summary)
            continue
        failed_path = folder / entry['folder'] / 'failed.json'
        failed = _read_json(failed_path) if failed_path.is_file() else None
        if isinstance(failed, dict):
            result.failed.append((entry['id'], str(failed.get('error')), failed.get('log')))
        else:
            started = (folder / entry['folder'] / 'console.log').is_file()
            result.missing.append((entry['id'], 'started, not finished' if started else 'not started'))
    return result


def collect(paths: Sequence[str]) -> StudyRuns:
    """Run-summary files and study folders, as one :class:`StudyRuns`."""
    result = StudyRuns()
    for path in map(Path, paths):
        if path.is_dir():
            folder = read_study_folder(path)
            result.summaries += folder.summaries
            result.missing += folder.missing
            result.failed += folder.failed
        else:
            result.summaries.append(path)
    return result


Grouped = Dict[str, Dict[Tuple[str, str], List[RunSummary]]]


def _config_labels(runs: Sequence[RunSummary]) -> Dict[int, str]:
    """``{id(run): ' [config <digest>]'}`` for runs of an experiment and runtime trained from configs that differ
    (several digests); empty labels otherwise."""
    digests: Dict[Tuple[str, str], set] = {}
    for run in runs:
        digests.setdefault((run.experiment, run.runtime), set()).add(run.config_digest)
    return {id(run): f' [config {(run.config_digest or "not recorded")[:8]}]'
            if len(digests[(run.experiment, run.runtime)]) > 1 else '' for run in runs}


def group_runs(runs: Sequence[RunSummary]) -> Grouped:
    """``{dataset: {(experiment, runtime): [runs]}}`` in the order first seen; refuses duplicated or inconsistent
    runs (a seed counts once per experiment and runtime). Runs of one experiment trained from different configs
    (another digest) are separate experiments, labelled with their digest."""
    grouped: Grouped = OrderedDict()
    seen_files = {}
    labels = _config_labels(runs)
    for run in runs:
        resolved = run.path.resolve()
        if resolved in seen_files:
            raise ReportError(f'{run.path}: given twice (also as {seen_files[resolved]}); pass each run once')
        seen_files[resolved] = run.path
        run.experiment += labels[id(run)]
        dataset = run.dataset if run.dataset is not None else '(dataset not recorded)'
        experiments = grouped.setdefault(dataset, OrderedDict())
        others = experiments.setdefault((run.experiment, run.runtime), [])
        for other in others:
            if run.seed is not None and other.seed == run.seed:
                raise ReportError(f'{run.path}: same experiment {run.experiment!r}, runtime {run.runtime!r} and seed '
                                  f'{run.seed} as {other.path}; a seed should count once in the mean')
        for (experiment, _), members in experiments.items():
            other = members[0] if experiment == run.experiment and members else None
            if other is not None and (other.reference or {}).get('top1') != (run.reference or {}).get('top1'):
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


def paper_reference(run: RunSummary) -> dict:
    """{'paper', 'table', 'top1', ...} of a run's experiment: its row in the experiment table, else the
    ``reference`` block the run recorded (empty when it has none)."""
    row = by_name(run.config_experiment)
    if row is None:
        return run.reference or {}
    ref = row.reference
    return {'paper': ref.paper, 'table': ref.table, 'top1': ref.top1, 'note': ref.note}


@dataclass
class Row:
    """One experiment and runtime over its seeds (numbers unrounded; None where not applicable)."""
    dataset: str
    experiment: str
    runtime: str
    runs: List[RunSummary]
    seeds: List[Optional[int]]
    epochs: str
    best_mean: float
    best_std: Optional[float]
    last_mean: float
    last_std: Optional[float]
    test_mean: Optional[float]
    test_std: Optional[float]
    paper_top1: Optional[float]
    difference: Optional[float]
    difference_note: str
    epoch_time_s: Optional[float]
    images_per_s: Optional[float]
    paper_source: str


def _epochs_text(runs: Sequence[RunSummary]) -> str:
    """Epochs run (of planned): '240', or e.g. '3 of 240 (incomplete)', so short runs are not taken for results."""
    texts = []
    for run in runs:
        done = len(run.epochs)
        text = str(done) if run.planned_epochs in (None, done) else f'{done} of {run.planned_epochs} (incomplete)'
        if text not in texts:
            texts.append(text)
    return ', '.join(texts)


def _mean_of(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def aggregate(grouped: Grouped) -> List[Row]:
    """One :class:`Row` per dataset, experiment and runtime, in the grouped order."""
    rows = []
    for dataset, experiments in grouped.items():
        for (experiment, runtime), runs in experiments.items():
            reference = paper_reference(runs[0])
            paper = reference.get('top1')
            best_mean, best_std = mean_std([run.best_top1 for run in runs])
            last_mean, last_std = mean_std([run.last_top1 for run in runs])
            tests = [run.test_top1 for run in runs]
            test_mean, test_std = mean_std(tests) if None not in tests else (None, None)
            # a run with overridden settings is not the paper's experiment: its distance to the paper means nothing
            difference = None if paper is None or runs[0].is_variant else last_mean - paper
            note = 'n/a' if paper is None else 'n/a (--set)' if runs[0].is_variant else ''
            rows.append(Row(dataset, experiment, runtime, list(runs), [run.seed for run in runs], _epochs_text(runs),
                            best_mean, best_std, last_mean, last_std, test_mean, test_std, paper, difference, note,
                            _mean_of([run.epoch_time() for run in runs]),
                            _mean_of([run.images_per_s() for run in runs]),
                            ' '.join(str(reference[k]) for k in ('paper', 'table') if reference.get(k)) or 'n/a'))
    return rows


def _seeds_text(seeds: Sequence[Optional[int]]) -> str:
    numbered = sorted(s for s in seeds if s is not None)
    text = ', '.join(str(s) for s in numbered)
    unseeded = sum(s is None for s in seeds)
    if unseeded:
        text = (text + ', ' if text else '') + f'{unseeded} unseeded'
    return text


def _mean_std_text(mean: float, std: Optional[float]) -> str:
    return f'{mean:.2f} ± {"n/a" if std is None else f"{std:.2f}"}'


def row_cells(row: Row) -> List[str]:
    """The row as the text of :data:`COLUMNS`."""
    return [row.experiment, row.runtime, str(len(row.runs)), _seeds_text(row.seeds), row.epochs,
            _mean_std_text(row.best_mean, row.best_std), _mean_std_text(row.last_mean, row.last_std),
            'n/a' if row.test_mean is None else _mean_std_text(row.test_mean, row.test_std),
            'n/a' if row.paper_top1 is None else f'{row.paper_top1:.2f}',
            row.difference_note or f'{row.difference:+.2f}',
            'n/a' if row.epoch_time_s is None else f'{row.epoch_time_s:.1f}',
            'n/a' if row.images_per_s is None else f'{row.images_per_s:.0f}', row.paper_source]


NOTE = ('Top-1 in %, mean ± sample standard deviation (n - 1 denominator) over the runs; n/a for a single run. "best" '
        'is the best validation epoch of each run, "last" its final epoch, "test" the final test of the best '
        "checkpoint; the difference uses the last-epoch mean. The papers' configs validate on the test set, so there "
        '"best" is chosen on the test set itself; a row whose runtime says holdout=N chose its best epoch on N held-out'
        ' training images: "best" is the held-out top-1 and "test" the test top-1 of that checkpoint, the honest figure'
        ' (such runs are never mixed with the others in a row). Paper numbers come from the experiment table '
        '(ttm_torchdistill/config_generator/table.py), or for experiments not in it from the reference block each run '
        'recorded. Runs with different --set overrides, or trained from configs that differ (labelled [config '
        '<digest>]), are listed as separate experiments, without a difference to the paper; runs whose config changed '
        'between sessions are listed apart and never averaged; "incomplete" runs stopped before the planned epochs. '
        '"runtime" is the speed options of the runs (stock: none), which never change what is learned (holdout aside); '
        'epoch time includes validation, img/s counts training images per second of training.')


def format_markdown(rows: Sequence[Row], study: Optional[StudyRuns] = None) -> str:
    """One Markdown table per dataset, the note on the statistics, then missing and failed runs."""
    blocks = []
    for dataset in OrderedDict((row.dataset, None) for row in rows):
        lines = [f'### {dataset}', '', '| ' + ' | '.join(COLUMNS) + ' |',
                 '|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|']
        lines += ['| ' + ' | '.join(row_cells(row)) + ' |' for row in rows if row.dataset == dataset]
        blocks.append('\n'.join(lines))
    blocks.append(NOTE)
    if study is not None and study.failed:
        blocks.append('\n'.join([f'**Failed runs ({len(study.failed)})**', ''] +
                                [f'- {run_id}: {error}' + (f' (log: {log})' if log else '')
                                 for run_id, error, log in study.failed]))
    if study is not None and study.missing:
        blocks.append('\n'.join([f'**Missing runs ({len(study.missing)})**', ''] +
                                [f'- {run_id}: {what}' for run_id, what in study.missing]))
    if study is not None and study.changed:
        blocks.append('\n'.join([f'**Changed mid-run, not averaged ({len(study.changed)})**', ''] +
                                [f'- {path}: {"; ".join(changes)}' for path, changes in study.changed]))
    return '\n\n'.join(blocks) + '\n'


def format_csv(rows: Sequence[Row], study: Optional[StudyRuns] = None) -> str:
    """One line per row, numbers unrounded; missing and failed runs are lines with a ``status`` column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['status', 'dataset', 'experiment', 'runtime', 'n', 'seeds', 'epochs', 'best_top1_mean',
                     'best_top1_std', 'last_top1_mean', 'last_top1_std', 'test_top1_mean', 'test_top1_std',
                     'paper_top1', 'last_minus_paper',
                     'epoch_time_s', 'images_per_s', 'paper_source', 'detail'])
    for row in rows:
        writer.writerow(['done', row.dataset, row.experiment, row.runtime, len(row.runs),
                         ' '.join(str(s) for s in row.seeds if s is not None), row.epochs, row.best_mean,
                         _blank(row.best_std), row.last_mean, _blank(row.last_std), _blank(row.test_mean),
                         _blank(row.test_std), _blank(row.paper_top1),
                         _blank(row.difference), _blank(row.epoch_time_s), _blank(row.images_per_s),
                         row.paper_source, row.difference_note])
    for run_id, error, log in (study.failed if study else []):
        writer.writerow(['failed', '', run_id] + [''] * 15 + [f'{error} (log: {log})' if log else error])
    for run_id, what in (study.missing if study else []):
        writer.writerow(['missing', '', run_id] + [''] * 15 + [what])
    for path, changes in (study.changed if study else []):
        writer.writerow(['changed mid-run', '', path] + [''] * 15 + ['; '.join(changes)])
    return out.getvalue()


def _blank(value):
    return '' if value is None else value


def format_json(rows: Sequence[Row], study: Optional[StudyRuns] = None) -> str:
    """``{"rows": [...], "failed": [...], "missing": [...]}`` with unrounded numbers and the summary files."""
    data = {'rows': [{'dataset': row.dataset, 'experiment': row.experiment, 'runtime': row.runtime,
                      'n': len(row.runs), 'seeds': row.seeds, 'epochs': row.epochs,
                      'best_top1': {'mean': row.best_mean, 'std': row.best_std},
                      'last_top1': {'mean': row.last_mean, 'std': row.last_std},
                      'test_top1': {'mean': row.test_mean, 'std': row.test_std},
                      'paper_top1': row.paper_top1, 'last_minus_paper': row.difference,
                      'epoch_time_s': row.epoch_time_s, 'images_per_s': row.images_per_s,
                      'paper_source': row.paper_source, 'summaries': [str(run.path) for run in row.runs]}
                     for row in rows],
            'failed': [{'run': r, 'error': e, 'log': log} for r, e, log in (study.failed if study else [])],
            'missing': [{'run': r, 'state': s} for r, s in (study.missing if study else [])],
            'changed_mid_run': [{'summary': p, 'changes': c} for p, c in (study.changed if study else [])]}
    return json.dumps(data, indent=1) + '\n'


FORMATS = {'markdown': format_markdown, 'csv': format_csv, 'json': format_json}


def _short_label(row: Row, width: int = 60) -> str:
    label = row.experiment if row.runtime in ('stock', 'not recorded') else f'{row.experiment} ({row.runtime})'
    return label if len(label) <= width else label[:width - 3] + '...'


def plot_runs(rows: Sequence[Row], out_path) -> List[str]:
    """Validation top-1 per epoch: per row, the mean over its seeds with a band from the lowest to the highest
    seed (one panel per dataset, legends below the axes). A run of one epoch is drawn as a point.

    :return: notices about runs that had nothing to draw.
    :raises ReportError: if matplotlib is not installed or the file cannot be written.
    """
    try:
        import matplotlib
        matplotlib.use('Agg')  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("--plot needs matplotlib, which is not installed: pip install 'ttm_torchdistill[plot]' "
                          '(or pip install matplotlib)') from None
    notices = []
    datasets = list(OrderedDict((row.dataset, None) for row in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 5), squeeze=False,
                             layout='constrained')
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for axis, dataset in zip(axes[0], datasets):
        for index, row in enumerate(r for r in rows if r.dataset == dataset):
            color = colors[index % len(colors)]
            curves: Dict[int, List[float]] = {}
            for run in row.runs:
                if not run.epochs:
                    notices.append(f'{run.path}: no epochs recorded, not drawn')
                for entry in run.epochs:
                    curves.setdefault(int(entry['epoch']), []).append(float(entry['val_top1']))
            if not curves:
                continue
            epochs = sorted(curves)
            means = [statistics.fmean(curves[e]) for e in epochs]
            label = f'{_short_label(row)} (n={len(row.runs)})'
            axis.plot(epochs, means, color=color, linewidth=1.2, marker='o' if len(epochs) == 1 else None,
                      markersize=4, label=label)
            if len(row.runs) > 1:
                axis.fill_between(epochs, [min(curves[e]) for e in epochs], [max(curves[e]) for e in epochs],
                                  color=color, alpha=0.2, linewidth=0)
            if row.paper_top1 is not None:
                axis.axhline(row.paper_top1, color=color, linestyle='--', linewidth=1)
        axis.set_title(dataset)
        axis.set_xlabel('epoch')
        axis.set_ylabel('validation top-1 (%): mean, band min-max over seeds')
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.15), ncol=1, frameon=False)
    try:
        fig.savefig(out_path, bbox_inches='tight')
    except OSError as error:
        raise ReportError(f'--plot {out_path}: cannot write the figure ({error})') from None
    finally:
        plt.close(fig)
    return notices


def report_text(paths: Sequence[str], fmt: str = 'markdown') -> Tuple[str, List[Row], StudyRuns]:
    """Load, group, aggregate and format; returns ``(text, rows, study runs)``."""
    study = collect(paths)
    summaries = [load_summary(path) for path in study.summaries]
    study.changed = [(str(run.path), run.changed_mid_run) for run in summaries if run.changed_mid_run]
    rows = aggregate(group_runs([run for run in summaries if not run.changed_mid_run]))
    if not rows and not study.failed and not study.missing and not study.changed:
        raise ReportError(f'{", ".join(map(str, paths))}: no run summaries to report')
    return FORMATS[fmt](rows, study), rows, study


__all__ = ['ReportError', 'RunSummary', 'StudyRuns', 'Row', 'COLUMNS', 'FORMATS', 'load_summary', 'collect',
           'read_study_folder', 'group_runs', 'aggregate', 'mean_std', 'paper_reference', 'runtime_label',
           'format_markdown', 'format_csv', 'format_json', 'plot_runs', 'report_text']
