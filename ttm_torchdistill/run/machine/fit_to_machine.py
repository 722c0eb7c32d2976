"""What a run changes in its own copy of the config to fit the machine, without changing the result.

The shipped configs are GPU recipes (``num_workers: 8``, ``pin_memory: True``, ``wrapper: 'DistributedDataParallel'``).
The user's file is never touched; :func:`fit_config_to_machine` edits the constructed copy the run uses:

* data loaders: no pinned memory without a CUDA/XPU device (torch only warns, and pins for nothing), worker
  processes capped by the cores this process may use (divided among torchrun's local processes), and the
  options that need worker processes (``persistent_workers``, ``prefetch_factor``) dropped when there are none;
* optimizers under ``amp: fp16`` on CUDA: ``fused: True`` for torch's SGD, Adam and AdamW (unless the config sets
  it). The gradient scaler's ``step`` reads its inf check back to the host every step (``.item()``) unless the
  optimizer is fused, in which case the fused kernel skips the update on the device;
* model wrappers (``train.{teacher,student}.wrapper``): one process trains on ``--device``'s one GPU. Outside
  torchrun torchdistill would make the configs' ``DistributedDataParallel`` a ``DataParallel(device_ids=None)``
  over every visible GPU, which expects the model on cuda:0 (so ``--device cuda:1`` fails) and splits each batch
  (BatchNorm sees batch/N samples). ``DataParallel`` is used only when asked for with ``--data-parallel``.
  Under torchrun every process has one GPU and the student is wrapped in DistributedDataParallel.

Every decision is a pure function of its inputs, so it is tested on a CPU-only machine.
"""
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import torch

from ...errors import RunError
from ..config.walk import iter_loader_configs, iter_train_stage_configs
from .context import DistContext
from ...checks.signatures import suggestion

logger = logging.getLogger('ttm_torchdistill.run')

#: Device types whose DataLoader batches benefit from pinned host memory.
PIN_MEMORY_DEVICE_TYPES = ('cuda', 'xpu')
#: Device types on which torch's SyncBatchNorm runs its synchronised (training) forward; CPU raises ValueError.
SYNC_BN_DEVICE_TYPES = ('cuda', 'xpu', 'hpu')
#: The wrapper keys torchdistill's ``wrap_model`` knows.
WRAPPER_KEYS = ('DataParallel', 'DistributedDataParallel', 'FullyShardedDataParallel', 'FullyShardedDataParallel2')
#: torch optimizers with a fused CUDA kernel that takes the gradient scaler's inf check on the device.
FUSED_OPTIMIZERS = ('SGD', 'Adam', 'AdamW')
#: DataLoader options that torch accepts only with worker processes.
WORKER_ONLY_OPTIONS = ('persistent_workers', 'prefetch_factor')


def cores_available() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else all cores)."""
    if hasattr(os, 'sched_getaffinity'):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


def worker_cap(cores: int, local_world_size: int) -> int:
    """Data-loader workers per process: the cores shared by the processes of this node."""
    return max(cores // max(local_world_size, 1), 0)


def pin_memory_applies(device: torch.device) -> bool:
    """Pinned host memory only speeds up copies to an accelerator."""
    return device.type in PIN_MEMORY_DEVICE_TYPES


def sync_bn_applies(ctx: DistContext) -> bool:
    """``sync_bn: True`` converts BatchNorm layers only in a distributed run on a device SyncBatchNorm supports.

    One process has nothing to synchronise with; on CPU torch's SyncBatchNorm refuses the training forward, so a
    gloo run keeps per-process BatchNorm (logged by :func:`fit_config_to_machine`).
    """
    return ctx.distributed and ctx.device.type in SYNC_BN_DEVICE_TYPES


def fit_loader_kwargs(kwargs: Dict[str, Any], pin_ok: bool, cap: int) -> List[str]:
    """Adapt one loader's ``kwargs`` in place; returns what was changed (``name: before -> after``)."""
    changes = []
    if kwargs.get('pin_memory') and not pin_ok:
        kwargs['pin_memory'] = False
        changes.append('pin_memory: True -> False')
    workers = kwargs.get('num_workers') or 0
    if workers > cap:
        kwargs['num_workers'] = cap
        changes.append(f'num_workers: {workers} -> {cap}')
    if not kwargs.get('num_workers'):
        for name in WORKER_ONLY_OPTIONS:
            if name in kwargs:
                changes.append(f'{name}: {kwargs.pop(name)!r} dropped (needs num_workers > 0)')
    return changes


def fused_optimizer_applies(key: Any, kwargs: Dict[str, Any], device_type: str, amp: str) -> bool:
    """Whether to set ``fused: True`` on an optimizer: fp16 with a gradient scaler on CUDA, a torch optimizer with a
    fused kernel (its constructor takes ``fused``), and no ``fused`` given in the config."""
    if amp != 'fp16' or device_type != 'cuda' or key not in FUSED_OPTIMIZERS or 'fused' in kwargs:
        return False
    import inspect
    return 'fused' in inspect.signature(getattr(torch.optim, key)).parameters


def _fit_optimizers(config: Dict[str, Any], device_type: str, amp: str) -> List[str]:
    notes = []
    for where, stage in iter_train_stage_configs(config):
        optimizer = stage.get('optimizer')
        if not isinstance(optimizer, dict):
            continue
        kwargs = optimizer.get('kwargs')
        if not isinstance(kwargs, dict):
            kwargs = optimizer['kwargs'] = dict()
        if fused_optimizer_applies(optimizer.get('key'), kwargs, device_type, amp):
            kwargs['fused'] = True
            notes.append(f'{where}.optimizer.kwargs.fused: True (amp fp16: the fused kernel takes the gradient '
                         f'scaler\'s inf check on the device, no host read per step)')
    return notes


def wrapper_key_of(block: Dict[str, Any]) -> Optional[str]:
    """The wrapper key of a ``train.{teacher,student}`` block (``wrapper: KEY`` or ``wrapper: {key: KEY}``)."""
    wrapper = block.get('wrapper')
    return wrapper.get('key') if isinstance(wrapper, dict) else wrapper


def wrapper_decision(key: Optional[str], device_type: str, distributed: bool, data_parallel: bool) -> Optional[str]:
    """The wrapper torchdistill should apply to one model (None: none), given what the config asks for.

    :param key: the config's wrapper key (None when absent).
    :param device_type: the run's device type (``cuda``, ``cpu``, ...).
    :param distributed: launched by torchrun (one process per GPU).
    :param data_parallel: ``--data-parallel`` (one process over every visible GPU).
    :raises ValueError: an unknown key, or a sharding wrapper (the runner saves the unsharded student).
    """
    if key is not None and key not in WRAPPER_KEYS:
        close = suggestion(str(key), WRAPPER_KEYS)
        raise ValueError(f'unknown wrapper {key!r}' + (f" (did you mean '{close}'?)" if close else '')
                         + f'; expected one of {", ".join(WRAPPER_KEYS)}')
    if key is not None and key.startswith('FullyShardedDataParallel'):
        raise ValueError(f'wrapper {key!r} shards the model, but the runner validates and saves the whole student; '
                         f'use DistributedDataParallel')
    if device_type != 'cuda':
        # torchdistill wraps only CUDA models; distributed CPU runs get DDP from the runner (ensure_ddp).
        return None
    if distributed:
        # A DataParallel-wrapped model would not be wrapped in DDP again: the ranks would train apart.
        return None if key is None else 'DistributedDataParallel'
    return 'DataParallel' if data_parallel else None


def data_parallel_device_ids(device: torch.device, device_count: int) -> List[int]:
    """DataParallel's ``device_ids`` for ``--data-parallel``: ``--device``'s GPU first (DataParallel keeps the
    model and gathers outputs there), then every other visible GPU."""
    first = device.index if device.index is not None else 0
    return [first] + [i for i in range(device_count) if i != first]


def check_data_parallel(ctx: DistContext, device_count: int) -> None:
    """``--data-parallel`` needs one process and CUDA devices.

    :raises RunError: under torchrun, or without CUDA.
    """
    if ctx.distributed:
        raise RunError('--data-parallel spreads one process over several GPUs; under torchrun every process already '
                       'trains on its own GPU (drop --data-parallel)')
    if ctx.device.type != 'cuda':
        raise RunError(f'--data-parallel needs CUDA devices, but the run is on {ctx.device} (drop --data-parallel or '
                       f'use --device cuda)')
    if device_count < 2:
        logger.warning(f'--data-parallel: only {device_count} GPU visible, DataParallel adds nothing')


def _fit_wrappers(config: Dict[str, Any], ctx: DistContext, data_parallel: bool) -> List[str]:
    notes = []
    for where, stage in iter_train_stage_configs(config):
        for role in ('teacher', 'student'):
            block = stage.get(role)
            if not isinstance(block, dict):
                continue
            asked = wrapper_key_of(block)
            try:
                decided = wrapper_decision(asked, ctx.device.type, ctx.distributed, data_parallel)
            except ValueError as exc:
                raise RunError(f'{where}.{role}.wrapper: {exc}') from None
            if decided == asked:
                continue
            kwargs = block['wrapper'].get('kwargs') if isinstance(block.get('wrapper'), dict) else None
            block['wrapper'] = None if decided is None else {'key': decided, 'kwargs': dict(kwargs or dict())}
            notes.append(f'{where}.{role}.wrapper: {asked} -> {decided}')
    return notes


def fit_config_to_machine(config: Dict[str, Any], ctx: DistContext, data_parallel: bool = False,
                          cores: Optional[int] = None, device_count: Optional[int] = None,
                          amp: str = 'off') -> List[str]:
    """Adapt the run's config copy in place (loaders, optimizers and wrappers, see the module docstring); returns
    notes.

    :param cores: cores available to this node's processes (default :func:`cores_available`).
    :param device_count: visible CUDA devices (default ``torch.cuda.device_count()``).
    """
    if data_parallel:
        check_data_parallel(ctx, torch.cuda.device_count() if device_count is None else device_count)
    cores = cores_available() if cores is None else cores
    cap = worker_cap(cores, ctx.local_world_size)
    pin_ok = pin_memory_applies(ctx.device)
    notes = []
    for where, loader_config in iter_loader_configs(config):
        kwargs = loader_config.get('kwargs')
        if isinstance(kwargs, dict):
            notes += [f'{where}.kwargs.{change}' for change in fit_loader_kwargs(kwargs, pin_ok, cap)]
    if any('num_workers' in note for note in notes):
        notes.append(f'(workers capped at {cap}: {cores} cores for {ctx.local_world_size} process(es) on this node)')
    if any('pin_memory' in note for note in notes):
        notes.append(f'(no pinned memory on {ctx.device.type})')
    notes += _fit_optimizers(config, ctx.device.type, amp)
    notes += _fit_wrappers(config, ctx, data_parallel)
    if not sync_bn_applies(ctx) and ctx.distributed and _any_sync_bn(config):
        notes.append(f'sync_bn ignored: SyncBatchNorm does not run on {ctx.device.type}; each process normalises '
                     f'its own batch')
    return notes


def _any_sync_bn(config: Dict[str, Any]) -> bool:
    return any(isinstance(m, dict) and m.get('sync_bn') for m in (config.get('models') or dict()).values())


def box_device_ids(ctx: DistContext, data_parallel: bool,
                   device_count: Optional[int] = None) -> Optional[Sequence[int]]:
    """The ``device_ids`` handed to torchdistill's box (it gives them to the wrappers)."""
    if data_parallel and not ctx.distributed and ctx.device.type == 'cuda':
        return data_parallel_device_ids(ctx.device, torch.cuda.device_count() if device_count is None else device_count)
    return ctx.device_ids
