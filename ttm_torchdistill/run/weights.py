"""Load checkpoints into models strictly: a missing file or another architecture is an error, never a log line.

torchdistill's ``load_ckpt`` only logs when a file is missing, so a typo in a teacher's ``src_ckpt`` silently
distils from a random teacher; here a missing file is an error naming the path and the config location, and a
checkpoint of another architecture is an error naming the mismatched keys.
"""
import os
import pickle
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..errors import RunError, one_line


def _extract_state_dict(ckpt: Any, path: str) -> Dict[str, torch.Tensor]:
    # RepDistiller saves {'model': state_dict, 'epoch': ..., 'accuracy': ...}; torchdistill {'model': ..., ...}.
    state = ckpt['model'] if isinstance(ckpt, dict) and isinstance(ckpt.get('model'), dict) else ckpt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunError(f'checkpoint {path} holds neither a state_dict nor a dict with a "model" state_dict')
    # A model saved while wrapped in (Distributed)DataParallel ('module.') or torch.compile ('_orig_mod.'): every
    # key carries the wrapper's prefix.
    for prefix in ('module.', '_orig_mod.'):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _preview(keys: List[str], limit: int = 6) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in total)' if len(keys) > limit else '')


def missing_checkpoint(path: str, where: str) -> RunError:
    """The one error for a checkpoint path that does not exist."""
    return RunError(f'checkpoint not found: {path} ({where}); fix the path or fetch it first '
                    f'(e.g. python -m ttm_torchdistill fetch-teachers)')


def is_remote(path: Any) -> bool:
    """A ``src_ckpt`` given as an http(s) URL (downloaded by torch.hub, not checked on disk)."""
    return isinstance(path, str) and path.startswith(('http://', 'https://'))


def _read(path: str, where: str, allow_pickle: bool) -> Any:
    if is_remote(path):
        # load_state_dict_from_url unpickles arbitrary objects unless told otherwise, like a local file would
        return torch.hub.load_state_dict_from_url(path, map_location='cpu', progress=True,
                                                  weights_only=not allow_pickle)
    expanded = os.path.expanduser(str(path))
    if not os.path.isfile(expanded):
        raise missing_checkpoint(path, where)
    try:
        return torch.load(expanded, map_location='cpu', weights_only=not allow_pickle)
    except pickle.UnpicklingError as exc:
        raise RunError(f'checkpoint {path} ({where}) holds Python objects that torch.load(weights_only=True) '
                       f'refuses ({one_line(exc, 160)}); re-save its state_dict, or pass --allow_pickle for a file '
                       f'you trust') from None
    except Exception as exc:
        raise RunError(f'cannot read checkpoint {path} ({where}): {type(exc).__name__}: {one_line(exc)}') from None


def load_weights(model: nn.Module, path: Optional[str], where: str, logger, allow_pickle: bool = False) -> bool:
    """Load ``path`` into ``model`` strictly; returns False when there is no path.

    :param where: config location of the path (e.g. ``models.teacher_model.src_ckpt``) for messages.
    :param allow_pickle: load with ``torch.load(weights_only=False)``, which runs code stored in the file; the
        default ``weights_only=True`` reads RepDistiller's and this runner's checkpoints.
    :raises RunError: missing file, unreadable file, or architecture mismatch.
    """
    if path is None or path == '':
        return False
    ckpt = _read(path, where, allow_pickle)
    state = _extract_state_dict(ckpt, str(path))
    target = model.module if hasattr(model, 'module') and isinstance(model.module, nn.Module) else model
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shape = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f'missing keys: {_preview(missing)}')
        if unexpected:
            parts.append(f'unexpected keys: {_preview(unexpected)}')
        if shape:
            parts.append(f'shape mismatch (checkpoint vs model): {_preview(shape, 3)}')
        raise RunError(f'checkpoint {path} ({where}) does not match the model {type(target).__name__}: '
                       + '; '.join(parts))
    target.load_state_dict(state, strict=True)
    logger.info(f'Loaded {where}: {path}')
    return True
