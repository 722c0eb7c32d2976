"""The ``search:`` key of a study file, checked into a :class:`SearchSpec` (no Optuna needed to read it)::

    search:
      trials: 6                        # the budget: trials of each experiment, whatever their end
      space:                           # the same dotted paths as grid:
        train.criterion.kwargs.sub_terms.wttm.weight: {low: 0.5, high: 16, log: true}
        train.criterion.kwargs.sub_terms.wttm.temperature: {low: 1, high: 8}
        train.optimizer.kwargs.nesterov: [true, false]        # a list, or {choices: [...]}: categorical
      seeds: [0]                       # the seeds of every trial (default: the study's first seed)
      sampler_seed: 0                  # TPE's seed (each trial's sampler is seeded from it and the trial number)
      startup_trials: 3                # TPE's random trials before it models the space
      pruner: {startup_trials: 2, warmup_epochs: 1}           # Optuna's median pruner; false: no pruning
      storage: null                    # default: Optuna's journal file <out>/search/journal.log; or an RDB URL
"""
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from ...errors import StudyError

SEARCH_KEYS = ('trials', 'space', 'seeds', 'sampler_seed', 'startup_trials', 'pruner', 'storage')
RANGE_KEYS = ('low', 'high', 'log', 'step')
PRUNER_KEYS = ('startup_trials', 'warmup_epochs')
INSTALL = 'pip install "ttm_torchdistill[search]"'


@dataclass(frozen=True)
class Param:
    """One dimension of the space: a range (``low``, ``high``, ``log``, ``step``) or ``choices``."""
    path: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[Tuple[Any, ...]] = None

    @property
    def is_int(self) -> bool:
        """Integer bounds (and step): Optuna's ``suggest_int``; any float makes it ``suggest_float``."""
        return self.choices is None and all(_is_int(v) for v in (self.low, self.high, self.step) if v is not None)


@dataclass(frozen=True)
class Pruner:
    """Optuna's ``MedianPruner``: a trial stops when its validation top-1 at an epoch is below the median of the
    earlier trials at that epoch, once ``startup_trials`` trials have finished, from epoch ``warmup_epochs + 1``."""
    startup_trials: int = 2
    warmup_epochs: int = 0


@dataclass(frozen=True)
class SearchSpec:
    """A checked ``search:`` mapping (``seeds`` None: the study's first seed)."""
    trials: int
    space: Tuple[Param, ...]
    seeds: Optional[Tuple[int, ...]] = None
    sampler_seed: int = 0
    startup_trials: int = 3
    pruner: Optional[Pruner] = Pruner()
    storage: Optional[str] = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(path: str, key: str, message: str) -> StudyError:
    return StudyError(f'{path}: {key}: {message}')


def _count(path: str, key: str, value: Any, low: int) -> int:
    if not _is_int(value) or value < low:
        raise _fail(path, key, f'expected an integer >= {low}, got {value!r}')
    return value


def _unknown(path: str, where: str, data: dict, known: Tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise StudyError(f'{path}: unknown key {where}{key!r}; expected one of {", ".join(known)}')


def _param(path: str, key: Any, value: Any) -> Param:
    where = f'search.space.{key}'
    if not isinstance(key, str) or not key or any(p == '' for p in key.split('.')):
        raise StudyError(f'{path}: search.space: expected dotted config paths as keys, got {key!r}')
    if key.endswith('dst_ckpt'):
        raise _fail(path, where, 'the study gives every run its own dst_ckpt below out')
    if isinstance(value, dict) and 'choices' in value:
        _unknown(path, f'{where}.', value, ('choices',))
        value = value['choices']
    if isinstance(value, list):
        if not value or not all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
            raise _fail(path, where, f'expected a non-empty list of choices (null, bool, number or string), '
                                     f'got {value!r}')
        return Param(key, choices=tuple(value))
    if not isinstance(value, dict):
        raise _fail(path, where, f'expected {{low: L, high: H}} (log: true, step: S optional) or a list of choices, '
                                 f'got {value!r}')
    _unknown(path, f'{where}.', value, RANGE_KEYS)
    low, high, log, step = value.get('low'), value.get('high'), value.get('log', False), value.get('step')
    if not (_is_number(low) and _is_number(high) and low < high):
        raise _fail(path, where, f'expected numbers low < high, got low {low!r} and high {high!r}')
    if not isinstance(log, bool) or (log and low <= 0):
        raise _fail(path, where, f'log: expected true (with low > 0) or false, got {log!r} with low {low!r}')
    if step is not None and (not _is_number(step) or step <= 0 or log):
        raise _fail(path, where, f'step: expected a number > 0 without log: true, got {step!r}')
    return Param(key, low=low, high=high, log=log, step=step)


def _pruner(path: str, value: Any) -> Optional[Pruner]:
    if value is False or value is None:
        return None
    if value is True:
        return Pruner()
    if not isinstance(value, dict):
        raise _fail(path, 'search.pruner', f'expected false or a mapping of {", ".join(PRUNER_KEYS)}, got {value!r}')
    _unknown(path, 'search.pruner.', value, PRUNER_KEYS)
    return Pruner(_count(path, 'search.pruner.startup_trials', value.get('startup_trials', 2), 0),
                  _count(path, 'search.pruner.warmup_epochs', value.get('warmup_epochs', 0), 0))


def parse_search(path: str, value: Any, study_seeds: Tuple[int, ...]) -> SearchSpec:
    """Check the ``search:`` mapping of the study file at ``path`` (its seeds must be among ``study_seeds``)."""
    if not isinstance(value, dict):
        raise _fail(path, 'search', f'expected a mapping of {", ".join(SEARCH_KEYS)}, got {value!r}')
    _unknown(path, 'search.', value, SEARCH_KEYS)
    for key in ('trials', 'space'):
        if key not in value:
            raise _fail(path, 'search', f'missing key {key!r} (required: trials, space)')
    space = value['space']
    if not isinstance(space, dict) or not space:
        raise _fail(path, 'search.space', f'expected a mapping of dotted config path -> range or choices, '
                                          f'got {space!r}')
    seeds = value.get('seeds')
    if seeds is not None:
        seeds = [seeds] if _is_int(seeds) else seeds
        if not isinstance(seeds, list) or not seeds or not all(s in study_seeds for s in seeds) or \
                len(set(seeds)) != len(seeds):
            raise _fail(path, 'search.seeds', f'expected distinct seeds of the study\'s seeds {list(study_seeds)}, '
                                              f'got {value["seeds"]!r}')
        seeds = tuple(seeds)
    storage = value.get('storage')
    if storage is not None and (not isinstance(storage, str) or '://' not in storage):
        raise _fail(path, 'search.storage', f'expected null (a journal file below out) or a database URL such as '
                                            f'sqlite:///search.db, got {storage!r}')
    return SearchSpec(trials=_count(path, 'search.trials', value['trials'], 1),
                      space=tuple(_param(path, k, v) for k, v in space.items()), seeds=seeds,
                      sampler_seed=_count(path, 'search.sampler_seed', value.get('sampler_seed', 0), 0),
                      startup_trials=_count(path, 'search.startup_trials', value.get('startup_trials', 3), 0),
                      pruner=_pruner(path, value.get('pruner', True)), storage=storage)


def require_optuna(path: str):
    """The ``optuna`` module, or one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise StudyError(f'{path}: search: needs Optuna, which is not installed: {INSTALL}') from None
    return optuna
