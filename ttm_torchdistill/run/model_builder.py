"""Build the configured models as torchdistill's example runner does: torchvision first, then the registry.

The config is read, never edited: a missing ``kwargs`` is an empty mapping here, not written back.
"""
from typing import Any, Dict, List

from torch import nn
from torchdistill.models.official import get_image_classification_model
from torchdistill.models.registry import MODEL_DICT, get_model

from ..errors import RunError, one_line

PLUGIN = 'ttm_torchdistill'


def plugin_keys(registry: Dict[str, Any]) -> List[str]:
    """The keys of ``registry`` whose objects this package defines."""
    return sorted(k for k, v in registry.items() if getattr(v, '__module__', '').startswith(PLUGIN + '.'))


def _names_plugin(config: Dict[str, Any]) -> bool:
    deps = config.get('dependencies') or []
    return PLUGIN in repr(deps if not isinstance(deps, str) else [deps])


def registry_hint(config: Dict[str, Any], registry: Dict[str, Any]) -> str:
    """What the plugin provides in ``registry`` and whether the config names the plugin under ``dependencies:``."""
    keys = plugin_keys(registry)
    listed = ', '.join(keys) if keys else 'none'
    deps = ('the config names ttm_torchdistill under `dependencies:`' if _names_plugin(config) else
            'the config has no `dependencies:` entry naming ttm_torchdistill (add "dependencies: '
            '[{name: ttm_torchdistill}]" for torchdistill\'s own runners)')
    return f'ttm_torchdistill provides: {listed}; {deps}'


def build_model(model_config: Dict[str, Any], where: str, config: Dict[str, Any], distributed: bool) -> nn.Module:
    """Build the model of ``model_config`` (a ``models.<name>`` entry).

    :param where: its config location, e.g. ``models.teacher_model``, for messages.
    :param config: the whole config (for the ``dependencies:`` hint of an unknown key).
    :param distributed: passed to torchdistill (``sync_bn`` of torchvision models).
    :raises RunError: unknown key (listing the plugin's keys) or bad constructor arguments.
    """
    if not isinstance(model_config, dict) or 'key' not in model_config:
        raise RunError(f'{where} must be a mapping with a `key` (model name) and `kwargs`')
    key = model_config['key']
    model_config = dict(model_config, kwargs=model_config.get('kwargs') or dict())
    try:
        model = get_image_classification_model(model_config, distributed)
        if model is None:
            repo_or_dir = model_config.get('repo_or_dir')
            if key not in MODEL_DICT and repo_or_dir is None:
                raise RunError(f'unknown model key {key!r} in {where}.key (neither in torchvision.models nor '
                               f'in torchdistill\'s model registry); {registry_hint(config, MODEL_DICT)}')
            model = get_model(key, repo_or_dir, **model_config['kwargs'])
    except RunError:
        raise
    except (TypeError, ValueError) as exc:
        raise RunError(f'cannot build model {key!r} from {where}.kwargs={model_config["kwargs"]}: '
                       f'{one_line(exc)}') from None
    return model
