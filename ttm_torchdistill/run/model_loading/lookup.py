"""Which class or function builds a ``models.<name>`` entry: torchvision first, then torchdistill's registry.

The order is that of torchdistill's example runner. An unknown key is an error naming the closest known key, what
this plugin provides, and whether the config names the plugin under ``dependencies:``.
"""
from typing import Any, Callable, Dict, List

import torchvision.models
import torchvision.models.quantization
from torchdistill.models.registry import MODEL_DICT

from ...checks.signatures import suggestion
from ...errors import RunError

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


def model_callable(model_config: Dict[str, Any], where: str, config: Dict[str, Any]) -> Callable:
    """The class or function that builds ``model_config``, looked up as torchdistill's example runner does
    (torchvision.models first, then torchdistill's model registry).

    :raises RunError: unknown key (listing the plugin's keys and the closest one).
    """
    if not isinstance(model_config, dict) or 'key' not in model_config:
        raise RunError(f'{where} must be a mapping with a `key` (model name) and `kwargs`')
    key = model_config['key']
    namespace = torchvision.models.quantization if model_config.get('quantized', False) else torchvision.models
    if isinstance(key, str) and callable(namespace.__dict__.get(key)):
        return namespace.__dict__[key]
    if key in MODEL_DICT:
        return MODEL_DICT[key]
    close = suggestion(str(key), list(MODEL_DICT) + [k for k in torchvision.models.__dict__ if k.islower()])
    hint = f" (did you mean '{close}'?)" if close else ''
    raise RunError(f'unknown model key {key!r} in {where}.key{hint} (neither in torchvision.models nor in '
                   f'torchdistill\'s model registry); {registry_hint(config, MODEL_DICT)}')
