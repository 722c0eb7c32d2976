"""Which trackers a run writes to, under which names, checked before anything is built.

Two vocabularies meet here. torchdistill 1.1.5's ``tracker:`` block of a config (``engine: trackio|wandb``, and
here ``tensorboard`` too; ``kwargs`` for the library's ``init``) keeps working as it does with torchdistill's example
script: same engine, same kwargs, same metric names. The runner's switch, ``runtime.track`` (``--track``), adds
engines without editing the config. An engine named by both takes the config's kwargs.

Names follow the study's layout: the run is ``<experiment>/<variant>/seed<S>`` (a study passes its run id), its
group everything but the last part, so a tracker shows the seeds of one experiment and variant together.
"""
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from ...errors import RunError
from ..config.identity import BOOKKEEPING_KEYS
from ..config.runtime import PREFIX, TRACK_ENGINES, Runtime

#: engine -> (module to import, extra of this package that installs it)
MODULES = {'tensorboard': ('tensorboard', 'tensorboard'), 'wandb': ('wandb', 'wandb'),
           'trackio': ('trackio', 'trackio')}
DEFAULT_DIR = 'track'
DEFAULT_PROJECT = 'ttm_torchdistill'


@dataclass(frozen=True)
class EngineSpec:
    """One tracker: its engine, the ``kwargs`` of the config's ``tracker:`` block (empty for ``--track``) and where
    it was asked for (named in errors)."""
    engine: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    where: str = 'runtime.track'


@dataclass(frozen=True)
class TrackPlan:
    """The trackers of a run and the names they share.

    :param folder: the trackers' folder (``runtime.track_dir``, default ``./track``): ``tensorboard/<name>``,
        ``wandb/`` (W&B's offline runs), ``trackio/`` (trackio's database).
    :param project: W&B and trackio project.
    :param name: the run's name, ``<experiment>/<variant>/seed<S>`` unless ``runtime.track_name`` says otherwise.
    """
    engines: Tuple[EngineSpec, ...]
    folder: str
    project: str
    name: str

    @property
    def group(self) -> str:
        """The runs one chart should show together: the name without its last part (the seed)."""
        return self.name.rsplit('/', 1)[0] if '/' in self.name else self.name

    def engine_names(self) -> Tuple[str, ...]:
        return tuple(spec.engine for spec in self.engines)


def _config_spec(block: Any) -> Optional[EngineSpec]:
    """The config's ``tracker:`` block as torchdistill reads it (None, or an engine of None, is no tracker)."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise RunError(f'tracker: expected a mapping with engine ({", ".join(TRACK_ENGINES)}) and kwargs, got '
                       f'{block!r}')
    unknown = [key for key in block if key not in ('engine', 'kwargs')]
    if unknown:
        raise RunError(f'tracker: unknown key {unknown[0]!r}; expected engine and kwargs (torchdistill\'s block)')
    engine = block.get('engine')
    if engine is None:
        return None
    if engine not in TRACK_ENGINES:
        raise RunError(f'tracker.engine: expected one of {", ".join(TRACK_ENGINES)}, got {engine!r}')
    kwargs = block.get('kwargs') or dict()
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise RunError(f'tracker.kwargs: expected a mapping of {engine}\'s init arguments, got {kwargs!r}')
    return EngineSpec(engine, dict(kwargs), 'tracker.engine')


def variant_of(overrides: Sequence[str]) -> str:
    """``base``, or the ``--set`` values that change what is learned as ``key=value`` by their last key part
    (``train.criterion.kwargs.sub_terms.wttm.weight=4.0`` -> ``weight=4.0``), joined by commas."""
    parts = []
    for assignment in overrides:
        key, _, value = assignment.partition('=')
        key = key.strip()
        if key.startswith(PREFIX) or key.rsplit('.', 1)[-1] in BOOKKEEPING_KEYS:
            continue
        # a value with a slash (a path) would open another folder level of the name
        parts.append(f'{key.rsplit(".", 1)[-1]}={"".join(value.split()).replace("/", "_")}')
    return ','.join(parts) or 'base'


def plan_tracking(tracker_block: Any, runtime: Runtime, experiment: str, seed: int,
                  overrides: Sequence[str]) -> Optional[TrackPlan]:
    """The run's trackers (None when it has none), from the config's ``tracker:`` block and ``runtime.track*``.

    :raises RunError: a malformed ``tracker:`` block or a run name that is not a relative path.
    """
    specs = {}
    configured = _config_spec(tracker_block)
    if configured is not None:
        specs[configured.engine] = configured
    for engine in runtime.track:
        specs.setdefault(engine, EngineSpec(engine))
    if not specs:
        return None
    name = runtime.track_name or f'{experiment}/{variant_of(overrides)}/seed{seed}'
    parts = name.split('/')
    if name.startswith('/') or any(part in ('', '.', '..') for part in parts):
        raise RunError(f'runtime.track_name: expected a relative name such as experiment/variant/seed0, got {name!r}')
    return TrackPlan(tuple(specs.values()), os.path.expanduser(runtime.track_dir or DEFAULT_DIR),
                     runtime.track_project or DEFAULT_PROJECT, name)


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported (a module already imported counts, as a test's stand-in does)."""
    return module in sys.modules or importlib.util.find_spec(module) is not None


def check_installed(plan: Optional[TrackPlan]) -> None:
    """One ``error:`` line for the first tracker whose package is missing, naming the extra that installs it."""
    for spec in plan.engines if plan is not None else ():
        module, extra = MODULES[spec.engine]
        if not is_installed(module):
            raise RunError(f'{spec.where}: {spec.engine} is not installed; install the extra: pip install '
                           f'"ttm_torchdistill[{extra}]" (in a checkout: pip install -e ".[{extra}]")')
