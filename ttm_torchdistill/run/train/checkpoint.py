"""Best and last-epoch checkpoints, written atomically, and the state needed for a bitwise-exact ``--resume``.

* best: ``dst_ckpt``, written when validation top-1 improves: ``{'model', 'best_value', 'epoch', 'top1', 'top5'}``
  (the ``'model'`` key keeps it loadable by torchdistill's ``load_ckpt``);
* last: ``<stem>.last<suffix>`` next to it, written after every epoch: model, optimizer, scheduler, epoch, best
  accuracy, per-epoch history, RNG states (python, numpy, torch, CUDA), the AMP gradient scaler (None unless
  the run uses one) and the box state (auxiliary heads, trainable teacher parts, loss buffers such as CRD's
  memory bank).

Both are written to a temporary file in the same folder and renamed, so a kill mid-write never leaves a
truncated checkpoint behind.
"""
import hashlib
import os
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ...atomic import atomic_file
from ...errors import RunError
from ..machine.context import DistContext, broadcast_object, on_leaders

LAST_FORMAT = 1


def last_ckpt_path(dst_ckpt: str) -> str:
    """``resource/ckpt/x.pt`` -> ``resource/ckpt/x.last.pt`` (``x`` -> ``x.last`` without a suffix)."""
    stem, suffix = os.path.splitext(dst_ckpt)
    return f'{stem}.last{suffix}'


def summary_path(dst_ckpt: str) -> str:
    """``resource/ckpt/x.pt`` -> ``resource/ckpt/x.json``."""
    return os.path.splitext(dst_ckpt)[0] + '.json'


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` through :func:`ttm_torchdistill.atomic.atomic_file` (never a torn checkpoint)."""
    with atomic_file(path) as pending:
        torch.save(obj, pending.file)


def capture_rng_state() -> Dict[str, Any]:
    """Python, numpy, torch CPU and (if present) CUDA generator states."""
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    state['cuda'] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return state


def restore_rng_state(state: Dict[str, Any]) -> List[str]:
    """Inverse of :func:`capture_rng_state`, for the devices that exist now; returns what could not be restored.

    A checkpoint written with more visible GPUs than this process has (another machine, a narrower
    ``CUDA_VISIBLE_DEVICES``) restores the generators of the devices present and reports the rest, instead of
    failing in ``set_rng_state_all``: like a change of world size, it only costs bitwise reproducibility.
    """
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    saved_cuda = state.get('cuda') or []
    if not saved_cuda:
        return []
    present = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, cuda_state in enumerate(saved_cuda[:present]):
        torch.cuda.set_rng_state(cuda_state, index)
    if len(saved_cuda) > present:
        return [f'the checkpoint holds CUDA RNG states of {len(saved_cuda)} devices, {present} visible now: '
                f'restored {min(present, len(saved_cuda))}, the run will not be bitwise identical']
    return []


def save_best(path: str, model_state: Dict[str, torch.Tensor], epoch: int, top1: float, top5: float) -> None:
    """Write the best checkpoint (``epoch`` 1-indexed)."""
    atomic_save({'model': model_state, 'best_value': top1, 'epoch': epoch, 'top1': top1, 'top5': top5}, path)


def best_checkpoint_epoch(path: str) -> Optional[int]:
    """The epoch recorded in a best checkpoint written by :func:`save_best`, or None if there is none."""
    if not os.path.isfile(path):
        return None
    try:
        return torch.load(path, map_location='cpu', weights_only=True).get('epoch')
    except Exception:  # an unreadable file holds no usable best epoch; the caller rewrites or warns
        return None


def save_last(path: str, model_state, optimizer, lr_scheduler, epoch: int, best: Dict[str, Any],
              history: list, world_size: int, wall_time_s: float, identity: Dict[str, Any], scaler=None,
              box_state: Optional[Dict[str, Any]] = None, rng_per_rank: Optional[List[Dict[str, Any]]] = None) -> None:
    """Write the last-epoch checkpoint (``epoch`` = number of completed epochs).

    :param identity: what makes a resumed run the same run (seed, config hash, overrides), see
        :func:`check_same_run`.
    :param scaler: the fp16 gradient scaler, if the run uses one.
    :param box_state: auxiliary modules and stateful losses (:mod:`ttm_torchdistill.run.train.box_state`).
    :param rng_per_rank: every rank's :func:`capture_rng_state`, in rank order (default: this process's only).
        Ranks may draw different amounts of random numbers (uneven shards, dropout on other batch sizes,
        data-dependent augmentation), so each rank resumes from its own states; ``'rng'`` keeps rank 0's.
    """
    rng_per_rank = list(rng_per_rank) if rng_per_rank else [capture_rng_state()]
    atomic_save({
        'format': LAST_FORMAT, 'model': model_state,
        'optimizer': optimizer.state_dict() if optimizer is not None else None,
        'lr_scheduler': lr_scheduler.state_dict() if lr_scheduler is not None else None,
        'scaler': scaler.state_dict() if scaler is not None else None,
        'epoch': epoch, 'best_value': best['top1'], 'best': best, 'history': history,
        'rng': rng_per_rank[0], 'rng_per_rank': rng_per_rank, 'world_size': world_size,
        'wall_time_s': wall_time_s, 'identity': identity, 'box_state': box_state or dict(),
    }, path)


def load_last(path: str) -> Dict[str, Any]:
    """Read a last-epoch checkpoint for ``--resume``.

    :raises RunError: nothing to resume or not a last-epoch checkpoint of this runner.
    """
    if not os.path.isfile(path):
        raise RunError(f'--resume: nothing to resume, no last-epoch checkpoint at {path} '
                       f'(it is written after each completed epoch)')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as exc:
        raise RunError(f'--resume: cannot read {path}: {type(exc).__name__}: {exc}') from None
    if not isinstance(ckpt, dict) or ckpt.get('format') != LAST_FORMAT or 'rng' not in ckpt:
        raise RunError(f'--resume: {path} is not a last-epoch checkpoint written by this runner')
    return ckpt


def load_last_on_rank0(path: str, ctx: DistContext) -> Dict[str, Any]:
    """:func:`load_last` on rank 0, its content broadcast to every rank.

    On several nodes without a shared filesystem only rank 0's disk holds the checkpoint rank 0 wrote; reading the
    file on every rank would fail on the other nodes or load a stale file, and the ranks would train apart (DDP
    synchronises parameters only when it is built). Every rank restores from rank 0's bytes instead.
    """
    ckpt = on_leaders(lambda: load_last(path), ctx, ctx.is_main, f'reading {path}')
    return broadcast_object(ckpt, ctx)


def rank_rng_state(ckpt: Dict[str, Any], rank: int, world_size: int) -> Dict[str, Any]:
    """The RNG states a resuming rank restores: its own when the checkpoint has one per rank of this world size,
    else rank 0's (a resume with another world size, or a checkpoint of an earlier version, is not bitwise)."""
    per_rank = ckpt.get('rng_per_rank')
    if per_rank and len(per_rank) == world_size:
        return per_rank[rank]
    return ckpt['rng']


def optional_state(obj: Optional[Any], state: Optional[Dict[str, Any]], what: str, path: str) -> None:
    """Load ``state`` into ``obj`` when both exist; complain when only one does."""
    if obj is None and state is None:
        return
    if obj is None or state is None:
        raise RunError(f'--resume: {path} {"has" if state is not None else "lacks"} a {what} state but the config '
                       f'{"does not define" if obj is None else "defines"} one')
    obj.load_state_dict(state)


def run_identity(config_path: str, seed: int, overrides: List[str], seed_drawn: bool = False) -> Dict[str, Any]:
    """Seed, sha256 of the config file and the ``--set`` overrides: what a resumed run must share with its start.

    :param seed_drawn: the seed was drawn because no ``--seed`` was given (see :mod:`.seeding`).
    """
    with open(os.path.expanduser(config_path), 'rb') as fp:
        digest = hashlib.sha256(fp.read()).hexdigest()
    return {'seed': seed, 'seed_drawn': bool(seed_drawn), 'config_sha256': digest, 'overrides': list(overrides)}


def check_same_run(saved: Optional[Dict[str, Any]], current: Dict[str, Any], path: str) -> List[str]:
    """Compare the identity stored in a last-epoch checkpoint with the resuming invocation.

    A different seed is an error (the RNG streams, and so the run, would be another one). A changed config file
    or different overrides are returned as warnings: continuing with more epochs is a legitimate use.

    :raises RunError: on a different seed.
    """
    if saved is None:
        return [f'{path} records no seed/config: cannot check that the resumed run is the same run']
    if saved['seed'] is None:
        notes = [f'{path} was written by a run without a recorded seed: the resumed run cannot be bitwise identical']
    elif saved['seed'] != current['seed']:
        started = f'seed {saved["seed"]} (drawn, no --seed given)' if saved.get('seed_drawn') else \
            f'--seed {saved["seed"]}'
        raise RunError(f'--resume: {path} was started with {started}, now --seed {current["seed"]}; resume with '
                       f'--seed {saved["seed"]} (or without --seed, which takes the recorded one)')
    else:
        notes = []
    if saved['config_sha256'] != current['config_sha256']:
        notes.append('the config file changed since the run started')
    if saved['overrides'] != current['overrides']:
        notes.append(f'--set overrides differ: started with {saved["overrides"]}, now {current["overrides"]}')
    return notes
