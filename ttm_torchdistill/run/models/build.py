"""Build the configured models as torchdistill's example runner does: torchvision first, then the registry.

The config is read, never edited: a missing ``kwargs`` is an empty mapping here, not written back. Unlike
torchdistill's ``get_image_classification_model``, ``sync_bn`` is honoured for every model (see
:func:`build_model`).
"""
from typing import Any, Callable, Dict, Optional

from torch import nn
from torchdistill.models.registry import get_model

from ...checks.signatures import accepted_arguments, argument_problem, public_text
from ...errors import RunError
from .lookup import model_callable


def build_model(model_config: Dict[str, Any], where: str, config: Dict[str, Any], convert_sync_bn: bool) -> nn.Module:
    """Build the model of ``model_config`` (a ``models.<name>`` entry).

    :param where: its config location, e.g. ``models.teacher_model``, for messages.
    :param config: the whole config (for the ``dependencies:`` hint of an unknown key).
    :param convert_sync_bn: turn BatchNorm layers into SyncBatchNorm when the entry says ``sync_bn: True``
        (:func:`ttm_torchdistill.run.device_policy.sync_bn_applies`). torchdistill converts only torchvision
        models; here every model is converted the same way, the plugin's ``cifar_*`` ones included.
    :raises RunError: unknown key (listing the plugin's keys) or bad constructor arguments.
    """
    repo_or_dir = model_config.get('repo_or_dir') if isinstance(model_config, dict) else None
    target = None if repo_or_dir is not None else model_callable(model_config, where, config)
    key, kwargs = model_config['key'], model_config.get('kwargs') or dict()
    try:
        model = get_model(key, repo_or_dir, **kwargs) if target is None else target(**kwargs)
    except (TypeError, ValueError) as exc:
        raise explain_model_failure(exc, where, key, target, kwargs) from None
    if convert_sync_bn and model_config.get('sync_bn', False):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def explain_model_failure(exc: BaseException, where: str, key: str, target: Optional[Callable],
                          kwargs: Dict[str, Any]) -> RunError:
    """The message for a model that could not be built from ``where`` (``models.<name>``)."""
    if target is not None:
        problem = argument_problem(key, accepted_arguments(target), kwargs)
        if problem is not None:
            return RunError(f'{where}.kwargs: {problem}')
    return RunError(f'cannot build model {key!r} from {where}.kwargs={kwargs}: {type(exc).__name__}: '
                    f'{public_text(exc, key)}')
