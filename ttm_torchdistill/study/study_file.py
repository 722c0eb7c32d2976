"""The study file: a YAML mapping read into :class:`Study`, every key checked before anything is planned.

::

    out: runs/wttm_table               # every run gets its own folder below it
    configs: [configs/cifar100/wttm/*.yaml]   # paths or globs, relative to the current folder
    seeds: [0, 1, 2, 3, 4]
    set: [train.num_epochs=240]        # --set overrides for every run
    grid:                              # cross product of --set values; each combination is a variant
      train.criterion.kwargs.sub_terms.wttm.weight: [1.0, 4.0]
    runtime: {device_data: true, amp: bf16, teacher_cache: auto, track: [tensorboard]}
    resources: {gpus: 1, cpus: 4, mem_gb: 16, time_min: 720}
    slurm: {partition: gpu, account: null, qos: null, constraint: null, array_parallelism: 32, additional: {},
            setup: []}
    search: {trials: 40, space: {...}}  # instead of grid: an Optuna search on runtime.holdout (search/spec.py)

A problem is a :class:`~ttm_torchdistill.errors.StudyError` naming the file and the key.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml

from ..run.config.runtime import TRACK_ENGINES
from ..errors import StudyError
from .search.spec import SearchSpec, parse_search, require_optuna

KEYS = ('name', 'out', 'configs', 'seeds', 'set', 'grid', 'runtime', 'resources', 'slurm', 'cache_dtype', 'search')
RUNTIME_KEYS = ('device_data', 'amp', 'channels_last', 'compile', 'teacher_cache', 'holdout', 'holdout_seed',
                'track', 'track_dir', 'track_project')
RESOURCE_KEYS = ('gpus', 'cpus', 'mem_gb', 'time_min')
SLURM_KEYS = ('partition', 'account', 'qos', 'constraint', 'array_parallelism', 'additional', 'setup',
              'signal_delay_s')
AMP_MODES = ('off', 'bf16', 'fp16')
CACHE_DTYPES = ('float32', 'float16')


@dataclass(frozen=True)
class Resources:
    """Per run: GPUs (more than one runs the run under torchrun), CPUs, memory and the time limit."""
    gpus: int = 1
    cpus: int = 4
    mem_gb: float = 16.0
    time_min: int = 720


@dataclass(frozen=True)
class SlurmOptions:
    """Passed through to sbatch (through submitit); ``additional`` holds any other sbatch option, ``setup``
    shell lines run before each job (``module load ...``, ``source venv/bin/activate``); ``signal_delay_s``: how
    long before the time limit Slurm sends the pre-timeout signal (submitit's ``USR2``), which requeues the job."""
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    array_parallelism: int = 256
    additional: Dict[str, Any] = field(default_factory=dict)
    setup: Tuple[str, ...] = ()
    signal_delay_s: int = 90


@dataclass(frozen=True)
class RuntimeOptions:
    """The runner's speed options for every run; ``teacher_cache: auto`` makes the study build the caches (complete
    ones where the training transform allows, else per seed), ``per_seed`` per-seed ones; a folder is read as is.
    ``device_data: auto`` turns the device data path on for every config it accepts and leaves the others on
    torchdistill's loader (the plan names them and why); ``true`` makes a config it refuses a study-file error.
    ``track`` names the trackers every run writes to, in ``track_dir`` (default ``<out>/track``) under the run's id
    (``<experiment>/<variant>/seed<S>``), in the W&B/trackio project ``track_project`` (default the study's name)."""
    device_data: Union[bool, str] = False
    amp: str = 'off'
    channels_last: bool = False
    compile: bool = False
    teacher_cache: Optional[str] = None
    holdout: Optional[int] = None
    holdout_seed: int = 0
    track: Tuple[str, ...] = ()
    track_dir: Optional[str] = None
    track_project: Optional[str] = None

    def track_flags(self, out: str, study_name: str, run_id: str) -> List[str]:
        """The runner flags of the trackers of run ``run_id`` (none when the study tracks nothing)."""
        if not self.track:
            return []
        return ['--track', ','.join(self.track), '--track-dir', self.track_dir or os.path.join(out, 'track'),
                '--track-project', self.track_project or study_name, '--track-name', run_id]

    def flags(self, device_data_refusal: Optional[str] = None) -> List[str]:
        """The runner flags that turn these options on (a false value leaves the config's own ``runtime:``).

        :param device_data_refusal: why the device data path refuses the run's config (None if it accepts it).
        """
        argv = []
        if self.device_data is True or (self.device_data == 'auto' and device_data_refusal is None):
            argv.append('--device-data')
        if self.amp != 'off':
            argv += ['--amp', self.amp]
        if self.channels_last:
            argv.append('--channels-last')
        if self.compile:
            argv.append('--compile')
        if self.teacher_cache not in (None, 'auto', 'per_seed'):
            argv += ['--teacher-cache', self.teacher_cache]
        if self.holdout:
            argv += ['--holdout', str(self.holdout), '--holdout-seed', str(self.holdout_seed)]
        return argv


@dataclass(frozen=True)
class Study:
    """A checked study file. Paths stay as written; ``base`` is the folder they are relative to."""
    path: str
    base: str
    name: str
    out: str
    configs: Tuple[str, ...]
    seeds: Tuple[int, ...]
    overrides: Tuple[str, ...] = ()
    grid: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()
    runtime: RuntimeOptions = RuntimeOptions()
    resources: Resources = Resources()
    slurm: SlurmOptions = SlurmOptions()
    cache_dtype: str = 'float32'
    search: Optional[SearchSpec] = None

    @property
    def out_dir(self) -> str:
        """The study folder as an absolute path."""
        return os.path.normpath(os.path.join(self.base, os.path.expanduser(self.out)))


def _fail(path: str, key: str, message: str) -> StudyError:
    return StudyError(f'{path}: {key}: {message}')


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unknown(path: str, where: str, data: dict, known: Tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise StudyError(f'{path}: unknown key {where}{key!r}; expected one of {", ".join(known)}')


def _optional_str(path: str, key: str, value: Any) -> Optional[str]:
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail(path, key, f'expected a non-empty string or null, got {value!r}')
    return value


def _string_list(path: str, key: str, value: Any, allow_empty: bool) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, key, f'expected a list of strings, got {value!r}')
    if not value and not allow_empty:
        raise _fail(path, key, 'expected at least one entry, got an empty list')
    return tuple(value)


def _seeds(path: str, value: Any) -> Tuple[int, ...]:
    if _is_int(value):
        value = [value]
    if not isinstance(value, list) or not value or not all(_is_int(v) and v >= 0 for v in value):
        raise _fail(path, 'seeds', f'expected a non-empty list of non-negative integers, got {value!r}')
    if len(set(value)) != len(value):
        raise _fail(path, 'seeds', f'seed {next(v for v in value if value.count(v) > 1)} is listed twice')
    return tuple(value)


def _overrides(path: str, value: Any) -> Tuple[str, ...]:
    items = _string_list(path, 'set', value, allow_empty=True)
    for item in items:
        if '=' not in item or not item.split('=', 1)[0].strip():
            raise _fail(path, 'set', f'expected KEY=VALUE entries (e.g. train.num_epochs=240), got {item!r}')
        if item.split('=', 1)[0].strip().endswith('dst_ckpt'):
            raise _fail(path, 'set', f'{item!r}: the study gives every run its own dst_ckpt below out; drop it')
    return items


def _grid(path: str, value: Any) -> Tuple[Tuple[str, Tuple[Any, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _fail(path, 'grid', f'expected a mapping of dotted config path -> list of values, got {value!r}')
    grid = []
    for key, values in value.items():
        where = f'grid.{key}'
        if not isinstance(key, str) or not key or any(p == '' for p in key.split('.')):
            raise StudyError(f'{path}: grid: expected dotted config paths as keys, got {key!r}')
        if key.endswith('dst_ckpt'):
            raise _fail(path, where, 'the study gives every run its own dst_ckpt below out')
        if not isinstance(values, list) or not values:
            raise _fail(path, where, f'expected a non-empty list of values, got {values!r}')
        texts = [_yaml_text(v) for v in values]
        if len(set(texts)) != len(texts):
            raise _fail(path, where, f'a value is listed twice in {values!r}')
        grid.append((key, tuple(values)))
    return tuple(grid)


def _yaml_text(value: Any) -> str:
    """A grid value as the VALUE of ``--set KEY=VALUE`` (flow-style YAML on one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip()
    # a plain scalar is dumped as a document with an explicit end marker: 'abc\n...'
    return text[:-3].strip() if text.endswith('...') else text


def grid_value_text(value: Any) -> str:
    """Public form of :func:`_yaml_text`, used to write ``--set`` overrides of grid values."""
    return _yaml_text(value)


def _runtime(path: str, value: Any) -> RuntimeOptions:
    if value is None:
        return RuntimeOptions()
    if not isinstance(value, dict):
        raise _fail(path, 'runtime', f'expected a mapping of {", ".join(RUNTIME_KEYS)}, got {value!r}')
    _unknown(path, 'runtime.', value, RUNTIME_KEYS)
    if 'device_data' in value and not (isinstance(value['device_data'], bool) or value['device_data'] == 'auto'):
        raise _fail(path, 'runtime.device_data', f'expected true, false or auto, got {value["device_data"]!r}')
    for key in ('channels_last', 'compile'):
        if key in value and not isinstance(value[key], bool):
            raise _fail(path, f'runtime.{key}', f'expected true or false, got {value[key]!r}')
    amp = value.get('amp', 'off')
    amp = 'off' if amp in (False, None) else amp  # YAML reads an unquoted off as false
    if amp not in AMP_MODES:
        raise _fail(path, 'runtime.amp', f'expected one of {", ".join(AMP_MODES)}, got {amp!r}')
    cache = _optional_str(path, 'runtime.teacher_cache', value.get('teacher_cache'))
    device_data = value.get('device_data', False)
    if cache is not None and not device_data:
        raise _fail(path, 'runtime.teacher_cache', 'needs runtime.device_data: true or auto (the cache is indexed '
                                                   'by the device-data augmentation stream)')
    holdout, holdout_seed = value.get('holdout'), value.get('holdout_seed', 0)
    if holdout is not None and (isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 1):
        raise _fail(path, 'runtime.holdout', f'expected a positive number of training images, got {holdout!r}')
    if isinstance(holdout_seed, bool) or not isinstance(holdout_seed, int) or holdout_seed < 0:
        raise _fail(path, 'runtime.holdout_seed', f'expected a non-negative integer, got {holdout_seed!r}')
    return RuntimeOptions(device_data=device_data, amp=amp, channels_last=value.get('channels_last', False),
                          compile=value.get('compile', False), teacher_cache=cache, holdout=holdout,
                          holdout_seed=holdout_seed, track=_track(path, value.get('track')),
                          track_dir=_optional_str(path, 'runtime.track_dir', value.get('track_dir')),
                          track_project=_optional_str(path, 'runtime.track_project', value.get('track_project')))


def _track(path: str, value: Any) -> Tuple[str, ...]:
    """``runtime.track``: a list of trackers (or one name); null, false or [] for none."""
    if value is None or value is False:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item in TRACK_ENGINES for item in items):
        raise _fail(path, 'runtime.track', f'expected a list of {", ".join(TRACK_ENGINES)}, got {value!r}')
    return tuple(dict.fromkeys(items))


def _resources(path: str, value: Any) -> Resources:
    if value is None:
        return Resources()
    if not isinstance(value, dict):
        raise _fail(path, 'resources', f'expected a mapping of {", ".join(RESOURCE_KEYS)}, got {value!r}')
    _unknown(path, 'resources.', value, RESOURCE_KEYS)
    defaults = Resources()
    checks = {'gpus': (_is_int, 0, 'an integer >= 0'), 'cpus': (_is_int, 1, 'an integer >= 1'),
              'mem_gb': (_is_number, 0, 'a number > 0'), 'time_min': (_is_int, 1, 'an integer >= 1 (minutes)')}
    values = {}
    for key, (kind, low, text) in checks.items():
        item = value.get(key, getattr(defaults, key))
        if not kind(item) or item < low or (key == 'mem_gb' and item <= 0):
            raise _fail(path, f'resources.{key}', f'expected {text}, got {item!r}')
        values[key] = item
    return Resources(**values)


def _slurm(path: str, value: Any) -> SlurmOptions:
    if value is None:
        return SlurmOptions()
    if not isinstance(value, dict):
        raise _fail(path, 'slurm', f'expected a mapping of {", ".join(SLURM_KEYS)}, got {value!r}')
    _unknown(path, 'slurm.', value, SLURM_KEYS)
    parallelism = value.get('array_parallelism', SlurmOptions.array_parallelism)
    if not _is_int(parallelism) or parallelism < 1:
        raise _fail(path, 'slurm.array_parallelism', f'expected an integer >= 1, got {parallelism!r}')
    additional = value.get('additional') or {}
    if not isinstance(additional, dict) or not all(isinstance(k, str) and k for k in additional):
        raise _fail(path, 'slurm.additional', f'expected a mapping of sbatch option -> value, got {additional!r}')
    setup = _string_list(path, 'slurm.setup', value.get('setup') or [], allow_empty=True)
    delay = value.get('signal_delay_s', SlurmOptions.signal_delay_s)
    if not _is_int(delay) or delay < 1:
        raise _fail(path, 'slurm.signal_delay_s', f'expected an integer >= 1 (seconds), got {delay!r}')
    return SlurmOptions(**{k: _optional_str(path, f'slurm.{k}', value.get(k))
                           for k in ('partition', 'account', 'qos', 'constraint')},
                        array_parallelism=parallelism, additional=dict(additional), setup=setup, signal_delay_s=delay)


def parse_study(data: Any, path: str, base: str) -> Study:
    """Check a study mapping (as read from YAML) and return the :class:`Study`; paths stay relative to ``base``."""
    if not isinstance(data, dict):
        raise StudyError(f'{path}: a study file is a YAML mapping with keys {", ".join(KEYS)}, got '
                         f'{"an empty file" if data is None else type(data).__name__}')
    _unknown(path, '', data, KEYS)
    for key in ('out', 'configs', 'seeds'):
        if key not in data:
            raise StudyError(f'{path}: missing key {key!r} (required: out, configs, seeds)')
    out = data['out']
    if not isinstance(out, str) or not out:
        raise _fail(path, 'out', f'expected a folder path, got {out!r}')
    name = data.get('name', os.path.splitext(os.path.basename(path))[0])
    if not isinstance(name, str) or not name:
        raise _fail(path, 'name', f'expected a non-empty string, got {name!r}')
    dtype = data.get('cache_dtype', 'float32')
    if dtype not in CACHE_DTYPES:
        raise _fail(path, 'cache_dtype', f'expected one of {", ".join(CACHE_DTYPES)}, got {dtype!r}')
    seeds, runtime = _seeds(path, data['seeds']), _runtime(path, data.get('runtime'))
    return Study(path=path, base=base, name=name, out=out,
                 configs=_string_list(path, 'configs', data['configs'], allow_empty=False),
                 seeds=seeds, overrides=_overrides(path, data.get('set') or []),
                 grid=_grid(path, data.get('grid')), runtime=runtime,
                 resources=_resources(path, data.get('resources')), slurm=_slurm(path, data.get('slurm')),
                 cache_dtype=dtype, search=_search(path, data, seeds, runtime))


def _search(path: str, data: dict, seeds: Tuple[int, ...], runtime: RuntimeOptions) -> Optional[SearchSpec]:
    """``search:`` (None without it): never beside a grid, and only with a holdout to select on."""
    if data.get('search') is None:
        return None
    if data.get('grid'):
        raise _fail(path, 'search', 'a study either crosses a grid or searches a space; drop grid: or search:')
    if not runtime.holdout:
        raise _fail(path, 'search', 'needs runtime.holdout: N (a search selects on N held-out training images, '
                                    'never on the test set)')
    spec = parse_search(path, data['search'], seeds)
    require_optuna(path)
    return spec


def load_study(path: str, base: Optional[str] = None) -> Study:
    """Read and check the study file at ``path``; ``base`` (default: the current folder) anchors relative paths."""
    try:
        with open(os.path.expanduser(path), encoding='utf-8') as fp:
            data = yaml.safe_load(fp)
    except FileNotFoundError:
        raise StudyError(f'{path}: no such study file') from None
    except IsADirectoryError:
        raise StudyError(f'{path}: is a directory; expected a study YAML file') from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark is not None else ''
        raise StudyError(f'{path}: not valid YAML{where}: {getattr(exc, "problem", None) or exc}') from None
    return parse_study(data, path, os.path.abspath(base or os.getcwd()))
