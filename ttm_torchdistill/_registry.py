"""Registration into torchdistill's registries that never silently replaces an existing entry.

torchdistill's ``register_*`` decorators write into plain dicts and overwrite whatever a key already
holds. A plugin that did the same could quietly swap out a built-in loss (``DISTLoss``, ``KDLoss``)
or another package's model for every pipeline in the process. Every registration of this package
goes through :func:`register_unique`, which refuses a key that is taken by a different object.
"""
from typing import Callable, MutableMapping, Optional

# Import torchdistill's own registrations first, so a clash with a built-in key is seen here instead of
# torchdistill overwriting our entry (or we its) when its modules are imported later.
import torchdistill.core  # noqa: F401  (pre-epoch processes)
import torchdistill.datasets  # noqa: F401  (CRDDatasetWrapper, SSKDDatasetWrapper, ...)
import torchdistill.losses  # noqa: F401  (KDLoss, DISTLoss, WeightedSumLoss, ...)
import torchdistill.models  # noqa: F401  (resnet20, wide_resnet, densenet, ...)
from torchdistill.core.interfaces.registry import PRE_EPOCH_PROC_FUNC_DICT, register_pre_epoch_proc_func
from torchdistill.datasets.registry import (
    DATASET_DICT, DATASET_WRAPPER_DICT, register_dataset, register_dataset_wrapper,
)
from torchdistill.losses.registry import (
    HIGH_LEVEL_LOSS_DICT, LOSS_DICT, LOW_LEVEL_LOSS_DICT, MIDDLE_LEVEL_LOSS_DICT, register_mid_level_loss,
)
from torchdistill.models.registry import (
    AUXILIARY_MODEL_WRAPPER_DICT, MODEL_DICT, register_auxiliary_model_wrapper, register_model,
)
from .checks.signatures import checked_keywords


def _same_definition(a: object, b: object) -> bool:
    # importlib.reload() of one of our modules re-creates its classes; that is the same definition.
    return (getattr(a, '__module__', None), getattr(a, '__qualname__', None)) == \
        (getattr(b, '__module__', None), getattr(b, '__qualname__', None))


def register_unique(registry: MutableMapping[str, object], key: str, obj: object, kind: str,
                    register: Callable, taken: Optional[Callable[[str], Optional[str]]] = None,
                    check_keywords: bool = True) -> object:
    """Register ``obj`` under ``key`` unless another object already owns the key.

    A registered class or model function is built by torchdistill (or by a user) from keyword arguments; with
    ``check_keywords`` it refuses a wrong one with a message naming itself, the argument and the closest valid one
    (:func:`ttm_torchdistill.checks.signatures.checked_keywords`) instead of Python's, which may name a private base.

    :param registry: the torchdistill dict written by ``register``.
    :param key: the registry key.
    :param obj: the class or function to register.
    :param kind: what is registered, for the error message (e.g. ``'mid-level loss'``).
    :param register: torchdistill's decorator factory for this registry (called as ``register(key=key)(obj)``).
    :param taken: optional extra check returning a description of a conflicting owner, or ``None``.
    :param check_keywords: wrap ``obj`` with ``checked_keywords`` (False for processes, which torchdistill calls with
        arguments of its own).
    :return: what was registered (``obj``, or its checked wrapper for a function).
    :raises KeyError: if ``key`` is already registered to a different object.
    """
    existing = registry.get(key)
    if existing is not None and existing is not obj and not _same_definition(existing, obj):
        raise KeyError(
            f'{kind} key {key!r} is already registered to {existing.__module__}.{existing.__qualname__}; '
            f'refusing to replace it with {obj.__module__}.{obj.__qualname__}. Choose another key.')
    if taken is not None:
        owner = taken(key)
        if owner is not None:
            raise KeyError(f'{kind} key {key!r} would be shadowed by {owner}; choose another key.')
    if check_keywords:
        obj = checked_keywords(obj, name=key)
    register(key=key)(obj)
    return obj


def _loss_key_taken(key: str) -> Optional[str]:
    # get_mid_level_loss falls back to these dicts, so a name there is as good as taken.
    for name, table in (('torch.nn loss', LOSS_DICT), ('low-level loss', LOW_LEVEL_LOSS_DICT),
                        ('high-level loss', HIGH_LEVEL_LOSS_DICT)):
        if key in table:
            return f'the {name} {key!r}'
    return None


def _model_key_taken(key: str) -> Optional[str]:
    # torchdistill's image-classification runner looks a key up in torchvision.models before its registry.
    import torchvision.models
    if key in torchvision.models.__dict__:
        return f'torchvision.models.{key} (torchdistill resolves torchvision names first)'
    return None


def mid_level_loss(key: Optional[str] = None):
    """Decorator: register a mid-level loss under ``key`` (default: the class name), never overwriting."""
    def decorator(obj):
        return register_unique(MIDDLE_LEVEL_LOSS_DICT, key or obj.__name__, obj, 'mid-level loss',
                               register_mid_level_loss, taken=_loss_key_taken)
    return decorator


def model(key: Optional[str] = None):
    """Decorator: register a model constructor under ``key`` (default: its name), never overwriting."""
    def decorator(obj):
        return register_unique(MODEL_DICT, key or obj.__name__, obj, 'model', register_model,
                               taken=_model_key_taken)
    return decorator


def pre_epoch_process(key: Optional[str] = None):
    """Decorator: register a ``pre_epoch_process`` function under ``key``, never overwriting."""
    def decorator(obj):
        return register_unique(PRE_EPOCH_PROC_FUNC_DICT, key or obj.__name__, obj, 'pre-epoch process',
                               register_pre_epoch_proc_func, check_keywords=False)
    return decorator


def auxiliary_model_wrapper(key: Optional[str] = None):
    """Decorator: register an auxiliary model wrapper (``train.student.auxiliary_model_wrapper.key``), never
    overwriting."""
    def decorator(obj):
        return register_unique(AUXILIARY_MODEL_WRAPPER_DICT, key or obj.__name__, obj, 'auxiliary model wrapper',
                               register_auxiliary_model_wrapper)
    return decorator


def dataset_wrapper(key: Optional[str] = None):
    """Decorator: register a dataset wrapper (``train_data_loader.dataset_wrapper.key``), never overwriting."""
    def decorator(obj):
        return register_unique(DATASET_WRAPPER_DICT, key or obj.__name__, obj, 'dataset wrapper',
                               register_dataset_wrapper)
    return decorator


def dataset(key: Optional[str] = None):
    """Decorator: register a dataset class (torchdistill's ``get_dataset(key)``), never overwriting."""
    def decorator(obj):
        return register_unique(DATASET_DICT, key or obj.__name__, obj, 'dataset', register_dataset)
    return decorator
