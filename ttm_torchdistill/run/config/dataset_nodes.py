"""A config's dataset entries read as YAML nodes, before any of them is built: class, root, transform nodes.

Datasets are constructed one by one, late (:mod:`ttm_torchdistill.run.data.real_datasets`); what can be known of them
earlier, for checks and messages, is read here without running their ``!import_call``.
"""
import importlib
import os
from typing import Any, Iterator, Optional

from torch.utils.data import Dataset
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .loading import LoadedConfig, mapping_value_node


def _scalar(node: Optional[Node]) -> Optional[str]:
    return node.value if isinstance(node, ScalarNode) else None


def init_kwargs_node(dataset_node: Node) -> Optional[Node]:
    """The ``init.kwargs`` node of a dataset entry, or None."""
    init = mapping_value_node(dataset_node, 'init')
    return mapping_value_node(init, 'kwargs') if init is not None else None


def construct_optional(loaded: LoadedConfig, node: Optional[Node]) -> Any:
    """``node`` constructed (its tags run), or None for no node."""
    if node is None:
        return None
    return loaded.loader.construct_document(node)


def dataset_class_key(dataset_node: Node) -> str:
    """The ``key:`` of an ``!import_call`` dataset entry (e.g. 'torchvision.datasets.CIFAR100'), or ''."""
    return _scalar(mapping_value_node(dataset_node, 'key')) or ''


def dataset_root(loaded: LoadedConfig, dataset_node: Node) -> Optional[str]:
    """The entry's ``init.kwargs.root`` as an absolute path, or None when there is none or it cannot be built."""
    try:
        root = construct_optional(loaded, mapping_value_node(init_kwargs_node(dataset_node), 'root'))
    except Exception:  # the root itself could not be built: the caller reports the original failure
        return None
    return None if root is None else os.path.abspath(os.path.expanduser(str(root)))


def dataset_class(class_key: str) -> Optional[type]:
    """The class a dataset entry's key names (imported, not called), or None when it cannot be imported."""
    module_name, _, name = class_key.rpartition('.')
    try:
        return getattr(importlib.import_module(module_name), name) if module_name else None
    except Exception:  # an unknown class is reported by the caller with the original failure
        return None


def is_data_source(node: Node) -> bool:
    """Whether ``node`` is an ``!import_call`` of a dataset class that reads data itself (a torch ``Dataset`` built
    without another dataset as ``init.kwargs.dataset``), as opposed to a split, a wrapper or an index into them."""
    if not isinstance(node, MappingNode) or node.tag != '!import_call':
        return False
    cls = dataset_class(dataset_class_key(node))
    return isinstance(cls, type) and issubclass(cls, Dataset) and \
        mapping_value_node(init_kwargs_node(node), 'dataset') is None


def walk_nodes(node: Node) -> Iterator[Node]:
    """Every node below ``node`` (itself first, then depth first, keys and values in file order), each shared node once
    (an anchor and its aliases are one node)."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        children = current.value if isinstance(current, SequenceNode) else \
            [part for pair in current.value for part in pair] if isinstance(current, MappingNode) else []
        stack.extend(reversed(children))


def data_source(node: Node) -> Node:
    """The first node that reads data in the entry ``node`` (itself when it does, the split's source for a part of a
    split, ...), depth first; ``node`` when there is none."""
    return next((current for current in walk_nodes(node) if is_data_source(current)), node)


def _makes_a_dataset(node: Node) -> bool:
    """A node that builds a dataset: one that reads data, or a call given one (a split, a wrapper)."""
    return is_data_source(node) or (isinstance(node, MappingNode) and node.tag == '!import_call' and
                                    mapping_value_node(init_kwargs_node(node), 'dataset') is not None)


def _dataset_nodes(node: Node) -> set:
    """The nodes below ``node`` that build a dataset (a shared transform does not tie two datasets together)."""
    return {id(current) for current in walk_nodes(node) if _makes_a_dataset(current)}


def test_only_ids(loaded: LoadedConfig, train_and_val_ids: set, test_ids: set) -> set:
    """The dataset ids only the test loader reads, and that share no YAML node with the others (a part of a split the
    training set comes from must be built with it): those are built for the final test only, so that training never
    reads the test set."""
    candidates = {i for i in test_ids if i not in train_and_val_ids}
    others = set()
    for dataset_id, node in loaded.dataset_nodes:
        if dataset_id not in candidates:
            others |= _dataset_nodes(node)
    return {dataset_id for dataset_id, node in loaded.dataset_nodes
            if dataset_id in candidates and not (_dataset_nodes(node) & others)}
