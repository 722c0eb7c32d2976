"""Where each experiment's search stands, its chosen setting, and the confirm runs.

A search is finished when its budget of trials has been asked and none of them is still running. Its chosen
setting is Optuna's best trial (the highest mean over the trial's seeds of the best validation top-1 on the
held-out images, among the complete trials). The confirm runs train the chosen setting on the full training set
(no holdout) over every seed of the study, ``<out>/runs/<experiment>/tuned/seed<S>``: ordinary study runs, run and
reported like a grid's. Their figure is the last epoch's top-1 on the config's validation loader (the test split
in the shipped configs): the epoch count is fixed in advance, so nothing is selected on the test set (the best
epoch, chosen on it, is not the tuned table's figure). ``<out>/search/tuned.json`` records the choice for
``report``.
"""
import os
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional

from .. import task_state
from ..plan import RUNS_DIR, Plan, Run
from .engine import search_dir, trials_of
from .spec import require_optuna
from .trials import SearchPlan, value_overrides

TUNED_FILE, TUNED_VARIANT = 'tuned.json', 'tuned'


@dataclass(frozen=True)
class Progress:
    """One experiment's search: counts by Optuna state, and the best complete trial so far (None before one)."""
    experiment: str
    counts: Dict[str, int]
    budget: int
    best_number: Optional[int] = None
    best_value: Optional[float] = None
    best_params: Optional[Dict[str, Any]] = None

    @property
    def asked(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> bool:
        return self.asked >= self.budget and not self.counts.get('running')

    def text(self) -> str:
        counts = ', '.join(f'{n} {name}' for name, n in self.counts.items() if n) or 'none started'
        line = f'search {self.experiment}: {self.asked} of {self.budget} trials asked ({counts})'
        if self.best_number is not None:
            values = ', '.join(f'{k.rsplit(".", 1)[-1]}={v:.4g}' if isinstance(v, float) else
                               f'{k.rsplit(".", 1)[-1]}={v}' for k, v in self.best_params.items())
            line += f'; best trial {self.best_number}: val top-1 {self.best_value:.2f} ({values})'
        return line + ('; finished' if self.finished else '')


def progress(search: SearchPlan) -> List[Progress]:
    """Where the search of every experiment stands, read from the storage."""
    optuna = require_optuna(search.plan.study.path)
    found = []
    for template in search.templates:
        trials = trials_of(search.spec, search.plan.study.path, search.plan.study.out_dir, template.experiment)
        counts = {name.lower(): sum(t.state == member for t in trials)
                  for name, member in optuna.trial.TrialState.__members__.items() if name != "WAITING"}
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
        found.append(Progress(template.experiment, counts, search.spec.trials,
                              *((best.number, best.value, best.params) if best else ())))
    return found


def confirm_runs(search: SearchPlan, chosen: Progress) -> List[Run]:
    """The runs of the chosen setting: full training set, every seed of the study."""
    study = search.plan.study
    template = next(t for t in search.templates if t.experiment == chosen.experiment)
    params = {p.path: chosen.best_params[p.path] for p in search.spec.space}
    no_holdout = replace(study.runtime, holdout=None)
    runs = []
    for seed in study.seeds:
        run_id = f'{chosen.experiment}/{TUNED_VARIANT}/seed{seed}'
        runs.append(replace(template, run_id=run_id, variant=TUNED_VARIANT, seed=seed,
                            overrides=tuple(study.overrides) + value_overrides(params),
                            folder=os.path.join(search.plan.out, RUNS_DIR, run_id),
                            flags=tuple(no_holdout.flags() + no_holdout.track_flags(search.plan.out, study.name,
                                                                                   run_id))))
    return runs


def confirm_plan(search: SearchPlan, found: List[Progress]) -> Plan:
    """The study's plan of confirm runs: those of every experiment whose search is finished with a complete trial."""
    runs = [run for item in found if item.finished and item.best_number is not None
            for run in confirm_runs(search, item)]
    # without the holdout: what study run compares a finished run's config with (changed runs) is the full set's
    study = replace(search.plan.study, runtime=replace(search.plan.study.runtime, holdout=None))
    return replace(search.plan, study=study, runs=tuple(runs), caches=())


def write_tuned(search: SearchPlan, found: List[Progress]) -> None:
    """``<out>/search/tuned.json``: per finished experiment, the chosen values, the trial, its validation top-1,
    the trial counts, the holdout, and the confirm runs' summaries (relative to ``out``)."""
    study = search.plan.study
    experiments = []
    for item in found:
        if not (item.finished and item.best_number is not None):
            continue
        experiments.append({'experiment': item.experiment, 'params': item.best_params, 'trial': item.best_number,
                            'val_top1': item.best_value, 'trials': item.counts, 'trial_seeds': list(search.seeds),
                            'confirm': [os.path.relpath(run.summary, search.plan.out)
                                        for run in confirm_runs(search, item)]})
    task_state.write_json(os.path.join(search_dir(study.out_dir), TUNED_FILE),
                     {'format': 1, 'study': study.name, 'holdout': study.runtime.holdout,
                      'holdout_seed': study.runtime.holdout_seed, 'experiments': experiments})
