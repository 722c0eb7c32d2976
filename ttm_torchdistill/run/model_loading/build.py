"""Build the configured models as torchdistill's example runner does: torchvision first, then the registry.

The config is read, never edited: a missing ``kwargs`` is an empty mapping here, not written back. Unlike
torchdistill's ``get_image_classification_model``, ``sync_bn`` is honoured for every model (see
:func:`build_model`).
"""
import os
from typing import Any, Callable, Dict, Optional

import torch
import torchvision.models
from torch import nn
from torchdistill.models.registry import get_model

from ...checks.signatures import accepted_arguments, argument_problem, public_text
from ...errors import RunError, one_line
from .lookup import model_callable


def build_model(model_config: Dict[str, Any], where: str, config: Dict[str, Any], convert_sync_bn: bool) -> nn.Module:
    """Build the model of ``model_config`` (a ``models.<name>`` entry).

    :param where: its config location, e.g. ``models.teacher_model``, for messages.
    :param config: the whole config (for the ``dependencies:`` hint of an unknown key).
    :param convert_sync_bn: turn BatchNorm layers into SyncBatchNorm when the entry says ``sync_bn: True``
        (:func:`ttm_torchdistill.run.machine.fit_to_machine.sync_bn_applies`). torchdistill converts only torchvision
        models; here every model is converted the same way, the plugin's ``cifar_*`` ones included.
    :raises RunError: unknown key (listing the plugin's keys) or bad constructor arguments.
    """
    repo_or_dir = model_config.get('repo_or_dir') if isinstance(model_config, dict) else None
    target = None if repo_or_dir is not None else model_callable(model_config, where, config)
    key, kwargs = model_config['key'], model_config.get('kwargs') or dict()
    try:
        model = get_model(key, repo_or_dir, **kwargs) if target is None else target(**kwargs)
    except RuntimeError as exc:
        if repo_or_dir is None or not hub_unreachable(exc):
            raise
        raise hub_repository_missing(exc, where, key, repo_or_dir) from None
    except (TypeError, ValueError) as exc:
        raise explain_model_failure(exc, where, key, target, kwargs) from None
    except OSError as exc:  # a download of pretrained weights (urllib's URLError is an OSError)
        if kwargs.get('weights') in (None, '') and not kwargs.get('pretrained'):
            raise
        raise weights_download_failed(exc, where, key, kwargs) from None
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


def hub_unreachable(exc: BaseException) -> bool:
    """torch.hub's failure to reach GitHub for a repository that is not in its cache."""
    text = str(exc).lower()
    return 'no internet connection' in text or 'could not be found in the cache' in text


def hub_repository_missing(exc: BaseException, where: str, key: str, repo_or_dir: str) -> RunError:
    """The message for a model of a torch hub repository that cannot be fetched: where torch looks for it offline."""
    owner_name = repo_or_dir.split(':', 1)[0]
    folder = os.path.join(torch.hub.get_dir(), owner_name.replace('/', '_') + '_<branch>')
    return RunError(f'{where}: model {key!r} comes from the torch hub repository {repo_or_dir!r} '
                    f'({where}.repo_or_dir), '
                    f'which could not be fetched ({one_line(exc)}); without network, copy that repository\'s checkout '
                    f'to {folder} (the hub cache, where torch.hub.load looks first; on a machine with network, '
                    f'python -c "import torch; torch.hub.list(\'{owner_name}\')" fills it), or set '
                    f'{where}.repo_or_dir to a local clone of it and {where}.kwargs.source to \'local\'')


def _weights_entry(key: str, kwargs: Dict[str, Any]):
    """torchvision's weights enum member that ``kwargs`` asks ``key`` for (``weights: NAME`` or ``pretrained``)."""
    enum = torchvision.models.get_model_weights(key)
    weights = kwargs.get('weights')
    if isinstance(weights, str):
        return enum[weights.rsplit('.', 1)[-1]]
    return weights if weights is not None else enum.DEFAULT


def weights_download_failed(exc: BaseException, where: str, key: str, kwargs: Dict[str, Any]) -> RunError:
    """The message for pretrained torchvision weights that could not be downloaded, with how to provide them offline:
    torch looks in its hub cache for the file before downloading it."""
    folder = os.path.join(torch.hub.get_dir(), 'checkpoints')
    try:
        entry = _weights_entry(key, kwargs)
        label, url = f'{type(entry).__name__}.{entry.name}', entry.url
        what = f'copy {os.path.basename(url)} (from {url})'
    except Exception:  # an unknown model or weights name: say what is known
        label, what = repr(kwargs.get('weights') or 'pretrained'), 'copy the weights file torch downloads'
    return RunError(f"{where}: torchvision's pretrained weights {label} for {key} could not be downloaded "
                    f'({type(exc).__name__}: {one_line(exc)}); without network, {what} into {folder} (the hub cache, '
                    f'$TORCH_HOME/hub/checkpoints with TORCH_HOME ~/.cache/torch by default), where torch looks before '
                    f'downloading')
