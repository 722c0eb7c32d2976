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
import logging
import os
import random
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...atomic import atomic_file
from ...errors import RunError
from ..config.identity import code_version, is_epoch_change, tree_changes, tree_digest
from ..data.sample_streams import STREAMS_VERSION
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
              box_state: Optional[Dict[str, Any]] = None, rng_per_rank: Optional[List[Dict[str, Any]]] = None,
              config_tree: Any = None, attempts: Optional[List[Dict[str, Any]]] = None) -> None:
    """Write the last-epoch checkpoint (``epoch`` = number of completed epochs).

    :param identity: what makes a resumed run the same run (seed, config digest, overrides), see
        :func:`check_same_run`.
    :param config_tree: the composed config the run trains with (:func:`~..config.identity.config_tree`), so that a
        later ``--resume`` can name what changed.
    :param attempts: every session of the run so far (:mod:`~ttm_torchdistill.run.attempts`).
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
        'config_tree': config_tree, 'attempts': list(attempts or []),
    }, path)


def numpy_rng_globals() -> List[Any]:
    """What numpy's global RNG state (``np.random.get_state()``: a uint32 array) pickles as: the only classes a
    last-epoch checkpoint needs beyond ``torch.load(weights_only=True)``'s own."""
    # the function numpy's arrays pickle themselves with (numpy 1 and 2 keep it in different modules)
    reconstruct = np.zeros(1, dtype=np.uint32).__reduce__()[0]
    return [reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_last(path: str, allow_pickle: bool = False) -> Dict[str, Any]:
    """Read a last-epoch checkpoint for ``--resume`` with ``torch.load(weights_only=True)`` (numpy's RNG arrays
    allowed), so that a file planted in a run folder cannot run code; ``allow_pickle`` reads it with pickle.

    :raises RunError: nothing to resume, a file that needs other classes, or not a last-epoch checkpoint.
    """
    if not os.path.isfile(path):
        raise RunError(f'--resume: nothing to resume, no last-epoch checkpoint at {path} '
                       f'(it is written after each completed epoch)')
    try:
        if allow_pickle:
            ckpt = torch.load(path, map_location='cpu', weights_only=False)
        else:
            with torch.serialization.safe_globals(numpy_rng_globals()):
                ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:
        unsafe = _unsafe_globals(path) if not allow_pickle else []
        if unsafe:
            raise RunError(f'--resume: {path} holds objects that torch.load(weights_only=True) does not read '
                           f'({", ".join(unsafe[:5])}); a last-epoch checkpoint of this runner holds none: if you '
                           f'trust the file, --allow_pickle reads it with pickle (which runs code stored in it)') \
                from None
        raise RunError(f'--resume: cannot read {path}: {type(exc).__name__}: {exc}') from None
    if not isinstance(ckpt, dict) or ckpt.get('format') != LAST_FORMAT or 'rng' not in ckpt:
        raise RunError(f'--resume: {path} is not a last-epoch checkpoint written by this runner')
    return ckpt


def _unsafe_globals(path: str) -> List[str]:
    allowed = {f'{g.__module__}.{g.__qualname__}' for g in numpy_rng_globals()}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a torch checkpoint at all: the read error says so
        return []
    return [name for name in found if name not in allowed]


def load_last_on_rank0(path: str, ctx: DistContext, allow_pickle: bool = False) -> Dict[str, Any]:
    """:func:`load_last` on rank 0, its content broadcast to every rank.

    On several nodes without a shared filesystem only rank 0's disk holds the checkpoint rank 0 wrote; reading the
    file on every rank would fail on the other nodes or load a stale file, and the ranks would train apart (DDP
    synchronises parameters only when it is built). Every rank restores from rank 0's bytes instead.
    """
    ckpt = on_leaders(lambda: load_last(path, allow_pickle), ctx, ctx.is_main, f'reading {path}')
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


def run_identity(config_path: str, seed: int, overrides: List[str], seed_drawn: bool = False,
                 tree: Any = None) -> Dict[str, Any]:
    """What a resumed run must share with its start, and what each attempt records.

    :param seed_drawn: the seed was drawn because no ``--seed`` was given (see :mod:`.seeding`).
    :param tree: the composed config after the overrides (:func:`~..config.identity.config_tree`); its digest
        leaves out paths that move files or tune loading.
    :return: ``{seed, seed_drawn, config (the path given), config_sha256 (the file's bytes), config_digest,
        overrides, code_version, streams}`` (``streams``: how torchdistill's loaders draw,
        :mod:`~..data.sample_streams`).
    """
    with open(os.path.expanduser(config_path), 'rb') as fp:
        digest = hashlib.sha256(fp.read()).hexdigest()
    return {'seed': seed, 'seed_drawn': bool(seed_drawn), 'config': config_path, 'config_sha256': digest,
            'config_digest': tree_digest(tree) if tree is not None else None, 'overrides': list(overrides),
            'code_version': code_version(), 'streams': STREAMS_VERSION}


def _check_seed(saved: Dict[str, Any], current: Dict[str, Any], path: str) -> List[Tuple[int, str]]:
    if saved['seed'] is None:
        return [(logging.WARNING, f'{path} was written by a run without a recorded seed: the resumed run cannot be '
                                  f'bitwise identical')]
    if saved['seed'] != current['seed']:
        started = f'seed {saved["seed"]} (drawn, no --seed given)' if saved.get('seed_drawn') else \
            f'--seed {saved["seed"]}'
        raise RunError(f'--resume: {path} was started with {started}, now --seed {current["seed"]}; resume with '
                       f'--seed {saved["seed"]} (or without --seed, which takes the recorded one)')
    return []


def _check_tree(saved_tree: Any, current_tree: Any, path: str, continue_changed: bool) -> List[Tuple[int, str]]:
    changes = tree_changes(saved_tree, current_tree)
    notes = [(logging.INFO, f'more epochs than the run started with: {c.text()} (the run continues to the new '
                            f'end; the schedule follows the config)') for c in changes if is_epoch_change(c)]
    others = [c for c in changes if not is_epoch_change(c)]
    if others and not continue_changed:
        listed = '; '.join(c.text() for c in others[:5]) + (f'; and {len(others) - 5} more' if len(others) > 5 else '')
        raise RunError(f'--resume: the config differs from the one {path} was trained with ({listed}); continuing '
                       f'would mix two experiments in one run: start it again without --resume (its checkpoints '
                       f'are overwritten), or continue it anyway with --resume --continue-changed (the summary '
                       f'records the change)')
    if others:
        notes.append((logging.WARNING, f'continuing under a changed config (--continue-changed): '
                                       f'{"; ".join(c.text() for c in others)}; the summary records it'))
    return notes


def check_same_run(saved: Optional[Dict[str, Any]], current: Dict[str, Any], path: str, saved_tree: Any = None,
                   current_tree: Any = None, continue_changed: bool = False) -> List[Tuple[int, str]]:
    """Compare the identity and config stored in a last-epoch checkpoint with the resuming invocation.

    A different seed is an error (the RNG streams, and so the run, would be another one); so is a changed config
    (a path of the composed config after ``--set``, bookkeeping left out, :mod:`..config.identity`) unless
    ``continue_changed``; more epochs are a continuation. Checkpoints of earlier versions, which hold no config
    tree, are compared by the file's digest and the overrides, with a warning.

    :return: ``(logging level, note)`` pairs to log.
    :raises RunError: on a different seed, or a changed config without ``continue_changed``.
    """
    if saved is None:
        return [(logging.WARNING, f'{path} records no seed/config: cannot check that the resumed run is the same '
                                  f'run')]
    notes = _check_seed(saved, current, path)
    if saved_tree is not None and current_tree is not None:
        notes += _check_tree(saved_tree, current_tree, path, continue_changed)
    else:
        if saved['config_sha256'] != current['config_sha256']:
            notes.append((logging.WARNING, 'the config file changed since the run started'))
        if saved['overrides'] != current['overrides']:
            notes.append((logging.WARNING, f'--set overrides differ: started with {saved["overrides"]}, now '
                                           f'{current["overrides"]}'))
    if saved.get('streams') != current.get('streams'):
        notes.append((logging.WARNING, f'{path} was written by a version whose data loaders drew augmentation '
                                       f'otherwise ({saved.get("streams") or "torch worker seeding"}, now '
                                       f'{current.get("streams")}): the run will not be bitwise identical'))
    return notes
