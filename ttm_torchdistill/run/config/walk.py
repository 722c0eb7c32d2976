"""Find things in a constructed config: the training stage(s), every data loader, the student entry.

Every part of the runner that needs one of these asks here, so a config is read one way only; the preflight checks
take a :class:`ConfigParts`, the config read once, rather than each walking the raw config again.
"""
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple

from ...errors import RunError

#: The model entries that may hold the trained model, in the order they are looked up.
STUDENT_ENTRIES = ('student_model', 'model')


def iter_train_stage_configs(config: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``('train', train)`` or, for multi-stage configs, ``('train.stage1', ...)``, ... in file order."""
    train = config.get('train') or dict()
    stages = [key for key in train if key.startswith('stage') and isinstance(train[key], dict)]
    if stages:
        for key in stages:
            yield f'train.{key}', train[key]
    elif train:
        yield 'train', train


def iter_loader_configs(config: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Every data loader config with its dotted location (training stages' train/val loaders, then test)."""
    for where, stage in iter_train_stage_configs(config):
        for name in ('train_data_loader', 'val_data_loader'):
            if isinstance(stage.get(name), dict):
                yield f'{where}.{name}', stage[name]
    test = config.get('test') or dict()
    if isinstance(test.get('test_data_loader'), dict):
        yield 'test.test_data_loader', test['test_data_loader']


def student_entry(config: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """``(name, model config)`` of the trained model: ``models.student_model``, else ``models.model``.

    :raises RunError: when the config has neither.
    """
    models = config.get('models')
    if not isinstance(models, dict):
        raise RunError('the config has no `models:` mapping (expected models.student_model, and '
                       'models.teacher_model to distil)')
    for name in STUDENT_ENTRIES:
        if isinstance(models.get(name), dict):
            return name, models[name]
    raise RunError(f'the config\'s `models:` needs a `student_model` (or `model`) entry with key/kwargs/dst_ckpt; '
                   f'it has {", ".join(map(str, models)) or "nothing"}')


def teacher_entry(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``models.teacher_model`` when the config distils, else None."""
    teacher = (config.get('models') or dict()).get('teacher_model')
    return teacher if isinstance(teacher, dict) else None


def student_num_classes(config: Dict[str, Any]) -> Optional[int]:
    """``num_classes`` of the student's kwargs, if given as an integer."""
    value = (student_entry(config)[1].get('kwargs') or dict()).get('num_classes')
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def train_dataset_ids(config: Dict[str, Any]) -> set:
    """Ids of the datasets that feed a training loader."""
    return {cfg.get('dataset_id') for where, cfg in iter_loader_configs(config) if where.endswith('train_data_loader')}


def planned_epochs(config: Dict[str, Any]) -> int:
    """The epochs of every training stage, added up."""
    return sum(int(stage.get('num_epochs', 0)) for _, stage in iter_train_stage_configs(config))


@dataclass(frozen=True)
class ConfigParts:
    """What the checks read of one composed config, found once by :func:`read_parts`."""
    #: the composed config itself (for what only a few checks need, such as the ``train:`` block)
    config: Dict[str, Any]
    #: ``models:`` (empty when absent)
    models: Dict[str, Any]
    #: ``(where, stage config)`` of every training stage, in file order
    stages: Tuple[Tuple[str, Dict[str, Any]], ...]
    #: ``(where, loader config)`` of every data loader: the stages' train/val loaders, then test
    loaders: Tuple[Tuple[str, Dict[str, Any]], ...]
    #: ``models.teacher_model`` when the config distils, else None
    teacher: Optional[Dict[str, Any]]


def read_parts(config: Dict[str, Any]) -> ConfigParts:
    """The stages, loaders and model entries of ``config``, read once for every check that needs them."""
    models = config.get('models')
    return ConfigParts(config=config, models=models if isinstance(models, dict) else dict(),
                       stages=tuple(iter_train_stage_configs(config)), loaders=tuple(iter_loader_configs(config)),
                       teacher=teacher_entry(config))
