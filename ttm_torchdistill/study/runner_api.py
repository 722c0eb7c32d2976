"""What the study needs to know about the runner, in one place: config loading, ``--set`` paths, file names.

Every import from :mod:`ttm_torchdistill.run` made by the study package is in this module, so that a change of
the runner's layout touches this file only. The functions read configs (composed YAML nodes and the constructed
non-dataset part); none builds a dataset or a model.
"""
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from torchvision.datasets import CIFAR10

from ..errors import RunError, one_line
from ..run.attempts import attempts_path, read_attempts
from ..run.config import apply_override, compose_file, load_config
from ..run.config.holdout import holdout_rewrite
from ..run.config.loading import composed_with_overrides
from ..run.config.identity import config_tree, is_epoch_change, tree_changes
from ..run.config.dataset_nodes import construct_optional, dataset_class, dataset_class_key, init_kwargs_node
from ..run.config.loading import mapping_value_node
from ..run.data.device_transforms import translate_transform
from ..run.data.view_space import ViewSpace
from ..run.config.preflight import check_cache_stands_in, check_device_data_datasets
from ..run.data.fast_path import check_device_views
from ..run.config.runtime import split_runtime_overrides
from ..run.config.walk import read_parts, student_entry
from ..run.model_loading.weights import fetchable_teacher, how_to_get_weights, is_remote
from ..run.summary import experiment_name
from ..run.train.checkpoint import last_ckpt_path, summary_path

__all__ = ['ConfigFacts', 'config_facts', 'check_overrides', 'value_kind', 'experiment_name', 'last_ckpt_path',
           'summary_path', 'split_runtime_overrides', 'runner_module', 'runner_argv', 'cache_teacher_argv',
           'dst_ckpt_override', 'teacher_file_identity', 'fetchable_teacher', 'how_to_get_weights', 'asked_tree',
           'recorded_changes']


def runner_module() -> str:
    """The module that ``python -m`` runs for a training run and for ``cache-teacher``."""
    return 'ttm_torchdistill'


@dataclass(frozen=True)
class ConfigFacts:
    """What the study plans with, read from one config with one list of overrides.

    :param experiment: the experiment name the run summary will record (``cifar100/wttm/x_from_y``).
    :param dataset: the dataset part of it (None outside a ``configs/`` tree).
    :param planned_epochs: epochs over all training stages.
    :param teacher_ckpt: the teacher's local ``src_ckpt`` (None without a teacher, or with a remote one).
    :param teacher_model: ``{'key', 'kwargs'}`` of the teacher as JSON-ready values (None without a teacher).
    :param train_data: the composed YAML of the first training stage's dataset (tags, transform, root), as text.
    :param cache_refusal: why the teacher cache cannot serve this config (None if it can).
    :param views_refusal: why a complete cache (``cache-teacher --views all``) cannot serve it, when a per-seed
        one can: a training dataset or transform whose views cannot all be listed (None if one can).
    :param student_name: ``'student_model'`` or ``'model'``: where ``dst_ckpt`` is set (``models.<name>.dst_ckpt``).
    :param device_data_refusal: the runner's reason for refusing ``--device-data`` on this config (None if it
        accepts it): a dataset that is not held in memory, or MLKD's second, strongly augmented view.
    """
    experiment: str
    dataset: Optional[str]
    planned_epochs: int
    teacher_ckpt: Optional[str]
    teacher_model: Optional[Dict[str, Any]]
    train_data: Optional[str]
    cache_refusal: Optional[str]
    student_name: str
    views_refusal: Optional[str] = None
    device_data_refusal: Optional[str] = None


def check_overrides(config_path: str, overrides: Sequence[str]) -> None:
    """Apply ``overrides`` to the composed config as the runner would, without constructing anything.

    :raises ttm_torchdistill.errors.RunError: a malformed assignment or a path that does not exist in the config.
    """
    rest, _ = split_runtime_overrides(overrides)
    _, root = compose_file(config_path)
    for assignment in rest:
        apply_override(root, assignment)


def value_kind(config_path: str, overrides: Sequence[str], dotted: str) -> str:
    """The kind of the value at ``dotted`` after ``overrides``: 'null', 'bool', 'int', 'float', 'str', 'list',
    'mapping' or 'tagged' (a ``!import_call`` and the like).

    :raises ttm_torchdistill.errors.RunError: the path does not exist (the runner's ``--set`` message).
    """
    check_overrides(config_path, list(overrides) + [f'{dotted}=null'])
    _, root = compose_file(config_path)
    rest, _ = split_runtime_overrides(overrides)
    for assignment in rest:
        apply_override(root, assignment)
    node: Node = root
    for part in dotted.split('.'):
        if isinstance(node, MappingNode):
            node = [v for k, v in node.value if isinstance(k, ScalarNode) and k.value == part][-1]
        elif isinstance(node, SequenceNode):
            node = node.value[int(part)]
    return _node_kind(node)


@lru_cache(maxsize=256)
def asked_tree(config_path: str, overrides: Tuple[str, ...], holdout: Optional[int] = None,
               holdout_seed: int = 0) -> Any:
    """The composed config a run of ``config_path`` with ``overrides`` (and the study's ``runtime.holdout``) trains
    with, as the runner records it (:func:`~ttm_torchdistill.run.config.identity.config_tree`); seeds of a variant
    share it (cached)."""
    rest, runtime_set = split_runtime_overrides(overrides)
    flags = {'holdout': holdout, 'holdout_seed': holdout_seed} if holdout else dict()
    _, root = composed_with_overrides(config_path, rest)
    holdout_rewrite(runtime_set, flags)(root)
    return config_tree(root)


def recorded_changes(dst_ckpt: str, asked: Any) -> Optional[List[str]]:
    """How the config a run was last trained with differs from ``asked`` (more epochs aside), as ``path: old ->
    new`` texts; None when the run recorded no config (not started, or by an earlier version)."""
    recorded = read_attempts(attempts_path(dst_ckpt))
    if recorded is None or recorded.get('config_tree') is None:
        return None
    return [c.text() for c in tree_changes(recorded['config_tree'], asked) if not is_epoch_change(c)]


def _node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return 'mapping' if node.tag == 'tag:yaml.org,2002:map' else 'tagged'
    if isinstance(node, SequenceNode):
        return 'list' if node.tag == 'tag:yaml.org,2002:seq' else 'tagged'
    tag = node.tag  # the composer has resolved plain scalars to their implicit tag
    return {'tag:yaml.org,2002:null': 'null', 'tag:yaml.org,2002:bool': 'bool', 'tag:yaml.org,2002:int': 'int',
            'tag:yaml.org,2002:float': 'float', 'tag:yaml.org,2002:str': 'str'}.get(tag, 'tagged')


def _train_dataset_text(config_path: str, overrides: Sequence[str], dataset_id: str) -> Optional[str]:
    loader, root = compose_file(config_path)
    for assignment in overrides:
        apply_override(root, assignment)
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == 'datasets' and isinstance(value, MappingNode):
            for ds_key, ds_node in value.value:
                if isinstance(ds_key, ScalarNode) and ds_key.value == dataset_id:
                    return yaml.serialize(ds_node)
    return None


def config_facts(config_path: str, overrides: Sequence[str]) -> ConfigFacts:
    """Read :class:`ConfigFacts` of ``config_path`` with ``overrides`` (``--set`` values, runtime ones included).

    :raises ttm_torchdistill.errors.RunError: the config cannot be read or an override does not apply.
    """
    rest, _ = split_runtime_overrides(overrides)
    loaded = load_config(config_path, rest)
    config = loaded.config
    experiment, dataset = experiment_name(config_path)
    parts = read_parts(config)  # what the runner's own checks below read, found once
    stages = parts.stages
    planned = sum(int(stage.get('num_epochs', 0) or 0) for _, stage in stages)
    teacher = parts.teacher
    src = (teacher or dict()).get('src_ckpt')
    teacher_ckpt = src if isinstance(src, str) and src and not is_remote(src) else None
    teacher_model = None if teacher is None else {'key': teacher.get('key'), 'kwargs': teacher.get('kwargs')}
    train_data, refusal = None, None
    if stages:
        where, first = stages[0]
        dataset_id = (first.get('train_data_loader') or dict()).get('dataset_id')
        train_data = _train_dataset_text(config_path, rest, dataset_id) if dataset_id is not None else None
        try:
            check_cache_stands_in(parts)
        except Exception as exc:  # RunError: the runner's own words for why the cache cannot stand in
            refusal = str(exc)
    student_name = student_entry(config)[0]
    views_refusal = _views_refusal(config_path, rest, dataset_id) if stages and dataset_id is not None else \
        'no training loader'
    return ConfigFacts(experiment, dataset, planned, teacher_ckpt, teacher_model, train_data, refusal, student_name,
                       views_refusal, _device_data_refusal(loaded, parts))


def _device_data_refusal(loaded, parts) -> Optional[str]:
    """The runner's own refusal of ``--device-data`` for this config (None when it accepts it), checked as the
    runner checks it before building anything."""
    try:
        check_device_views(parts)
        check_device_data_datasets(loaded, parts)
    except RunError as exc:
        return str(exc)
    return None


def _views_refusal(config_path: str, overrides: Sequence[str], dataset_id: str) -> Optional[str]:
    """Why the training data's views cannot all be listed (None when they can): read from the dataset's class and its
    transform, built without the dataset (nothing is read or downloaded)."""
    loaded = load_config(config_path, overrides)
    node = dict(loaded.dataset_nodes).get(dataset_id)
    if node is None:
        return f'no dataset {dataset_id!r}'
    key = dataset_class_key(node)
    cls = dataset_class(key)
    if not (isinstance(cls, type) and issubclass(cls, CIFAR10)):
        return f'its training dataset ({key or "no key"}) is not held in memory by the device data path'
    try:
        transform = construct_optional(loaded, mapping_value_node(init_kwargs_node(node), 'transform'))
        ViewSpace(translate_transform(transform, image_shape=(32, 32, 3)))
    except (ValueError, TypeError) as exc:
        return f'its training transform has views that cannot all be listed ({one_line(exc, None)})'
    return None


def teacher_file_identity(path: str) -> Tuple[str, Optional[int], Optional[int]]:
    """``(real path, size, mtime in ns)`` of a teacher checkpoint (size and mtime None when it is absent), so a
    replaced checkpoint gives another cache key without hashing the file at planning time."""
    real = os.path.realpath(os.path.expanduser(path))
    try:
        stat = os.stat(real)
    except OSError:
        return real, None, None
    return real, stat.st_size, stat.st_mtime_ns


def runner_argv(python: str, config: str, seed: int, overrides: List[str], run_log: str, flags: List[str],
                resume: bool, gpus: int) -> List[str]:
    """The runner's own command line for one run (``torchrun`` for more than one GPU); ``overrides`` include the
    run's own ``dst_ckpt`` (:func:`dst_ckpt_override`)."""
    if gpus > 1:
        head = [python, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={gpus}', '-m',
                runner_module()]
        tail = ['--world_size', str(gpus)]
    else:
        head, tail = [python, '-m', runner_module()], []
    argv = head + ['--config', config, '--seed', str(seed)]
    for assignment in overrides:
        argv += ['--set', assignment]
    argv += ['--run_log', run_log] + list(flags) + tail
    return argv + (['--resume'] if resume else [])


def dst_ckpt_override(student_name: str, dst_ckpt: str) -> str:
    """The ``--set`` that moves a run's checkpoints (and so its summary) into its own folder."""
    return f'models.{student_name}.dst_ckpt={dst_ckpt}'


def cache_teacher_argv(python: str, config: str, seed: Optional[int], overrides: List[str], out: str,
                       epochs: Optional[int], dtype: str) -> List[str]:
    """``cache-teacher`` for the runs of one teacher, data and seed, or (``seed`` None) every view of every image
    (``--views all``: every seed, any number of epochs)."""
    argv = [python, '-m', runner_module(), 'cache-teacher', '--config', config]
    if seed is None:
        argv += ['--views', 'all', '--out', out]
    else:
        argv += ['--seed', str(seed), '--out', out, '--epochs', str(epochs)]
    argv += ['--dtype', dtype]
    for assignment in overrides:
        argv += ['--set', assignment]
    return argv
