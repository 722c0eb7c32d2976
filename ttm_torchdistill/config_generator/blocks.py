"""torchdistill's config vocabulary as data: ``!import_call`` objects, transforms, model entries, loaders, losses.

The dataset templates (:mod:`.cifar100`, :mod:`.ilsvrc2012`), the methods and :mod:`.render` build configs from
these pieces, so each YAML shape is written once. Every function returns plain nested data for
:func:`.yaml_emit.emit`; a :class:`~.schema.Param` becomes its value with its source as the comment beside it.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

from .schema import Param
from .yaml_emit import Node


def sourced(param: Param, as_float: bool = False) -> Node:
    """``param.value`` with ``param.source`` as its comment (``as_float`` for loss weights and kwargs)."""
    value = param.value
    if as_float and not isinstance(value, (str, bool)):
        value = float(value)
    return Node(value, comment=param.source)


def import_call(key: str, kwargs: Any = None, *, before: Optional[Dict[str, Any]] = None,
                above: Tuple[str, ...] = ()) -> Node:
    """``!import_call`` of ``key`` with ``init: {kwargs: ...}``; an empty ``init:`` without kwargs (ToTensor).

    :param kwargs: the keyword arguments (a dict, a :class:`~.yaml_emit.Node` or an alias), or None.
    :param before: entries written before ``key`` (e.g. a dataset's anchored ``_root``).
    :param above: comment lines over the call's key.
    """
    body = dict(before or {})
    body['key'] = key
    body['init'] = None if kwargs is None else {'kwargs': kwargs}
    return Node(body, above=above, tag='!import_call')


def import_get(key: str, anchor: str = '', comment: str = '') -> Node:
    """``!import_get`` of ``key`` (a class or function, not called), optionally anchored and commented."""
    return Node({'key': key}, comment=comment, anchor=anchor, tag='!import_get')


def transform(name: str, kwargs: Any = None) -> Node:
    """A torchvision transform, e.g. ``transform('RandomCrop', {'size': 32, 'padding': 4})``."""
    return import_call(f'torchvision.transforms.{name}', kwargs)


def compose(transforms: Sequence[Node]) -> Node:
    """``torchvision.transforms.Compose`` of ``transforms``."""
    return import_call('torchvision.transforms.Compose', {'transforms': list(transforms)})


def model_entry(key: str, kwargs: Dict[str, Any], src_ckpt: Any = None, dst_ckpt: Any = None,
                extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A ``models:`` entry: key, the entries of ``extra`` (e.g. an anchored weights enum), kwargs, checkpoints
    (a teacher has no ``dst_ckpt``)."""
    entry: Dict[str, Any] = {'key': key, **(extra or {}), 'kwargs': kwargs, 'src_ckpt': src_ckpt}
    if dst_ckpt is not None:
        entry['dst_ckpt'] = dst_ckpt
    return entry


def sampler(class_path: str, anchor: str = '') -> Node:
    """A data loader's ``sampler:`` (torchdistill builds ``class_or_func(dataset, **kwargs)``; no kwargs here)."""
    return Node({'class_or_func': import_get(class_path), 'kwargs': None}, anchor=anchor)


def loss(key: str, kwargs: Optional[Dict[str, Any]], comment: str = '') -> Dict[str, Any]:
    """``criterion:`` of a sub-term: a registered loss key (with ``comment`` beside it) and its kwargs."""
    return {'criterion': {'key': Node(key, comment=comment), 'kwargs': kwargs}}


def student_logits_ce(weight: Any, module_path: str = '.') -> Dict[str, Any]:
    """Cross-entropy of the student's logits read at ``module_path`` against the labels (SimpleLossWrapper)."""
    return {'criterion': {'key': 'CrossEntropyLoss', 'kwargs': {'reduction': 'mean'}},
            'criterion_wrapper': {'key': 'SimpleLossWrapper',
                                  'kwargs': {'input': {'is_from_teacher': False, 'module_path': module_path,
                                                       'io': 'output'},
                                             'target': {'uses_label': True}}},
            'weight': weight}
