"""Every check made before anything expensive is built, each in one place with one message.

A config problem should cost seconds: checkpoints, loss keys and the student entry are checked before datasets
are built (or downloaded) and models constructed; dataset ids once the datasets exist.
"""
import logging
import os
from typing import Any, Dict

from torchdistill.losses.registry import HIGH_LEVEL_LOSS_DICT, LOSS_DICT, LOW_LEVEL_LOSS_DICT, MIDDLE_LEVEL_LOSS_DICT
from torchvision.datasets import CIFAR10
from yaml.nodes import MappingNode

from ...checks.signatures import suggestion
from ...errors import RunError
from ...views.two_view import TWO_VIEW_MODEL
from ..model_loading.lookup import registry_hint
from ..model_loading.weights import how_to_get_weights, is_remote, missing_checkpoint
from .component_errors import check_components  # noqa: F401  (the signature check of every component)
from .dataset_nodes import data_source, dataset_class, dataset_class_key
from .loading import LoadedConfig, mapping_value_node
from .runtime import Runtime
from .walk import STUDENT_ENTRIES, ConfigParts

logger = logging.getLogger('ttm_torchdistill.run')


def iter_checkpoint_sources(parts: ConfigParts):
    """``(where, path)`` of every checkpoint the run reads: ``models.*.src_ckpt`` and the training stages'
    ``teacher``/``student`` ``src_ckpt`` (which torchdistill loads itself, silently skipping missing files)."""
    for name, model_config in parts.models.items():
        if isinstance(model_config, dict):
            yield f'models.{name}.src_ckpt', model_config.get('src_ckpt')
    for where, stage in parts.stages:
        for role in ('teacher', 'student'):
            block = stage.get(role)
            if isinstance(block, dict):
                yield f'{where}.{role}.src_ckpt', block.get('src_ckpt')


def _model_key_of_source(models: Dict[str, Any], where: str) -> Any:
    """The model key a checkpoint source is loaded into (``models.<name>.key``; a stage's teacher/student block
    loads into the teacher/student model)."""
    steps = where.split('.')
    if steps[0] == 'models':
        name = steps[1]
    elif steps[-2] == 'teacher':
        name = 'teacher_model'
    else:
        name = next((n for n in STUDENT_ENTRIES if isinstance(models.get(n), dict)), None)
    entry = models.get(name)
    return entry.get('key') if isinstance(entry, dict) else None


def check_checkpoint_paths(parts: ConfigParts) -> None:
    """Every local checkpoint the run reads must exist (remote ones are downloaded and checked when loaded)."""
    for where, path in iter_checkpoint_sources(parts):
        if isinstance(path, str) and path and not is_remote(path) and not os.path.isfile(os.path.expanduser(path)):
            raise missing_checkpoint(path, where, _model_key_of_source(parts.models, where))


def check_teacher_has_weights(parts: ConfigParts, smoke: bool) -> None:
    """A teacher without src_ckpt, box-level src_ckpt or pretrained weights would distil random logits.

    Call it on the config as written (before ``--smoke`` switches pretrained weights off); under ``--smoke`` it
    only warns.
    """
    teacher = parts.teacher
    if teacher is None:
        return
    kwargs = teacher.get('kwargs') or dict()
    sources = [kwargs.get('weights'), kwargs.get('pretrained')]
    sources += [path for where, path in iter_checkpoint_sources(parts)
                if where == 'models.teacher_model.src_ckpt' or where.endswith('.teacher.src_ckpt')]
    if any(source not in (None, '', False) for source in sources):
        return
    message = ('models.teacher_model has no src_ckpt and no pretrained weights: the student would distil from a '
               'randomly initialised teacher')
    if smoke:
        logger.warning(message + ' (smoke run: allowed)')
        return
    raise RunError(message + f'; set models.teacher_model.src_ckpt: '
                   f'{how_to_get_weights(teacher.get("key"), "models.teacher_model.src_ckpt")}')


def _loss_keys_by_package() -> Dict[str, list]:
    """The keys a sub-term's ``criterion.key`` may take, by the top-level package of what each names, read from
    torchdistill's registries now: after ``dependencies:`` is imported, a user's package shows its own keys."""
    groups: Dict[str, list] = dict()
    for registry in (MIDDLE_LEVEL_LOSS_DICT, LOW_LEVEL_LOSS_DICT, LOSS_DICT):
        for key, obj in registry.items():
            package = (getattr(obj, '__module__', None) or '?').split('.')[0]
            # torchdistill fills LOSS_DICT with every class torch.nn.modules.loss holds, its imports (Tensor, Module,
            # Callable, ...) included; only the losses are worth offering
            if registry is not LOSS_DICT or ('Loss' in key and not key.startswith('_')):
                groups.setdefault(package, []).append(key)
    return groups


def _unknown_loss(key: Any, where: str, config: Dict[str, Any]) -> RunError:
    groups = _loss_keys_by_package()
    close = suggestion(str(key), [k for keys in groups.values() for k in keys])
    hint = f" (did you mean '{close}'?)" if close else ''
    # the plugin's own keys and the `dependencies:` advice come last, from registry_hint
    others = '; '.join(f'{package} provides: {", ".join(sorted(keys))}' for package, keys in sorted(groups.items())
                       if package != 'ttm_torchdistill')
    return RunError(f'unknown loss key {key!r} in {where}{hint}; registered: {others}; '
                    f'{registry_hint(config, MIDDLE_LEVEL_LOSS_DICT)}; another package\'s keys are listed once the '
                    f'config\'s `dependencies:` imports it')


def check_loss_keys(parts: ConfigParts) -> None:
    """Every criterion key of the training stage(s) is registered (before torchdistill's bare KeyError)."""
    for where, stage in parts.stages:
        criterion = stage.get('criterion')
        if not isinstance(criterion, dict):
            continue
        high_key = criterion.get('key')
        if high_key not in HIGH_LEVEL_LOSS_DICT:
            close = suggestion(str(high_key), HIGH_LEVEL_LOSS_DICT)
            raise RunError(f'unknown high-level loss key {high_key!r} in {where}.criterion.key'
                           f'{f" (did you mean {close!r}?)" if close else ""}; '
                           f'available: {", ".join(sorted(HIGH_LEVEL_LOSS_DICT))}')
        sub_terms = (criterion.get('kwargs') or dict()).get('sub_terms') or dict()
        for name, term in sub_terms.items():
            sub = (term or dict()).get('criterion')
            if not isinstance(sub, dict):
                continue
            key = sub.get('key')
            if key not in MIDDLE_LEVEL_LOSS_DICT and key not in LOSS_DICT and key not in LOW_LEVEL_LOSS_DICT:
                raise _unknown_loss(key, f'{where}.criterion.kwargs.sub_terms.{name}', parts.config)
            if key in MIDDLE_LEVEL_LOSS_DICT and 'kwargs' not in sub:
                raise RunError(f'{where}.criterion.kwargs.sub_terms.{name}.criterion needs `kwargs:` '
                               f'(torchdistill requires it for mid-level loss {key!r})')


def check_dataset_layout(loaded: LoadedConfig) -> None:
    """A dataset entry in torchdistill's pre-1.0 layout (``key``, ``root`` and ``splits:`` of ``dataset_id`` s with
    ``transform_configs``) is a plain mapping to torchdistill 1.1.5, which builds no dataset from it: say so before
    the loaders look for the split ids."""
    for dataset_id, node in loaded.dataset_nodes:
        if isinstance(node, MappingNode) and node.tag == 'tag:yaml.org,2002:map' and \
                mapping_value_node(node, 'splits') is not None:
            raise RunError(f'datasets.{dataset_id} is written in torchdistill\'s pre-1.0 layout (a `splits:` '
                           f'mapping of dataset ids with transform_configs), which torchdistill 1.1.5 does not read: '
                           f'write each split as its own entry under datasets:, an !import_call of the dataset class '
                           f'with its transform (the layout of torchdistill 1.x\'s sample configs and of this '
                           f'plugin\'s configs/)')


def check_dataset_ids(parts: ConfigParts, datasets: Dict[str, Any]) -> None:
    """Every data loader's ``dataset_id`` names a built dataset (torchdistill would silently skip the loader)."""
    for where, loader_config in parts.loaders:
        dataset_id = loader_config.get('dataset_id')
        if dataset_id is not None and dataset_id not in datasets:
            raise RunError(f'{where}.dataset_id is {dataset_id!r}, but the config defines only '
                           f'{", ".join(map(repr, datasets)) or "no datasets"}')


def check_trainable(parts: ConfigParts, test_only: bool) -> None:
    """A training run needs a ``train:`` block."""
    if not test_only and not isinstance(parts.config.get('train'), dict):
        raise RunError('the config has no `train:` block (use -test_only to only evaluate)')


def check_teacher_hooks(stage_config: Dict[str, Any], where: str) -> None:
    """A cache holds the teacher's logits only: a config that hooks the teacher's inner modules cannot use it. A
    teacher wrapped in ``TwoViewModel`` (MLKD) can, hooking only the wrapper's ``weak`` and ``strong`` outputs: the
    cache serves the weak view, the teacher runs on the strong one."""
    teacher = stage_config.get('teacher') or dict()
    hooks = teacher.get('forward_hook') or dict()
    asked = [path for io in ('input', 'output') for path in (hooks.get(io) or [])]
    wrapper = teacher.get('auxiliary_model_wrapper')
    if isinstance(wrapper, dict) and wrapper.get('key') == TWO_VIEW_MODEL and not hooks.get('input') \
            and set(asked) <= {'weak', 'strong'}:
        return
    if asked or wrapper:
        raise RunError(f'runtime.teacher_cache holds the teacher\'s logits only, but {where}.teacher asks for '
                       f'{"its modules " + ", ".join(asked) if asked else "an auxiliary model wrapper"}; '
                       f'run this config without the cache')


def check_cache_stands_in(parts: ConfigParts) -> None:
    """A teacher cache can stand in for the teacher in every training stage: each reads only its logits, and on the
    first stage's training dataset, the one the cache is checked against (a stage without ``train_data_loader``
    keeps the previous stage's, as in torchdistill)."""
    stages = parts.stages
    first_id = ((stages[0][1].get('train_data_loader') or dict()).get('dataset_id') if stages else None)
    for where, stage in stages:
        check_teacher_hooks(stage, where)
        dataset_id = (stage.get('train_data_loader') or dict()).get('dataset_id')
        if dataset_id is not None and dataset_id != first_id:
            raise RunError(f'runtime.teacher_cache holds the teacher\'s logits on {stages[0][0]}.train_data_loader\'s '
                           f'dataset {first_id!r} (the one the cache is checked against), but '
                           f'{where}.train_data_loader trains on {dataset_id!r}; run this config without the cache')


def check_teacher_cache(parts: ConfigParts, runtime: Runtime) -> None:
    """``runtime.teacher_cache`` needs a teacher to stand in for, whose logits are all the config reads of it."""
    if not runtime.teacher_cache:
        return
    if parts.teacher is None:
        raise RunError('runtime.teacher_cache is set but the config has no models.teacher_model to stand in for')
    check_cache_stands_in(parts)


def check_device_data_datasets(loaded: LoadedConfig, parts: ConfigParts) -> None:
    """``runtime.device_data`` keeps in-memory uint8 images on the device: every dataset a loader reads must be a
    torchvision CIFAR class (or a subclass, such as ``ttm_torchdistill.datasets.CIFAR100Format``). Checked on the
    config's dataset keys before any dataset is built (an ImageFolder would otherwise be scanned first)."""
    nodes = dict(loaded.dataset_nodes)
    for where, loader_config in parts.loaders:
        dataset_id = loader_config.get('dataset_id')
        if dataset_id not in nodes:
            continue  # reported by check_dataset_ids once the datasets are built
        key = dataset_class_key(data_source(nodes[dataset_id]))  # a part of a split: the dataset it is taken from
        cls = dataset_class(key)
        if not (isinstance(cls, type) and issubclass(cls, CIFAR10)):
            raise RunError(f'runtime.device_data: dataset {dataset_id!r} ({key or "no key"}, {where}) is not '
                           f'supported by the device data path: expected torchvision.datasets.CIFAR10 or CIFAR100 '
                           f'(in-memory uint8 images), or ttm_torchdistill.datasets.CIFAR100Format/CIFAR10Format; run '
                           f'this config without --device-data')
