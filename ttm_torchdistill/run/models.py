"""Build the configured models and load checkpoints strictly (missing file or wrong architecture is an error).

torchdistill's ``load_ckpt`` only logs when a file is missing, so a typo in a teacher's ``src_ckpt`` silently
distils from a random teacher; here a missing file is an error naming the path (a warning under ``--smoke``) and a
checkpoint of another architecture is an error naming the mismatched keys.
"""
import os
import pickle
from typing import Any, Dict, List, Optional

import torch
from torch import nn
from torchdistill.losses.registry import (
    HIGH_LEVEL_LOSS_DICT, LOSS_DICT, LOW_LEVEL_LOSS_DICT, MIDDLE_LEVEL_LOSS_DICT,
)
from torchdistill.models.official import get_image_classification_model
from torchdistill.models.registry import MODEL_DICT, get_model

from .errors import RunError, first_line

PLUGIN = 'ttm_torchdistill'


def _plugin_keys(registry: Dict[str, Any]) -> List[str]:
    return sorted(k for k, v in registry.items() if getattr(v, '__module__', '').startswith(PLUGIN + '.'))


def _names_plugin(config: Dict[str, Any]) -> bool:
    deps = config.get('dependencies') or []
    if isinstance(deps, str):
        deps = [deps]
    text = repr(deps)
    return PLUGIN in text


def _registry_hint(config: Dict[str, Any], registry: Dict[str, Any]) -> str:
    keys = _plugin_keys(registry)
    listed = ', '.join(keys) if keys else 'none'
    deps = ('the config names ttm_torchdistill under `dependencies:`' if _names_plugin(config) else
            'the config has no `dependencies:` entry naming ttm_torchdistill (add "dependencies: '
            '[{name: ttm_torchdistill}]" for torchdistill\'s own runners)')
    return f'ttm_torchdistill provides: {listed}; {deps}'


def build_model(model_config: Dict[str, Any], where: str, config: Dict[str, Any], distributed: bool) -> nn.Module:
    """Build a model like torchdistill's example runner: torchvision first, then the torchdistill registry.

    :raises RunError: unknown key (listing the plugin's keys) or bad constructor arguments.
    """
    if not isinstance(model_config, dict) or 'key' not in model_config:
        raise RunError(f'{where} must be a mapping with a `key` (model name) and `kwargs`')
    model_config.setdefault('kwargs', dict())
    if model_config['kwargs'] is None:
        model_config['kwargs'] = dict()
    key = model_config['key']
    try:
        model = get_image_classification_model(model_config, distributed)
        if model is None:
            repo_or_dir = model_config.get('repo_or_dir')
            if key not in MODEL_DICT and repo_or_dir is None:
                raise RunError(f'unknown model key {key!r} in {where}.key (neither in torchvision.models nor '
                               f'in torchdistill\'s model registry); {_registry_hint(config, MODEL_DICT)}')
            model = get_model(key, repo_or_dir, **model_config['kwargs'])
    except RunError:
        raise
    except (TypeError, ValueError) as exc:
        raise RunError(f'cannot build model {key!r} from {where}.kwargs={model_config["kwargs"]}: {exc}') from None
    return model


def check_loss_keys(config: Dict[str, Any]) -> None:
    """Check every criterion key of the train block(s) before torchdistill's bare ``KeyError``/``ValueError``."""
    from .smoke import iter_train_stage_configs
    for where, stage in iter_train_stage_configs(config):
        criterion = stage.get('criterion')
        if not isinstance(criterion, dict):
            continue
        high_key = criterion.get('key')
        if high_key not in HIGH_LEVEL_LOSS_DICT:
            raise RunError(f'unknown high-level loss key {high_key!r} in {where}.criterion.key; '
                           f'available: {", ".join(sorted(HIGH_LEVEL_LOSS_DICT))}')
        sub_terms = (criterion.get('kwargs') or dict()).get('sub_terms') or dict()
        for name, term in sub_terms.items():
            sub = (term or dict()).get('criterion')
            if not isinstance(sub, dict):
                continue
            key = sub.get('key')
            if key not in MIDDLE_LEVEL_LOSS_DICT and key not in LOSS_DICT and key not in LOW_LEVEL_LOSS_DICT:
                raise RunError(f'unknown loss key {key!r} in {where}.criterion.kwargs.sub_terms.{name}; '
                               f'{_registry_hint(config, MIDDLE_LEVEL_LOSS_DICT)}')
            if key in MIDDLE_LEVEL_LOSS_DICT and 'kwargs' not in sub:
                raise RunError(f'{where}.criterion.kwargs.sub_terms.{name}.criterion needs `kwargs:` '
                               f'(torchdistill requires it for mid-level loss {key!r})')


def _extract_state_dict(ckpt: Any, path: str) -> Dict[str, torch.Tensor]:
    # RepDistiller saves {'model': state_dict, 'epoch': ..., 'accuracy': ...}; torchdistill {'model': ..., ...}.
    state = ckpt['model'] if isinstance(ckpt, dict) and isinstance(ckpt.get('model'), dict) else ckpt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunError(f'checkpoint {path} holds neither a state_dict nor a dict with a "model" state_dict')
    keys = list(state)
    # A model saved while wrapped in (Distributed)DataParallel: every key starts with 'module.'.
    if keys and all(k.startswith('module.') for k in keys):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def _preview(keys: List[str], limit: int = 6) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in total)' if len(keys) > limit else '')


def missing_checkpoint(path: str, where: str) -> RunError:
    """The error for a checkpoint path that does not exist."""
    return RunError(f'checkpoint not found: {path} ({where}); fix the path or fetch it first '
                    f'(e.g. python -m ttm_torchdistill fetch-teachers)')


def check_checkpoint_paths(models: Dict[str, Any]) -> None:
    """Fail on a missing local ``src_ckpt`` before datasets are built or downloaded (a typo should cost seconds)."""
    for name, model_config in models.items():
        path = model_config.get('src_ckpt') if isinstance(model_config, dict) else None
        if isinstance(path, str) and path and not path.startswith(('http://', 'https://')) \
                and not os.path.isfile(os.path.expanduser(path)):
            raise missing_checkpoint(path, f'models.{name}.src_ckpt')


def load_weights(model: nn.Module, path: Optional[str], where: str, smoke: bool, logger,
                 allow_pickle: bool = False) -> bool:
    """Load ``path`` into ``model`` strictly; returns False when skipped (no path, or missing under smoke).

    :param where: config location of the path (e.g. ``models.teacher_model.src_ckpt``) for messages.
    :param allow_pickle: load with ``torch.load(weights_only=False)``, which runs code stored in the file; the
        default ``weights_only=True`` reads RepDistiller's and this runner's checkpoints.
    :raises RunError: missing file (outside smoke runs), unreadable file, or architecture mismatch.
    """
    if path is None or path == '':
        return False
    if isinstance(path, str) and path.startswith(('http://', 'https://')):
        if smoke:
            logger.warning(f'{where}: {path} not downloaded (smoke run); using random weights')
            return False
        # load_state_dict_from_url unpickles arbitrary objects unless told otherwise, like a local file would
        ckpt = torch.hub.load_state_dict_from_url(path, map_location='cpu', progress=True,
                                                  weights_only=not allow_pickle)
    else:
        expanded = os.path.expanduser(str(path))
        if not os.path.isfile(expanded):
            if smoke:
                logger.warning(f'{where}: checkpoint {path} does not exist; smoke run continues with random weights')
                return False
            raise missing_checkpoint(path, where)
        try:
            ckpt = torch.load(expanded, map_location='cpu', weights_only=not allow_pickle)
        except pickle.UnpicklingError as exc:
            first = first_line(exc) or type(exc).__name__
            raise RunError(f'checkpoint {path} ({where}) holds Python objects that torch.load(weights_only=True) '
                           f'refuses ({first}); re-save its state_dict, or pass --allow_pickle for a file you '
                           f'trust') from None
        except Exception as exc:
            first = first_line(exc)
            raise RunError(f'cannot read checkpoint {path} ({where}): {type(exc).__name__}: {first}') from None
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
