"""A trial as the study's own runs: one run per search seed, ``<out>/search/<experiment>/trial<N>/seed<S>``, each
the runner's command with the study's ``set``, the trial's values as ``--set`` overrides and the holdout flags.

The seeds of a trial run one after the other in the slot (or Slurm array task) that claimed it, each through the
study's attempt (:func:`~ttm_torchdistill.study.attempt.settle`: lock, console log, ``--resume`` of an interrupted
run). While a run trains, its ``run.log`` is read every :data:`POLL_S` seconds: each epoch's validation top-1 (on
the held-out images) is reported to Optuna at step ``seed index x epochs + epoch - 1`` (the same seed and epoch in
every trial, which is what the median pruner compares), and when the pruner says so the trial is recorded as
pruned first, then its command is stopped (SIGINT: it keeps its last checkpoint, like any stopped run). A trial
whose runs are done is told to Optuna with the mean over its seeds of the best validation top-1 (each run's best
epoch, chosen on the held-out images); a failed run fails the trial; an interrupted one leaves it running in the
storage, and the next claim continues it.
"""
import json
import os
import re
import signal
import statistics
import threading
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

from .. import attempt as attempts
from .. import runner_api
from ...errors import StudyError, UserError
from ..plan import Plan, Run, config_path
from ..study_file import grid_value_text
from .engine import Claimed, load, storage, trial_folder, trial_id
from .spec import Param, require_optuna

#: Seconds between two reads of a running trial's run log.
POLL_S = 0.5
#: The runner's line for a finished epoch (``Epoch 2/240 done in 41.2s: ... val top-1 71.23 ...``).
EPOCH_LINE = re.compile(r'Epoch (\d+)/\d+ done in .*?val top-1 (\S+)')
#: How a trial ended, as the study reports it.
COMPLETE, PRUNED, FAILED, INTERRUPTED = 'complete', 'pruned', 'failed', 'interrupted'


@dataclass(frozen=True)
class SearchPlan:
    """A study with ``search:``: the planned runs of one seed per experiment are the templates of its trial and
    confirm runs (config, student, epochs, teacher), ``plan`` the study's plan."""
    plan: Plan
    templates: Tuple[Run, ...]

    @property
    def spec(self):
        return self.plan.study.search

    @property
    def seeds(self) -> Tuple[int, ...]:
        """The seeds of every trial."""
        return self.spec.seeds or self.plan.study.seeds[:1]


def search_plan(plan: Plan) -> SearchPlan:
    """The templates of a search study's plan (its runs of the study's first seed, one per experiment), once every
    path of the space is checked against every config.

    :raises StudyError: a path a config does not have, or a range or choice of another kind than its value.
    """
    first = plan.study.seeds[0]
    templates = tuple(run for run in plan.runs if run.seed == first)
    for template in templates:
        for param in plan.study.search.space:
            check_param(plan, template.config, param)
    return SearchPlan(plan, templates)


def _kind(value: Any) -> str:
    if value is None:
        return 'null'
    return 'bool' if isinstance(value, bool) else type(value).__name__


def check_param(plan: Plan, config: str, param: Param) -> None:
    """A range replaces a number (an integer range an int or a float, a float range a float); a choice a value of
    its kind (an int may replace a float; a null in the config accepts anything)."""
    study = plan.study
    where = f'{study.path}: search.space.{param.path}'
    try:
        existing = runner_api.value_kind(config_path(study, config), study.overrides, param.path)
    except UserError as exc:
        raise StudyError(f'{where}: {exc} (in {config})') from None
    if existing in ('null', 'tagged'):
        return
    if param.choices is None:
        if existing != 'float' and not (param.is_int and existing == 'int'):
            raise StudyError(f'{where}: a {"int" if param.is_int else "float"} range, but {config} has {existing} '
                             f'there')
        return
    for choice in param.choices:
        kind = _kind(choice)
        if not (kind == existing or kind == 'null' or (kind == 'int' and existing == 'float')):
            raise StudyError(f'{where}: choice {choice!r} is {kind}, but {config} has {existing} there')


def value_overrides(params: Dict[str, Any]) -> Tuple[str, ...]:
    """A trial's values as ``--set`` overrides."""
    return tuple(f'{key}={grid_value_text(value)}' for key, value in params.items())


def trial_runs(search: SearchPlan, template: Run, number: int, params: Dict[str, Any]) -> List[Run]:
    """The runs of trial ``number`` (one per search seed), from the experiment's template."""
    study, runs = search.plan.study, []
    for seed in search.seeds:
        run_id = f'{template.experiment}/trial{number}/seed{seed}'
        runs.append(replace(template, run_id=run_id, variant=f'trial{number}', seed=seed,
                            overrides=tuple(study.overrides) + value_overrides(params),
                            folder=os.path.join(trial_folder(search.plan.out, template.experiment, number),
                                                f'seed{seed}'),
                            flags=tuple(study.runtime.flags() + study.runtime.track_flags(search.plan.out, study.name,
                                                                                          run_id))))
    return runs


def epoch_values(run_log: str) -> Dict[int, float]:
    """``{epoch: validation top-1}`` of the epochs the run's log reports done (every attempt; the last line wins)."""
    try:
        with open(run_log, encoding='utf-8', errors='replace') as fp:
            text = fp.read()
    except FileNotFoundError:
        return {}
    values = {}
    for epoch, value in EPOCH_LINE.findall(text):
        try:
            values[int(epoch)] = float(value)
        except ValueError:  # a value the runner did not write as a number: not reported
            continue
    return values


class Monitor:
    """Reports a running run's epochs to its trial and stops the run when the pruner says so."""

    def __init__(self, trial, run: Run, first_step: int, reported: set):
        self.trial, self.run, self.first_step, self.reported = trial, run, first_step, reported
        self.process, self.pruned = None, False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def started(self, process) -> None:
        self.process = process

    def poll(self) -> None:
        """Report the epochs not reported yet; once pruned, stop the command."""
        for epoch, value in sorted(epoch_values(self.run.run_log).items()):
            step = self.first_step + epoch - 1
            if step in self.reported or self.pruned:
                continue
            self.trial.report(value, step)
            self.reported.add(step)
            self.pruned = self.trial.should_prune()
        if self.pruned and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # the runner stops with `error: interrupted`, checkpoint kept

    def watch(self) -> None:
        while not self.done.wait(POLL_S):
            self.poll()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.poll()  # the epochs logged since the last read (the run may have ended in between)


def best_top1(run: Run) -> float:
    """The best validation top-1 a finished run recorded (on the held-out images)."""
    with open(run.summary) as fp:
        return float(json.load(fp)['best']['top1'])


def run_trial(search: SearchPlan, claimed: Claimed, env: Optional[Dict[str, str]] = None,
              job_id: Optional[str] = None, on_start=None) -> str:
    """Run (or continue) a claimed trial to its end; returns COMPLETE, PRUNED, FAILED or INTERRUPTED."""
    optuna = require_optuna(search.plan.study.path)
    template = next(t for t in search.templates if t.experiment == claimed.experiment)
    spec, out_dir = search.spec, search.plan.study.out_dir
    store = storage(spec, search.plan.study.path, out_dir, claimed.experiment)
    study = load(spec, search.plan.study.path, out_dir, claimed.experiment, store=store)
    trial = optuna.trial.Trial(study, trial_id(store, claimed.experiment, claimed.number))
    reported = set(study.get_trials(deepcopy=False)[claimed.number].intermediate_values)
    runs = trial_runs(search, template, claimed.number, claimed.params)
    try:
        for index, run in enumerate(runs):
            with Monitor(trial, run, index * template.planned_epochs, reported) as monitor:
                outcome = attempts.settle(run, search.plan, env=env, job_id=job_id,
                                          on_start=lambda p: (monitor.started(p), on_start and on_start(p)))
            if monitor.pruned:
                study.tell(claimed.number, state=optuna.trial.TrialState.PRUNED)
                return PRUNED
            if outcome == attempts.FAILED:
                study.tell(claimed.number, state=optuna.trial.TrialState.FAIL)
                return FAILED
            if outcome != attempts.DONE:
                return INTERRUPTED
        study.tell(claimed.number, statistics.fmean(best_top1(run) for run in runs))
        return COMPLETE
    finally:
        claimed.lock.release()
