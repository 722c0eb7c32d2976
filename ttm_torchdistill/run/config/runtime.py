"""The plugin's ``runtime:`` block: how fast a run goes, never what it learns.

A config may carry a top-level block (torchdistill ignores it)::

    runtime:
      device_data: false     # dataset on the training device, augmentation batched there
      amp: 'off'             # 'off' | 'bf16' (CPU and CUDA) | 'fp16' (CUDA, with a gradient scaler)
      channels_last: false   # student, teacher and input batches in channels-last memory format
      compile: false         # torch.compile of student and teacher (checkpoints keep the plain keys)
      teacher_cache: null    # a folder written by `python -m ttm_torchdistill cache-teacher`
      holdout: null          # N: validate on N training images held out (class-balanced), not on the test set
      holdout_seed: 0        # which N images (fixed for every run and seed of a study)
      track: []              # trackers to write to: tensorboard, wandb, trackio (docs/tracking.md)
      track_dir: null        # their folder (default ./track); track_project, track_name: W&B/trackio project, run name

Each key is also a runner flag (``--device-data``, ``--amp bf16``, ``--channels-last``, ``--compile``,
``--teacher-cache PATH``, ``--holdout N``, ``--holdout-seed S``, ``--track tensorboard``, ``--track-dir DIR``,
``--track-project P``, ``--track-name N``) and can be set with ``--set runtime.KEY=VALUE`` even when the file has no
``runtime:`` block. Precedence: the file, then ``--set runtime.*``, then the flags. Unknown keys and values are
one-line errors. ``holdout`` is the one key that changes what is learned (the training set loses N images,
:mod:`.holdout`); it is here so that ``--set`` and study files reach it like the others, and the run's config digest
and the report keep such runs apart.

``amp`` holds for each epoch's validation too (as in timm and Lightning), which then costs what the training step's
forward pass costs: in float32 it would be about 15 % of a bf16 epoch. The final test runs in float32 whatever
``amp`` is, so the top-1 a run reports is measured as the papers measure it; on CIFAR, where the validation set is the
test set, the best epoch's validation top-1 and the test top-1 may then differ by a few images.
"""
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import yaml

from ...errors import RunError

AMP_MODES = ('off', 'bf16', 'fp16')
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def autocast(amp: str, device_type: str):
    """The autocast context of ``amp`` (``'off'``, ``'bf16'`` or ``'fp16'``) on ``device_type``."""
    if amp == 'off':
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=AUTOCAST_DTYPES[amp])
PREFIX = 'runtime.'
#: the trackers ``runtime.track`` (``--track``) can write to
TRACK_ENGINES = ('tensorboard', 'wandb', 'trackio')
TRACK_KEYS = ('track', 'track_dir', 'track_project', 'track_name')


@dataclass(frozen=True)
class Runtime:
    """The speed options of one run (see the module docstring)."""
    device_data: bool = False
    amp: str = 'off'
    channels_last: bool = False
    compile: bool = False
    teacher_cache: Optional[str] = None
    holdout: Optional[int] = None
    holdout_seed: int = 0
    #: trackers the run writes to (:mod:`~ttm_torchdistill.run.track`); they watch the run and change nothing in it,
    #: so they are kept out of :meth:`as_dict` (the summary's and the attempts' ``runtime``, the report's rows)
    track: Tuple[str, ...] = ()
    track_dir: Optional[str] = None
    track_project: Optional[str] = None
    track_name: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        """The speed options (what ``report`` groups runs by)."""
        return {key: value for key, value in asdict(self).items() if key not in TRACK_KEYS}

    def track_dict(self) -> Dict[str, Any]:
        """The tracking options."""
        return {key: list(value) if key == 'track' else value for key, value in asdict(self).items()
                if key in TRACK_KEYS}

    def autocast(self, device_type: str):
        """The context the student's (and a live teacher's) forward passes run in, in training and evaluation."""
        return autocast(self.amp, device_type)

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self) -> str:
        """One line for the progress header, e.g. ``runtime: device_data, amp=bf16`` (``defaults`` if none)."""
        on = []
        for key, value in self.as_dict().items():
            if value in (False, None, 'off') or (key == 'holdout_seed' and not self.holdout):
                continue
            on.append(key if value is True else f'{key}={value}')
        return 'runtime: ' + (', '.join(on) if on else 'defaults (stock torchdistill path)')


_KEYS = tuple(f.name for f in fields(Runtime))


def _check_track(value: Any, where: str) -> Tuple[str, ...]:
    """``track``: a list of engines, or one engine or a comma-separated text of them; ``off``/null/[] for none."""
    if value is None or value is False or value == 'off':
        return ()
    items = value.split(',') if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise RunError(f'{where}: track must be a list of {", ".join(TRACK_ENGINES)}, got {value!r}')
    engines = [item.strip() for item in items if item.strip()]
    for engine in engines:
        if engine not in TRACK_ENGINES:
            raise RunError(f'{where}: unknown tracker {engine!r}; expected {", ".join(TRACK_ENGINES)} (or off)')
    return tuple(dict.fromkeys(engines))


def _check_value(key: str, value: Any, where: str) -> Any:
    if key == 'amp':
        if value is False or value is None:  # YAML reads an unquoted off as False
            value = 'off'
        if value not in AMP_MODES:
            raise RunError(f'{where}: amp must be one of {", ".join(AMP_MODES)}, got {value!r}')
        return value
    if key in ('holdout', 'holdout_seed'):
        if value is None and key == 'holdout':
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == 'holdout' else 0):
            expected = 'a positive number of training images (or null)' if key == 'holdout' else \
                'a non-negative integer'
            raise RunError(f'{where}: {key} must be {expected}, got {value!r}')
        return value
    if key == 'teacher_cache':
        if value is not None and (not isinstance(value, str) or not value):
            raise RunError(f'{where}: teacher_cache must be a folder path written by cache-teacher, got {value!r}')
        return value
    if key == 'track':
        return _check_track(value, where)
    if key in TRACK_KEYS:
        if value is not None and (not isinstance(value, str) or not value):
            raise RunError(f'{where}: {key} must be a non-empty string, got {value!r}')
        return value
    if not isinstance(value, bool):
        raise RunError(f'{where}: {key} must be true or false, got {value!r}')
    return value


def _merge(values: Dict[str, Any], updates: Dict[str, Any], where: str) -> None:
    for key, value in updates.items():
        if key not in _KEYS:
            raise RunError(f'{where}: unknown runtime key {key!r}; expected one of {", ".join(_KEYS)}')
        values[key] = _check_value(key, value, f'{where}.{key}' if where == 'runtime' else where)


def split_runtime_overrides(overrides: Sequence[str]) -> Tuple[List[str], Dict[str, Any]]:
    """Separate ``--set runtime.KEY=VALUE`` (which need no ``runtime:`` block in the file) from the others.

    :return: the other overrides in order, and ``{KEY: parsed VALUE}``.
    """
    rest, runtime = [], {}
    for assignment in overrides:
        key = assignment.split('=', 1)[0].strip()
        if not key.startswith(PREFIX):
            rest.append(assignment)
            continue
        if '=' not in assignment or key.count('.') != 1:
            raise RunError(f'--set {assignment!r}: expected runtime.KEY=VALUE with KEY one of {", ".join(_KEYS)}')
        text = assignment.split('=', 1)[1]
        try:
            runtime[key[len(PREFIX):]] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise RunError(f'--set {assignment!r}: the value is not valid YAML ({exc.problem})') from None
    return rest, runtime


def resolve_runtime(block: Any, set_values: Dict[str, Any], flags: Dict[str, Any]) -> Runtime:
    """The run's :class:`Runtime` from the config's ``runtime:`` block, ``--set runtime.*`` and the flags.

    :param block: the config's ``runtime`` value (None when absent).
    :param set_values: from :func:`split_runtime_overrides`.
    :param flags: flags given on the command line only (``{key: value}``; absent flags are not in it).
    :raises RunError: unknown keys or values, and combinations that cannot work.
    """
    values = Runtime().as_dict()
    if block is not None:
        if not isinstance(block, dict):
            raise RunError(f'runtime: must be a mapping of {", ".join(_KEYS)}, got {block!r}')
        _merge(values, block, 'runtime')
    _merge(values, set_values, '--set runtime')
    _merge(values, flags, 'command line')
    runtime = Runtime(**values)
    if runtime.teacher_cache and not runtime.device_data:
        raise RunError('runtime.teacher_cache needs runtime.device_data: the cache is indexed by the device-data '
                       'augmentation stream (add --device-data)')
    return runtime


def check_device(runtime: Runtime, device_type: str, data_parallel: bool = False) -> None:
    """Refuse what the device or the process layout cannot do, before anything is built.

    fp16 autocast with a gradient scaler is a CUDA feature here. ``--data-parallel`` replicates the student on
    every GPU at each step: a replica would receive the whole batch's sample indices for a teacher cache whose
    lookup sees only its slice of the batch, and a compiled call (``nn.Module.compile``) is bound to the module
    on the first GPU, which every replica would then run there.
    """
    if runtime.amp == 'fp16' and device_type != 'cuda':
        raise RunError(f'amp fp16 needs a CUDA device (it trains with a gradient scaler), the run is on '
                       f'{device_type}; use --amp bf16')
    if data_parallel and runtime.teacher_cache:
        raise RunError('--data-parallel cannot read a teacher cache (each DataParallel replica sees a slice of the '
                       'batch but the whole batch\'s sample indices); use torchrun for several GPUs, or one GPU')
    if data_parallel and runtime.compile:
        raise RunError('--data-parallel cannot run a compiled model (the compiled call is bound to the module on the '
                       'first GPU, so every replica would run there); use torchrun for several GPUs, or drop --compile')


def apply_model_runtime(model: torch.nn.Module, runtime: Runtime, compile_now: bool = True) -> None:
    """Channels-last memory format and ``torch.compile``, in place.

    ``nn.Module.compile`` compiles the module's call in place: the object, its submodule paths (which
    torchdistill's forward hooks and ``*_module_path`` arguments name) and its ``state_dict`` keys stay those of
    the plain model, so checkpoints carry no ``_orig_mod.`` prefix.

    :param compile_now: False for a student that DistributedDataParallel will wrap: torch compiles the DDP wrapper
        instead (:func:`compile_wrapper`), so that the gradient all-reduce overlaps the compiled backward.
    """
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    if runtime.compile and compile_now:
        model.compile()


def compile_wrapper(wrapper: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """Compile a DistributedDataParallel-wrapped student in place, as torch advises for DDP with ``torch.compile``.

    Compiled inside DDP, the whole backward is one compiled graph whose gradients are ready only at its end, so
    DDP's bucketed all-reduce cannot overlap it; compiling the wrapper lets dynamo split the graph at DDP's bucket
    boundaries (``torch._dynamo.config.optimize_ddp``, on by default). Idempotent.
    """
    if runtime.compile and getattr(wrapper, '_compiled_call_impl', None) is None:
        wrapper.compile()
    return wrapper
