"""Load checkpoints into models strictly: a missing file or another architecture is an error, never a log line.

torchdistill's ``load_ckpt`` only logs when a file is missing, so a typo in a teacher's ``src_ckpt`` silently
distils from a random teacher; here a missing file is an error naming the path and the config location, and a
checkpoint of another architecture is an error naming the mismatched keys.
"""
import os
import pickle
import re
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ...errors import RunError, one_line


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


def fetchable_teacher(model_key: Any) -> Optional[str]:
    """The ``fetch-teachers`` name of the public checkpoint for the plugin's model ``cifar_<name>``, if any."""
    from ...teachers import (
        TEACHERS,  # the CLI subcommand's list; imported here so weights stay cheap to import
    )
    if isinstance(model_key, str) and model_key.startswith('cifar_') and model_key[len('cifar_'):] in TEACHERS:
        return model_key[len('cifar_'):]
    return None


def how_to_get_weights(model_key: Any, where: str) -> str:
    """How to obtain weights for ``model_key`` loaded at ``where`` (``fix the path`` for non-teachers)."""
    name = fetchable_teacher(model_key)
    if name is not None:
        from ...teachers import DEFAULT_DEST, checkpoint_path
        return (f'fetch it with: python -m ttm_torchdistill fetch-teachers --names {name} (it writes '
                f'{checkpoint_path(DEFAULT_DEST, name)})')
    if 'teacher' not in where:
        return 'fix the path'
    hints = [f'no public checkpoint of {model_key!r} is fetched by this package: train one with its '
             f'configs/cifar100/ce/ config (or any config whose student is {model_key!r}) and point src_ckpt at '
             f'that run\'s dst_ckpt']
    import torchvision.models
    if isinstance(model_key, str) and callable(torchvision.models.__dict__.get(model_key)):
        hints.append(f'or, for torchvision\'s pretrained {model_key}, drop src_ckpt and set '
                     f'models.teacher_model.kwargs.weights (e.g. weights: IMAGENET1K_V1)')
    return '; '.join(hints)


def missing_checkpoint(path: str, where: str, model_key: Any = None) -> RunError:
    """The one error for a checkpoint path that does not exist, with how to get weights for ``model_key``.

    ``fetch-teachers`` is suggested only for the teachers it can fetch (the plugin's ``cifar_<name>`` models of
    :data:`ttm_torchdistill.teachers.TEACHERS`).
    """
    return RunError(f'checkpoint not found: {path} ({where}); {how_to_get_weights(model_key, where)}')


def is_remote(path: Any) -> bool:
    """A ``src_ckpt`` given as an http(s) URL (downloaded by torch.hub, not checked on disk)."""
    return isinstance(path, str) and path.startswith(('http://', 'https://'))


_PICKLED_GLOBAL = re.compile(r'GLOBAL\s+([A-Za-z_][\w.]*)')
_UNPICKLER_REASON = re.compile(r'WeightsUnpickler error:\s*(.+?)(?:\.\s|$)')


def pickled_content(exc: BaseException) -> str:
    """What torch's ``weights_only`` loader refused, read from its message (the file is never unpickled here).

    torch names the offending global (``Unsupported global: GLOBAL argparse.Namespace ...``); other refusals
    give their reason after ``WeightsUnpickler error:``.
    """
    text = one_line(exc, limit=None)
    found = _PICKLED_GLOBAL.search(text)
    if found:
        return f'a pickled {found.group(1)} object'
    found = _UNPICKLER_REASON.search(text)
    if found:
        return f'pickled Python data ({found.group(1).strip()})'
    return 'pickled Python objects besides tensors'


def _refused_pickle(path: str, where: str, exc: BaseException) -> RunError:
    return RunError(f'checkpoint {path} ({where}) holds {pickled_content(exc)}, which only loads by running code '
                    f'stored in the file (torch.load(weights_only=True) refuses it); if you trust the file, rerun '
                    f'with --allow_pickle; otherwise re-save only its weights where it was made, '
                    f'torch.save(model.state_dict(), PATH), and point {where} at that file')


def _read(path: str, where: str, allow_pickle: bool) -> Any:
    remote = is_remote(path)
    expanded = path if remote else os.path.expanduser(str(path))
    if not remote and not os.path.isfile(expanded):
        raise missing_checkpoint(path, where)
    try:
        if remote:
            # load_state_dict_from_url unpickles arbitrary objects unless told otherwise, like a local file would
            return torch.hub.load_state_dict_from_url(path, map_location='cpu', progress=True,
                                                      weights_only=not allow_pickle)
        return torch.load(expanded, map_location='cpu', weights_only=not allow_pickle)
    except pickle.UnpicklingError as exc:
        raise _refused_pickle(path, where, exc) from None
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
