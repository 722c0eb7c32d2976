"""``--holdout N`` (``runtime.holdout``): validate on N images held out of the training set, never on the test set.

The papers this plugin reproduces pick their best epoch, and tune their hyperparameters, on the CIFAR-100 test set
(RepDistiller-style code validates on it every epoch); the shipped configs do the same, as they must to reproduce
them. With ``--holdout N`` a run validates on N training images set aside instead, and the test set is read only by
the final test. The switch rewrites the composed config before anything is built, into what one would write by hand
in torchdistill's vocabulary (so the hand-written YAML and the switch give the same run, bit for bit):

* the first stage's training dataset entry becomes ``!access_by_index_or_key {data: *split, index_or_key: 0}`` of a
  new entry ``<train id>/holdout_split``: :func:`ttm_torchdistill.datasets.holdout_split` of the original entry,
  with the training transform on part 0 and the validation loader's dataset's transform on part 1;
* a new entry ``<train id>/holdout`` takes part 1, and every stage's ``val_data_loader`` reads it;
* the test loader is left as it is (its dataset is built only for the final test, :mod:`~ttm_torchdistill.run.prepare`).

The held-out images are drawn from ``runtime.holdout_seed`` (default 0), not the run's seed, class-balanced when the
dataset has targets: every run and seed of a study validates on the same images. On the device data path each part is
the whole training set on the device and the part's indices into it (:mod:`ttm_torchdistill.run.data.fast_path`), so
a teacher cache of the whole training set serves the run.
"""
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ...errors import RunError
from .loading import mapping_value_node
from .runtime import resolve_runtime
from .smoke_features import iter_keyed
from .walk import iter_train_stage_configs

SPLIT_FUNCTION = 'ttm_torchdistill.datasets.holdout_split'
STR, INT, BOOL, MAP = ('tag:yaml.org,2002:str', 'tag:yaml.org,2002:int', 'tag:yaml.org,2002:bool',
                       'tag:yaml.org,2002:map')


@dataclass(frozen=True)
class Holdout:
    """What ``--holdout`` asks: ``size`` images, drawn with ``seed``."""
    size: int
    seed: int = 0
    class_balanced: bool = True


def _child(node: Optional[Node], *path: str) -> Optional[Node]:
    for key in path:
        node = mapping_value_node(node, key)
    return node


def _stages(root: MappingNode) -> List[Tuple[str, MappingNode]]:
    train = _child(root, 'train')
    if not isinstance(train, MappingNode):
        raise RunError('--holdout: the config has no `train:` block whose validation loader it could redirect')
    stages = [(f'train.{k.value}', v) for k, v in train.value
              if isinstance(k, ScalarNode) and k.value.startswith('stage') and isinstance(v, MappingNode)]
    return stages or [('train', train)]


def _scalar_value(node: Optional[Node], where: str) -> str:
    if not isinstance(node, ScalarNode) or not node.value:
        raise RunError(f'--holdout: {where} must name a dataset id, got {getattr(node, "value", node)!r}')
    return node.value


def _entry(datasets: MappingNode, dataset_id: str, where: str) -> int:
    for index, (key, _) in enumerate(datasets.value):
        if isinstance(key, ScalarNode) and key.value == dataset_id:
            return index
    raise RunError(f'--holdout: {where} is {dataset_id!r}, which datasets: does not define')


def _mapping(pairs: List[Tuple[str, Node]], mark, tag: str = MAP) -> MappingNode:
    return MappingNode(tag, [(ScalarNode(STR, key, mark, mark), value) for key, value in pairs], mark, mark)


def _scalar(tag: str, value: Any, mark) -> ScalarNode:
    return ScalarNode(tag, str(value).lower() if tag == BOOL else str(value), mark, mark)


def _transform(node: Node, where: str) -> Node:
    transform = _child(node, 'init', 'kwargs', 'transform')
    if transform is None:
        raise RunError(f'--holdout: {where} has no init.kwargs.transform to give the held-out images (expected an '
                       f'!import_call of a dataset class with its transform)')
    return transform


def _split_node(source: Node, train_id: str, train_transform: Node, val_transform: Node, holdout: Holdout,
                mark) -> MappingNode:
    parts = [_mapping([('transform', train_transform)], mark), _mapping([('transform', val_transform)], mark)]
    kwargs = _mapping([('dataset', source), ('holdout', _scalar(INT, holdout.size, mark)),
                       ('seed', _scalar(INT, holdout.seed, mark)),
                       ('class_balanced', _scalar(BOOL, holdout.class_balanced, mark)),
                       ('dataset_id', _scalar(STR, train_id, mark)),
                       ('sub_splits_configs', SequenceNode('tag:yaml.org,2002:seq', parts, mark, mark))], mark)
    return _mapping([('key', _scalar(STR, SPLIT_FUNCTION, mark)), ('init', _mapping([('kwargs', kwargs)], mark))],
                    mark, tag='!import_call')


def _part(split: MappingNode, index: int, mark) -> MappingNode:
    return _mapping([('data', split), ('index_or_key', _scalar(INT, index, mark))], mark,
                    tag='!access_by_index_or_key')


def apply_holdout(root: MappingNode, holdout: Holdout) -> Dict[str, str]:
    """Rewrite the composed ``root`` in place (see the module docstring); returns ``{'train', 'holdout', 'split'}``
    dataset ids.

    :raises RunError: a config without a training loader, a validation loader, or transforms to split by.
    """
    datasets = _child(root, 'datasets')
    if not isinstance(datasets, MappingNode):
        raise RunError('--holdout: the config has no `datasets:` mapping')
    stages = _stages(root)
    first_where, first = stages[0]
    train_id = _scalar_value(_child(first, 'train_data_loader', 'dataset_id'),
                             f'{first_where}.train_data_loader.dataset_id')
    val_where = f'{first_where}.val_data_loader.dataset_id'
    val_id = _scalar_value(_child(first, 'val_data_loader', 'dataset_id'), val_where)
    train_index = _entry(datasets, train_id, f'{first_where}.train_data_loader.dataset_id')
    source = datasets.value[train_index][1]
    val_transform = _transform(datasets.value[_entry(datasets, val_id, val_where)][1], f'datasets.{val_id}')
    mark = source.start_mark
    split = _split_node(source, train_id, _transform(source, f'datasets.{train_id}'), val_transform, holdout, mark)
    ids = {'train': train_id, 'holdout': f'{train_id}/holdout', 'split': f'{train_id}/holdout_split'}
    for taken in (ids['holdout'], ids['split']):
        if any(isinstance(k, ScalarNode) and k.value == taken for k, _ in datasets.value):
            raise RunError(f'--holdout: the config already defines a dataset {taken!r}')
    datasets.value[train_index] = (datasets.value[train_index][0], _part(split, 0, mark))
    datasets.value.insert(train_index, (ScalarNode(STR, ids['split'], mark, mark), split))
    datasets.value.insert(train_index + 2, (ScalarNode(STR, ids['holdout'], mark, mark), _part(split, 1, mark)))
    for where, stage in stages:
        loader = _child(stage, 'val_data_loader')
        if isinstance(loader, MappingNode):
            for index, (key, _) in enumerate(loader.value):
                if isinstance(key, ScalarNode) and key.value == 'dataset_id':
                    loader.value[index] = (key, ScalarNode(STR, ids['holdout'], mark, mark))
        elif where == first_where:
            raise RunError(f'--holdout: {where}.val_data_loader is missing')
    return ids


#: ``--smoke`` holds out at most this many of its synthetic training images (the split's wiring is what it checks).
SMOKE_HOLDOUT = 16


def holdout_rewrite(set_values: Dict[str, Any], flags: Dict[str, Any],
                    smoke: bool = False) -> Callable[[MappingNode], None]:
    """The ``rewrite`` of :func:`~.loading.load_config` that applies ``runtime.holdout``: the composed ``runtime:``
    block, ``--set runtime.*`` and the flags, in the runner's precedence (:func:`.runtime.resolve_runtime`)."""
    def rewrite(root: MappingNode) -> None:
        block_node = _child(root, 'runtime')
        block = SafeConstructor().construct_document(block_node) if block_node is not None else None
        runtime = resolve_runtime(block, set_values, flags)
        if runtime.holdout:
            size = min(runtime.holdout, SMOKE_HOLDOUT) if smoke else runtime.holdout
            apply_holdout(root, Holdout(size, runtime.holdout_seed))
    return rewrite


def holdout_record(runtime_holdout: Optional[int], seed: int, config: Dict[str, Any],
                   datasets: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """What the summary records of a held-out split (None without one): its size, seed, the dataset it was taken from,
    the id of the held-out part and the sha256 of its sorted source indices (two runs validated on the same images
    iff the digests are equal)."""
    if not runtime_holdout:
        return None
    where, first = next(iter_train_stage_configs(config))
    train_id = first['train_data_loader']['dataset_id']
    held_out = first['val_data_loader']['dataset_id']
    part = datasets.get(held_out)
    indices = sorted(int(i) for i in getattr(part, 'indices', []))
    return {'size': len(indices), 'asked': runtime_holdout, 'seed': seed, 'class_balanced': True, 'dataset': train_id,
            'held_out': held_out, 'indices_sha256': hashlib.sha256(json.dumps(indices).encode()).hexdigest()}


def fit_crd_to_training_part(config: Dict[str, Any], datasets: Dict[str, Any]) -> List[str]:
    """CRD's memory bank has a row per training sample (``output_size``, and ``num_samples`` in its NCE noise term:
    RepDistiller's ``n_data``, the training set's size); with a held-out split the training set is the training part,
    so those that name the whole training set are set to the part's size (edited in place in the run's config copy).
    Negatives are then drawn from the training part only. Returns what was changed."""
    notes = []
    for where, stage in iter_train_stage_configs(config):
        part = datasets.get((stage.get('train_data_loader') or dict()).get('dataset_id'))
        source = getattr(part, 'dataset', None)
        if part is None or source is None:
            continue
        for place, block in iter_keyed(stage.get('criterion'), 'CRDLoss', f'{where}.criterion'):
            kwargs = block.get('kwargs') or dict()
            for name in ('output_size', 'num_samples'):
                if kwargs.get(name) == len(source):
                    kwargs[name] = len(part)
                    notes.append(f'{place}.kwargs.{name}: {len(source)} -> {len(part)} (the training part)')
    return notes
