"""Process-group setup for torchrun on CUDA (NCCL) and CPU (gloo), DDP wrapping of the student, metric reduction.

torchdistill 1.1.5's ``init_distributed_mode`` hard-codes NCCL and ``torch.cuda.set_device`` and its
``wrap_model`` applies DistributedDataParallel only on CUDA, so N CPU processes would train N unsynchronised
copies. Here the backend follows the device and the student is always DDP-wrapped when distributed.
"""
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence, TypeVar

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchdistill.common.constant import def_logger
from torchdistill.common.module_util import check_if_wrapped

from ...errors import RunError

T = TypeVar('T')

#: How long ranks may wait for others that build (download, extract, scan) the datasets. The process group's own
#: timeout (NCCL 10 minutes, gloo 30 by default) fits training steps, not a download or an ImageNet folder scan on a
#: network filesystem, so that wait runs in a separate gloo group with this timeout.
DATA_BUILD_TIMEOUT = timedelta(hours=2)


@dataclass
class DistContext:
    """Where this process runs: ``distributed``, ``rank``, ``world_size``, ``device`` and DDP ``device_ids``;
    ``local_rank`` and ``local_world_size`` are its place among the processes of its node (torchrun's
    ``LOCAL_RANK``/``LOCAL_WORLD_SIZE``)."""
    distributed: bool
    rank: int
    world_size: int
    device: torch.device
    device_ids: Optional[List[int]]
    local_rank: int = 0
    local_world_size: int = 1
    #: a gloo group over every rank with :data:`DATA_BUILD_TIMEOUT`, for long waits on the host (None alone)
    coordination: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str, world_size: int, dist_url: str,
                     timeout: Optional[timedelta] = None) -> DistContext:
    """Join the process group set up by torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), if any.

    :param device_name: ``--device`` (``cuda``, ``cuda:1``, ``cpu``).
    :param world_size: ``--world_size`` (torchrun's ``WORLD_SIZE`` wins when they differ).
    :param dist_url: ``--dist_url`` (``env://`` under torchrun).
    :param timeout: of the process group's collectives (``--dist-timeout``; None: torch's default).
    """
    try:
        device = torch.device(device_name)
    except RuntimeError as exc:
        raise RunError(f'--device {device_name!r} is not a valid torch device: {exc}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RunError(f'--device {device_name} requested but CUDA is not available (use --device cpu)')
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        if world_size > 1:
            raise RunError(f'--world_size {world_size} needs one process per rank: launch with '
                           f'torchrun --nproc_per_node={world_size} -m ttm_torchdistill ...')
        if device.type == 'cuda' and device.index is not None:
            # Otherwise CUDA's current device stays 0: pinned-memory threads, caching-allocator and library handles
            # would create a context on GPU 0 too (which fails on GPUs in exclusive-process mode).
            torch.cuda.set_device(device)
        return DistContext(False, 0, 1, device, None)
    rank = int(os.environ['RANK'])
    env_world_size = int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    device_ids = None
    if device.type == 'cuda':
        torch.cuda.set_device(local_rank)
        device = torch.device('cuda', local_rank)
        device_ids = [local_rank]
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    if not dist.is_initialized():
        extra = {'timeout': timeout} if timeout is not None else dict()
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=env_world_size, rank=rank, **extra)
    coordination = dist.new_group(backend='gloo', timeout=DATA_BUILD_TIMEOUT)
    # Only rank 0 talks: other ranks keep warnings and errors.
    if rank != 0:
        def_logger.setLevel(logging.WARNING)
    if world_size not in (1, env_world_size) and rank == 0:
        def_logger.warning(f'--world_size {world_size} differs from torchrun WORLD_SIZE={env_world_size}; '
                           f'using {env_world_size}')
    local_world_size = int(os.environ.get('LOCAL_WORLD_SIZE', env_world_size))
    return DistContext(True, rank, env_world_size, device, device_ids, local_rank, local_world_size, coordination)


def ensure_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel (CPU or CUDA) unless it is already wrapped or frozen."""
    if not ctx.distributed or check_if_wrapped(model):
        return model
    if not any(p.requires_grad for p in model.parameters()):
        return model
    return DistributedDataParallel(model, device_ids=ctx.device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside (Distributed)DataParallel."""
    return model.module if check_if_wrapped(model) else model


def all_reduce_sum(values: Sequence[float], ctx: DistContext) -> List[float]:
    """Sum ``values`` over ranks (float64; identity when not distributed)."""
    if not ctx.distributed:
        return list(values)
    # NCCL reduces only CUDA tensors; gloo only CPU tensors.
    tensor = torch.tensor(list(values), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, ctx: DistContext, long_wait: bool = False) -> bool:
    """True if ``flag`` is true on any rank.

    :param long_wait: the other ranks may wait here for long (datasets being built): reduce over the coordination
        group with its :data:`DATA_BUILD_TIMEOUT` instead of the process group's timeout.
    """
    if long_wait and ctx.distributed and ctx.coordination is not None:
        flags = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)  # gloo: a host tensor
        dist.all_reduce(flags, group=ctx.coordination)
        return flags.item() > 0
    return all_reduce_sum([1.0 if flag else 0.0], ctx)[0] > 0


def on_leaders(work: Callable[[], T], ctx: DistContext, leader: bool, what: str,
               long_wait: bool = False) -> Optional[T]:
    """Run ``work`` on the ranks where ``leader`` is true, then tell every rank whether it failed anywhere.

    A failure on a leader raises there; the other ranks raise a :class:`RunError` pointing at it, instead of
    waiting for a collective the failed rank never joins. Returns ``work``'s result on leaders, else None.

    :param long_wait: ``work`` may take longer than the process group's timeout (see :func:`any_rank`).
    """
    if not ctx.distributed:
        return work()
    result = None
    if leader:
        try:
            result = work()
        except BaseException:
            any_rank(True, ctx, long_wait)  # join the collective the other ranks are waiting in, then report
            raise
    if any_rank(False, ctx, long_wait):
        raise RunError(f'{what} failed on another rank (its error is reported there); rank {ctx.rank} stopped')
    return result


def rank0_first(build: Callable[[], T], ctx: DistContext, what: str) -> T:
    """Run ``build`` on rank 0 first, then on the first process of every other node, then on the remaining ranks.

    For work that writes files, such as a dataset that downloads and extracts its archive on first use. Run at
    once by every rank, processes sharing a folder would overwrite each other's files (torchvision writes the
    archive under its final name, then checks and extracts it); nodes that share a filesystem find rank 0's files
    in place, nodes that do not fetch their own copy one process per node. Waiting ranks wait in the coordination
    group (:data:`DATA_BUILD_TIMEOUT`), not in a collective of the process group, whose timeout a download or a
    folder scan can outlast.
    """
    if not ctx.distributed:
        return build()
    first = on_leaders(build, ctx, ctx.rank == 0, what, long_wait=True)
    node_leader = ctx.local_rank == 0 and ctx.rank != 0
    second = on_leaders(build, ctx, node_leader, what, long_wait=True)
    if ctx.rank == 0:
        return first
    return second if node_leader else build()


def broadcast_object(obj: T, ctx: DistContext, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` (any picklable object) on every rank; ``obj`` itself when not distributed."""
    if not ctx.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_objects(obj: Any, ctx: DistContext) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` when not distributed."""
    if not ctx.distributed:
        return [obj]
    gathered: List[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_state(module: nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to every rank, in place.

    Each tensor is broadcast where it lives (NCCL: the rank's GPU; gloo: CPU), in ``state_dict`` order, which is
    the same on every rank for the same architecture.
    """
    if not ctx.distributed:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
