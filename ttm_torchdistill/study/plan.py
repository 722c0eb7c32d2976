"""From a study file to its runs and caches: configs (globs) x grid variants x seeds, checked before anything runs.

A run is the runner's own command (:func:`Run.argv`): the config, the seed, the study's ``set`` and the variant's
grid values as ``--set`` overrides, its own ``dst_ckpt`` and ``--run_log`` in its folder
``<out>/runs/<experiment>/<variant>/seed<S>``, and the study's ``runtime`` as flags.
"""
import glob
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import UserError
from . import runner_api
from .caches import CacheNeed, cache_for, no_cache_reason
from ..errors import StudyError
from .study_file import Study, grid_value_text

RUNS_DIR = 'runs'
#: Where ``study run --restart-changed`` moves the folders of runs it starts again.
REPLACED_DIR = 'replaced'
#: Files of a run folder (the checkpoint's summary and last checkpoint sit next to it).
CKPT_NAME, RUN_LOG, CONSOLE_LOG = 'student.pt', 'run.log', 'console.log'


@dataclass(frozen=True)
class Run:
    """One run of the study.

    :param run_id: ``<experiment>/<variant>/seed<S>``, also its folder below ``<out>/runs`` and its Slurm job name.
    :param overrides: ``--set`` values of the run (study ``set``, then grid values), without ``dst_ckpt``.
    :param folder: the run folder (relative to the study's base folder when ``out`` is relative).
    :param cache: the teacher cache it reads, or None (:attr:`no_cache` says why).
    :param teacher_ckpt: the teacher's local ``src_ckpt`` as the config gives it (None without one), and
        ``teacher_key`` its model key: what :func:`missing_teachers` checks before anything starts.
    :param continue_changed: a resumed attempt passes ``--continue-changed`` (``study run --continue-changed``: the
        run continues under values the study changed since it started).
    """
    run_id: str
    experiment: str
    variant: str
    seed: int
    config: str
    overrides: Tuple[str, ...]
    folder: str
    student_name: str
    planned_epochs: int
    flags: Tuple[str, ...]
    gpus: int
    cache: Optional[CacheNeed]
    no_cache: Optional[str]
    teacher_ckpt: Optional[str] = None
    teacher_key: Optional[str] = None
    continue_changed: bool = False

    @property
    def dst_ckpt(self) -> str:
        return os.path.join(self.folder, CKPT_NAME)

    @property
    def summary(self) -> str:
        return runner_api.summary_path(self.dst_ckpt)

    @property
    def last_ckpt(self) -> str:
        return runner_api.last_ckpt_path(self.dst_ckpt)

    @property
    def run_log(self) -> str:
        return os.path.join(self.folder, RUN_LOG)

    def is_finished(self) -> bool:
        """Its summary exists and does not record fewer planned epochs than the study asks (a study that asks for
        more epochs continues the run)."""
        try:
            with open(self.summary) as fp:
                planned = json.load(fp).get('planned_epochs')
        except FileNotFoundError:
            return False
        except (OSError, ValueError, AttributeError):  # a summary the runner did not write: its presence decides
            return True
        return not isinstance(planned, int) or planned >= self.planned_epochs

    def all_overrides(self) -> List[str]:
        """The run's ``--set`` values as the runner records them (dst_ckpt last)."""
        return list(self.overrides) + [runner_api.dst_ckpt_override(self.student_name, self.dst_ckpt)]

    def argv(self, python: str, resume: bool) -> List[str]:
        """The runner's command for this run; ``resume`` continues from its last-epoch checkpoint."""
        flags = list(self.flags)
        if self.cache is not None:
            flags += ['--teacher-cache', self.cache.logits_dir]
        if resume and self.continue_changed:
            flags.append('--continue-changed')
        return runner_api.runner_argv(python, self.config, self.seed, self.all_overrides(), self.run_log, flags,
                                      resume, self.gpus)


@dataclass(frozen=True)
class Plan:
    """The runs of a study and the caches they read (built first), in a stable order."""
    study: Study
    runs: Tuple[Run, ...]
    caches: Tuple[CacheNeed, ...]
    python: str = sys.executable

    @property
    def out(self) -> str:
        """The study folder as the runs' paths use it (relative to the base folder when ``out`` is relative)."""
        return _out_path(self.study)

    def cache(self, key: str) -> CacheNeed:
        return next(c for c in self.caches if c.key == key)


def _out_path(study: Study) -> str:
    return os.path.normpath(os.path.expanduser(study.out))


def expand_configs(study: Study) -> List[str]:
    """The config paths of ``configs:`` (globs expanded, sorted per entry, first occurrence kept), as relative to
    the base folder as they were written."""
    found: List[str] = []
    for pattern in study.configs:
        full = os.path.join(study.base, os.path.expanduser(pattern))
        matches = sorted(glob.glob(full, recursive=True)) if glob.has_magic(pattern) else \
            ([full] if os.path.isfile(full) else [])
        if not matches:
            what = 'no config matched the glob' if glob.has_magic(pattern) else 'no such config file'
            raise StudyError(f'{study.path}: configs: {what} {pattern!r} (relative to {study.base})')
        for match in matches:
            if os.path.isdir(match):
                continue
            shown = os.path.relpath(match, study.base) if not os.path.isabs(os.path.expanduser(pattern)) else match
            if shown not in found:
                found.append(shown)
    return found


def _suffixes(keys: List[str]) -> Dict[str, str]:
    """The shortest dotted suffix of each key that no other key ends with (``...wttm.weight`` -> ``weight``)."""
    short = {}
    for key in keys:
        parts = key.split('.')
        for n in range(1, len(parts) + 1):
            candidate = '.'.join(parts[-n:])
            if not any(other != key and (other == candidate or other.endswith('.' + candidate)) for other in keys):
                short[key] = candidate
                break
        else:
            short[key] = key
    return short


def _variants(study: Study) -> List[Tuple[str, Tuple[str, ...]]]:
    """``[(label, overrides)]``: one ``('base', ())`` without a grid, else one per combination of grid values."""
    if not study.grid:
        return [('base', ())]
    keys = [key for key, _ in study.grid]
    short = _suffixes(keys)
    variants, labels = [], {}
    for combination in itertools.product(*[values for _, values in study.grid]):
        texts = [grid_value_text(v) for v in combination]
        label = ','.join(f'{short[k]}={t}' for k, t in zip(keys, texts))
        label = re.sub(r'[^A-Za-z0-9._=,+\-\[\]]', '_', label.replace(', ', ','))
        if label in labels:
            raise StudyError(f'{study.path}: grid: variants {labels[label]} and {combination} give the same folder '
                             f'name {label!r}')
        labels[label] = combination
        variants.append((label, tuple(f'{k}={t}' for k, t in zip(keys, texts))))
    return variants


def _kind_of(value) -> str:
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'bool'
    return {int: 'int', float: 'float', str: 'str', list: 'list', dict: 'mapping'}.get(type(value), 'other')


def _check_grid_types(study: Study, config: str) -> None:
    """A grid value must have the kind of the value it replaces (an int may replace a float; null is open)."""
    for key, values in study.grid:
        try:
            existing = runner_api.value_kind(config_path(study, config), study.overrides, key)
        except UserError as exc:
            raise StudyError(f'{study.path}: grid.{key}: {exc} (in {config})') from None
        for value in values:
            kind = _kind_of(value)
            fits = existing in ('null', 'tagged') or kind == 'null' or kind == existing or \
                (kind == 'int' and existing == 'float')
            if not fits:
                article = 'an' if existing[0] in 'aeiou' else 'a'
                raise StudyError(f'{study.path}: grid.{key}: value {value!r} is {kind}, but {config} has {article} '
                                 f'{existing} there')


def make_plan(study: Study, python: str = sys.executable) -> Plan:
    """Expand and check a study: every config exists, every ``set`` and ``grid`` path applies to every config, and
    no two runs share a folder.

    :raises StudyError: naming the study file, the key and the config.
    """
    out = _out_path(study)
    pending: List[Tuple[dict, Optional[str]]] = []  # a run's fields and its cache key, until caches are complete
    caches: Dict[str, CacheNeed] = {}
    experiments: Dict[str, str] = {}
    for config in expand_configs(study):
        try:
            runner_api.check_overrides(config_path(study, config), study.overrides)
        except UserError as exc:
            raise StudyError(f'{study.path}: set: {exc} (in {config})') from None
        _check_grid_types(study, config)
        for label, grid_overrides in _variants(study):
            overrides = tuple(study.overrides) + grid_overrides
            try:
                facts = runner_api.config_facts(config_path(study, config), overrides)
            except UserError as exc:
                raise StudyError(f'{study.path}: {config} with {list(overrides)}: {exc}') from None
            _check_device_data(study, config, facts)
            if experiments.setdefault(facts.experiment, config) != config:
                raise StudyError(f'{study.path}: configs: {config} and {experiments[facts.experiment]} are both '
                                 f'experiment {facts.experiment!r} (its folder below out); keep one')
            for seed in study.seeds:
                run_id = f'{facts.experiment}/{label}/seed{seed}'
                need = cache_for(study.runtime.teacher_cache, out, config, overrides, seed, facts, study.cache_dtype)
                if need is not None:
                    # a cache grows to the most epochs any of its runs trains
                    caches[need.key] = caches[need.key].with_epochs(need.epochs) if need.key in caches else need
                fields = dict(run_id=run_id, experiment=facts.experiment, variant=label, seed=seed, config=config,
                              overrides=overrides, folder=os.path.join(out, RUNS_DIR, run_id),
                              student_name=facts.student_name, planned_epochs=facts.planned_epochs,
                              flags=tuple(study.runtime.flags(facts.device_data_refusal)
                                          + study.runtime.track_flags(out, study.name, run_id)),
                              gpus=study.resources.gpus,
                              no_cache=no_cache_reason(study.runtime.teacher_cache, facts),
                              teacher_ckpt=facts.teacher_ckpt, teacher_key=(facts.teacher_model or dict()).get('key'))
                pending.append((fields, None if need is None else need.key))
    runs = tuple(Run(cache=None if key is None else caches[key], **fields) for fields, key in pending)
    return Plan(study, runs, tuple(caches.values()), python)


def _check_device_data(study: Study, config: str, facts: runner_api.ConfigFacts) -> None:
    """``device_data: true`` promises the device data path to every run: a config it refuses is the study's error,
    found before anything is submitted (``auto`` leaves such a config on torchdistill's loader instead)."""
    if study.runtime.device_data is True and facts.device_data_refusal is not None:
        reason = facts.device_data_refusal.removeprefix('runtime.device_data: ')
        raise StudyError(f'{study.path}: runtime.device_data is true, but the device data path refuses {config} '
                         f'({reason}); write device_data: auto to run such configs on torchdistill\'s loader, or '
                         f'leave them out')


def config_path(study: Study, config: str) -> str:
    """A config path as the current process opens it (configs are listed relative to the study's base folder)."""
    return config if os.path.isabs(config) else os.path.join(study.base, config)


@dataclass(frozen=True)
class MissingTeacher:
    """A teacher checkpoint that runs load and that does not exist.

    :param path: the ``src_ckpt`` as the configs give it; :param model_key: the teacher's model key;
    :param run_ids: the runs that load it.
    """
    path: str
    model_key: Optional[str]
    run_ids: Tuple[str, ...]


def missing_teachers(plan: Plan, runs: Iterable[Run]) -> List[MissingTeacher]:
    """The teacher checkpoints of ``runs`` that do not exist where their processes (started in the study's base
    folder) will look, in the order of the runs. A run without its teacher fails at start-up, so a study that would
    start hundreds of them is refused first (:func:`missing_teachers_error`)."""
    found: Dict[Tuple[str, Optional[str]], List[str]] = {}
    for run in runs:
        if run.teacher_ckpt is None:
            continue
        if not os.path.isfile(os.path.join(plan.study.base, os.path.expanduser(run.teacher_ckpt))):
            found.setdefault((run.teacher_ckpt, run.teacher_key), []).append(run.run_id)
    return [MissingTeacher(path, key, tuple(ids)) for (path, key), ids in found.items()]


def missing_teachers_text(plan: Plan, missing: List[MissingTeacher]) -> str:
    """One line: every missing checkpoint with its teacher and number of runs, then how to get them (one
    ``fetch-teachers`` command for the public ones, the runner's advice for the others)."""
    runs = sum(len(m.run_ids) for m in missing)
    listed = ', '.join(f'{m.path} ({m.model_key}: {len(m.run_ids)} run{"" if len(m.run_ids) == 1 else "s"})'
                       for m in missing)
    fetchable = [runner_api.fetchable_teacher(m.model_key) for m in missing]
    names = list(dict.fromkeys(name for name in fetchable if name is not None))
    ways = [f'fetch them with: python -m ttm_torchdistill fetch-teachers --names {" ".join(names)}'] if names else []
    ways += [f'{m.model_key}: {runner_api.how_to_get_weights(m.model_key, "models.teacher_model.src_ckpt")}'
             for m, name in zip(missing, fetchable) if name is None]
    return (f'{runs} run{"" if runs == 1 else "s"} to do load teacher checkpoints that do not exist (paths relative '
            f'to {plan.study.base}): {listed}; {"; ".join(ways)}; or leave those configs out of the study file')


def missing_teachers_error(plan: Plan, missing: List[MissingTeacher]) -> StudyError:
    """Why ``study run`` starts nothing: each of those runs would fail at start-up for the same reason."""
    return StudyError(f'{plan.study.path}: nothing started: {missing_teachers_text(plan, missing)}')


@dataclass(frozen=True)
class ChangedRun:
    """A run trained (in part or to the end) with other values than the study now asks.

    :param changes: ``path: old -> new`` texts (more epochs aside, which a run simply continues to).
    :param finished: whether its summary exists.
    """
    run: Run
    changes: Tuple[str, ...]
    finished: bool


def changed_runs(plan: Plan) -> List[ChangedRun]:
    """The runs whose last session trained another config than the study now asks (its ``set``, grid values or the
    config file changed since), read from each run's attempts file. Runs that never completed an epoch start afresh
    anyway and are not listed."""
    changed = []
    for run in plan.runs:
        finished = run.is_finished()
        if not os.path.isfile(run.summary) and not os.path.isfile(run.last_ckpt):
            continue
        asked = runner_api.asked_tree(config_path(plan.study, run.config), tuple(run.overrides),
                                      plan.study.runtime.holdout, plan.study.runtime.holdout_seed)
        changes = runner_api.recorded_changes(run.dst_ckpt, asked)
        if changes:
            changed.append(ChangedRun(run, tuple(changes), finished))
    return changed


def changed_runs_text(changed: List[ChangedRun], limit: int = 3) -> str:
    """``run id (change; change), ...`` of the first ``limit`` runs, and how many more."""
    shown = ', '.join(f'{c.run.run_id} ({"; ".join(c.changes)})' for c in changed[:limit])
    return shown + (f' and {len(changed) - limit} more' if len(changed) > limit else '')


def changed_runs_error(plan: Plan, changed: List[ChangedRun]) -> StudyError:
    """Why ``study run`` starts nothing: continuing those runs would mix two settings under one variant."""
    finished = sum(c.finished for c in changed)
    return StudyError(
        f'{plan.study.path}: nothing started: {len(changed)} run{"" if len(changed) == 1 else "s"} '
        f'({finished} finished) {"was" if len(changed) == 1 else "were"} trained with other values than the study '
        f'now asks: {changed_runs_text(changed)}; '
        f'study run --continue-changed continues the unfinished ones under the new values (their summaries record '
        f'the change; finished ones keep their results), --restart-changed starts them all again (their folders are '
        f'moved to {os.path.join(plan.out, REPLACED_DIR)}/); more epochs alone need neither')


def with_continue_changed(plan: Plan, changed: List[ChangedRun]) -> Plan:
    """The plan with ``--continue-changed`` passed to the resumed attempts of the changed unfinished runs."""
    ids = {c.run.run_id for c in changed if not c.finished}
    runs = tuple(replace(run, continue_changed=True) if run.run_id in ids else run for run in plan.runs)
    return replace(plan, runs=runs)


def set_aside(plan: Plan, changed: List[ChangedRun], stamp: str) -> List[str]:
    """Move the folders of ``changed`` to ``<out>/replaced/<stamp>/<run id>`` (so they start again); returns the new
    folders. The caller has checked that none is running or queued."""
    moved = []
    for item in changed:
        target = os.path.join(plan.out, REPLACED_DIR, stamp, item.run.run_id)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(item.run.folder, target)
        moved.append(target)
    return moved
