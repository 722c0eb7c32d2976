"""What a run is, as data: the composed config after ``--set`` (no tag executed), its digest and the changes between
two of them.

A resumed run must be the run it continues. The config file's bytes say too much (a comment edited) and too little
(a ``--set`` on the command line); the composed tree after the overrides says what the run trains with. It is kept
as plain JSON data (:func:`config_tree`) in the last checkpoint and in the run's attempts file, so that a later
``--resume`` or ``study run`` can name each path that changed, with its old and new value (:func:`tree_changes`).

Some paths move files or tune loading and leave the experiment unchanged (:data:`BOOKKEEPING_KEYS`: where the
checkpoint, the data and the teacher's download go, the loader's workers); the ``runtime:`` block holds the speed
options, recorded apart; ``reference:`` is the paper's number; ``tracker:`` where the run is watched. None of them
enters the digest or the changes.
The number of epochs does (a run of 240 epochs is not one of 300), but adding epochs to a run is a continuation,
not a change: :func:`is_epoch_change` tells it apart.
"""
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Tuple

from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: Last path components that never change what is learned (paths, loading, logging).
BOOKKEEPING_KEYS = ('dst_ckpt', 'root', 'download', 'num_workers', 'pin_memory', 'persistent_workers',
                    'prefetch_factor', 'log_freq')
#: Top-level keys left out: the speed options (recorded separately), the paper's reference number and torchdistill's
#: ``tracker:`` block (where the run is watched, not what it learns).
LEFT_OUT_TOP = ('runtime', 'reference', 'tracker')
#: Where a tagged node keeps its tag in the tree (YAML keys never start with a space).
TAG_KEY = ' tag'
_CORE_TAG = 'tag:yaml.org,2002:'


def _scalar(node: ScalarNode) -> Any:
    if node.tag.startswith(_CORE_TAG) and node.tag != _CORE_TAG + 'timestamp':
        try:
            value = SafeConstructor().construct_object(node)
        except (ConstructorError, ValueError):
            return node.value
        # 4 and 4.0 are the same value: numbers compare (and hash) as floats
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return {TAG_KEY: node.tag, 'value': node.value}


def config_tree(node: Node) -> Any:
    """The composed YAML ``node`` as JSON data: mappings as dicts, sequences as lists, core scalars as values
    (numbers as floats), tagged nodes (``!import_call`` ...) as dicts that also hold their tag."""
    if isinstance(node, ScalarNode):
        return _scalar(node)
    if isinstance(node, SequenceNode):
        items = [config_tree(child) for child in node.value]
        return items if node.tag.startswith(_CORE_TAG) else {TAG_KEY: node.tag, 'items': items}
    if isinstance(node, MappingNode):
        tree: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else json.dumps(config_tree(key_node))
            tree[str(key)] = config_tree(value_node)
        if not node.tag.startswith(_CORE_TAG):
            tree[TAG_KEY] = node.tag
        return tree
    raise TypeError(f'config_tree: expected a YAML node, got {type(node).__name__}')


def _left_out(path: Tuple[str, ...]) -> bool:
    return (len(path) == 1 and path[0] in LEFT_OUT_TOP) or (bool(path) and path[-1] in BOOKKEEPING_KEYS)


def _kept(tree: Any, path: Tuple[str, ...] = ()) -> Any:
    if isinstance(tree, dict):
        return {key: _kept(value, path + (key,)) for key, value in tree.items() if not _left_out(path + (key,))}
    if isinstance(tree, list):
        return [_kept(value, path + (str(i),)) for i, value in enumerate(tree)]
    return tree


def tree_digest(tree: Any) -> str:
    """sha256 of the tree without its bookkeeping paths (the same experiment gives the same digest)."""
    text = json.dumps(_kept(tree), sort_keys=True, separators=(',', ':'), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    """One path whose value differs between two trees (``before``/``after`` None where the path is missing)."""
    path: str
    before: Any
    after: Any

    def text(self) -> str:
        def show(value):
            if value is None:
                return '(absent)'
            shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)
            return shown if len(shown) <= 60 else shown[:57] + '...'
        return f'{self.path}: {show(self.before)} -> {show(self.after)}'


def _walk_changes(before: Any, after: Any, path: Tuple[str, ...]) -> Iterator[Change]:
    if isinstance(before, dict) and isinstance(after, dict) and before.get(TAG_KEY) == after.get(TAG_KEY):
        for key in list(before) + [k for k in after if k not in before]:
            yield from _walk_changes(before.get(key), after.get(key), path + (key,))
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after)):
            yield from _walk_changes(old, new, path + (str(index),))
    elif before != after:
        yield Change('.'.join(path), before, after)


def tree_changes(before: Any, after: Any) -> List[Change]:
    """Every path (bookkeeping left out) whose value differs from ``before`` to ``after``, in the trees' order."""
    return list(_walk_changes(_kept(before), _kept(after), ()))


def is_epoch_change(change: Change) -> bool:
    """More epochs of the same run (``train.num_epochs``, ``train.stageN.num_epochs``): a continuation."""
    return change.path.split('.')[-1] == 'num_epochs' and isinstance(change.before, float) and \
        isinstance(change.after, float) and change.after > change.before


def code_version() -> str:
    """The plugin's version, with the git commit of its checkout when it runs from one (``0.1.0+g1a2b3c4d``,
    ``.dirty`` when tracked files differ from it): recorded with each attempt of a run, never compared."""
    from ... import __version__
    folder = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(['git', '-C', folder, 'rev-parse', '--short=8', 'HEAD'], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return __version__
        dirty = subprocess.run(['git', '-C', folder, 'status', '--porcelain', '--untracked-files=no'],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):  # no git here: the version alone
        return __version__
    return f'{__version__}+g{commit.stdout.strip()}' + ('.dirty' if dirty.stdout.strip() else '')
