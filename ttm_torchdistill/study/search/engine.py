"""Optuna as the study's search engine: one Optuna study per experiment, in a storage that every ``study run`` and
Slurm array task of the study shares, and the claim of a trial by exactly one process.

Storage: Optuna's ``JournalStorage`` over a ``JournalFileBackend`` with a ``JournalFileOpenLock`` (a lock file made
with ``O_EXCL``, as the run locks are: safe on NFS), one journal per experiment ``<out>/search/<experiment>/
journal.log``; or the database URL of ``search.storage`` (one Optuna study per experiment, named after it).

A trial is claimed under the search mutex (a POSIX record lock on ``<out>/search/claim.mutex``, and a thread lock
for the slots of one process): first a trial that is still running in the storage but whose trial lock is free or
stale (an interrupted, killed or requeued attempt: it continues, ``--resume``), else a new trial while the budget
allows. Claiming and asking under one mutex is what keeps two processes from running one trial, or from asking
more trials than ``search.trials``. Each new trial's sampler is seeded from ``sampler_seed`` and the trial number,
so the suggestion does not depend on which process asks, and two processes never draw the same random start.
"""
import fcntl
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from .. import locks
from ..slurm_queue import QueueSnapshot
from .spec import Param, SearchSpec, require_optuna

SEARCH_DIR, JOURNAL, MUTEX = 'search', 'journal.log', 'claim.mutex'
_threads = threading.Lock()


def search_dir(out_dir: str, experiment: Optional[str] = None) -> str:
    """``<out>/search`` (and the experiment's folder below it)."""
    return os.path.join(out_dir, SEARCH_DIR, *([experiment] if experiment else []))


def trial_folder(out: str, experiment: str, number: int) -> str:
    """The folder of trial ``number``: its lock, and a run folder per seed below it."""
    return os.path.join(search_dir(out, experiment), f'trial{number}')


def storage(spec: SearchSpec, path: str, out_dir: str, experiment: str):
    """The Optuna storage of ``experiment``'s search (the journal file is made on first use)."""
    optuna = require_optuna(path)
    optuna.logging.set_verbosity(logging.WARNING)  # a line per trial would drown the study's own progress lines
    if spec.storage is not None:
        return optuna.storages.RDBStorage(spec.storage)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
    folder = search_dir(out_dir, experiment)
    os.makedirs(folder, exist_ok=True)
    journal = os.path.join(folder, JOURNAL)
    return optuna.storages.JournalStorage(JournalFileBackend(journal, lock_obj=JournalFileOpenLock(journal + '.lock')))


def load(spec: SearchSpec, path: str, out_dir: str, experiment: str, number: int = 0, store=None):
    """The Optuna study of ``experiment`` (created on first use), its TPE sampler seeded for trial ``number``."""
    optuna = require_optuna(path)
    store = store or storage(spec, path, out_dir, experiment)
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed * 1000003 + number,
                                         n_startup_trials=spec.startup_trials, constant_liar=True)
    pruner = optuna.pruners.NopPruner() if spec.pruner is None else optuna.pruners.MedianPruner(
        n_startup_trials=spec.pruner.startup_trials, n_warmup_steps=spec.pruner.warmup_epochs)
    return optuna.create_study(storage=store, study_name=experiment, direction='maximize', load_if_exists=True,
                               sampler=sampler, pruner=pruner)


def trial_id(store, experiment: str, number: int) -> int:
    """The storage's id of trial ``number`` of ``experiment`` (ids are per storage, numbers per study)."""
    return store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(experiment), number)


def suggest(trial, param: Param) -> Any:
    """Trial ``trial``'s value of ``param`` (Optuna's name for it is its dotted path)."""
    if param.choices is not None:
        return trial.suggest_categorical(param.path, list(param.choices))
    if param.is_int:
        return trial.suggest_int(param.path, param.low, param.high, step=param.step or 1, log=param.log)
    return trial.suggest_float(param.path, float(param.low), float(param.high), step=param.step, log=param.log)


@contextmanager
def claim_mutex(out_dir: str) -> Iterator[None]:
    """Exclusive among the slots of this process and every process sharing the study folder."""
    folder = search_dir(out_dir)
    os.makedirs(folder, exist_ok=True)
    with _threads:
        fd = os.open(os.path.join(folder, MUTEX), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            os.close(fd)


@dataclass
class Claimed:
    """A trial this process runs: its number, values (by dotted path), trial lock, and whether it continues."""
    experiment: str
    number: int
    params: Dict[str, Any]
    lock: Any
    resumed: bool


def claim(spec: SearchSpec, path: str, out: str, out_dir: str, experiment: str, queue: QueueSnapshot,
          job_id: Optional[str] = None) -> Optional[Claimed]:
    """A running trial whose lock is free or stale, else a new trial within the budget; None when neither is left.

    :param out: the study folder as the runs' paths use it; ``out_dir`` as an absolute path.
    """
    optuna = require_optuna(path)
    with claim_mutex(out_dir):
        store = storage(spec, path, out_dir, experiment)
        trials = load(spec, path, out_dir, experiment, store=store).get_trials(deepcopy=False)
        for frozen in trials:
            if frozen.state == optuna.trial.TrialState.RUNNING:
                lock, _ = locks.acquire(trial_folder(out, experiment, frozen.number), out_dir, queue, job_id)
                if lock is not None:
                    return Claimed(experiment, frozen.number, ordered(spec, frozen.params), lock, True)
        if len(trials) >= spec.trials:
            return None
        study = load(spec, path, out_dir, experiment, number=len(trials), store=store)
        trial = study.ask()
        params = {param.path: suggest(trial, param) for param in spec.space}
        lock, holder = locks.acquire(trial_folder(out, experiment, trial.number), out_dir, queue, job_id)
        if lock is None:  # a new trial's folder is nobody's: a leftover of another storage
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            raise RuntimeError(f'{trial_folder(out, experiment, trial.number)}: locked by {holder} though the '
                               f'trial is new (a folder left from another search storage?)')
        return Claimed(experiment, trial.number, params, lock, False)


def ordered(spec: SearchSpec, params: Dict[str, Any]) -> Dict[str, Any]:
    """``params`` in the order of the space."""
    return {param.path: params[param.path] for param in spec.space}


def trials_of(spec: SearchSpec, path: str, out_dir: str, experiment: str) -> List[Any]:
    """The frozen trials of ``experiment``'s search (none before it started)."""
    if spec.storage is None and not os.path.isfile(os.path.join(search_dir(out_dir, experiment), JOURNAL)):
        return []
    return load(spec, path, out_dir, experiment).get_trials(deepcopy=False)
