"""Load a torchdistill YAML config with ``--set`` overrides applied BEFORE any ``!import_call`` runs.

torchdistill's ``load_yaml_file`` constructs the whole document at once, so every ``!import_call`` (datasets with
``download: True`` included) executes before the runner sees the config. Here the file is first *composed* into
a node tree (no tag executed), ``--set`` overrides replace nodes in that tree, and the document is then constructed
in two parts: everything except the top-level ``datasets:`` mapping (models, train, test, ...), and, separately,
each dataset entry (see :mod:`ttm_torchdistill.run.data`), so that ``--smoke`` can swap datasets for synthetic ones
without touching the network or the data folder, and so that a missing dataset folder can be reported by name.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml
from torchdistill.common import yaml_util
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ...errors import RunError
from .identity import config_tree


class ConfigLoader(yaml.FullLoader):
    """A ``FullLoader`` subclass carrying torchdistill's custom tags (``!import_call``, ``!join``, ...).

    torchdistill registers its tags on the global ``yaml.FullLoader`` each time it loads a file; here the same
    constructors are registered on a subclass, so the global loader stays untouched.
    """


def torchdistill_constructors() -> Dict[str, Any]:
    """The ``{tag: constructor}`` pairs torchdistill's own ``load_yaml_file`` registers, read from torchdistill.

    ``load_yaml_file`` is run once on an empty document while ``yaml.add_constructor`` only records its calls, so
    a tag added (or removed) by a torchdistill release is picked up without a hand-kept list.
    """
    recorded: Dict[str, Any] = {}
    original = yaml_util.yaml.add_constructor

    def record(tag, constructor, Loader=None):
        recorded[tag] = constructor
    yaml_util.yaml.add_constructor = record
    try:
        yaml_util.load_yaml_file(os.devnull)
    finally:
        yaml_util.yaml.add_constructor = original
    return recorded


for _tag, _constructor in torchdistill_constructors().items():
    ConfigLoader.add_constructor(_tag, _constructor)


@dataclass
class LoadedConfig:
    """A config whose non-dataset part is constructed and whose datasets are still unbuilt YAML nodes.

    :param path: the config file path as given.
    :param config: the constructed config without the ``datasets`` entry.
    :param dataset_nodes: ``[(dataset_id, node)]`` in file order; build them with :mod:`ttm_torchdistill.run.data`.
    :param loader: the loader that composed the nodes (needed to construct them later).
    :param tree: the composed config after the overrides as JSON data (:func:`.identity.config_tree`): what the run
        is, compared by ``--resume``.
    """
    path: str
    config: Dict[str, Any]
    dataset_nodes: List[Tuple[str, Node]] = field(default_factory=list)
    loader: Optional[ConfigLoader] = None
    tree: Any = None


def _describe_mark(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f'line {mark.line + 1}, column {mark.column + 1}' if mark is not None else 'unknown position'
    problem = exc.problem or exc.context or 'invalid YAML'
    return f'{where}: {problem}'


def compose_file(path: str) -> Tuple[ConfigLoader, MappingNode]:
    """Parse ``path`` into a YAML node tree without executing any tag.

    :raises RunError: missing file, YAML syntax error (with line), or a document that is not a mapping.
    """
    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        raise RunError(f'config file not found: {path}')
    with open(expanded, 'r') as fp:
        text = fp.read()
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise RunError(f'YAML syntax error in {path} at {_describe_mark(exc)}') from None
    except yaml.YAMLError as exc:
        raise RunError(f'YAML error in {path}: {exc}') from None
    if not isinstance(node, MappingNode):
        raise RunError(f'config {path} must be a YAML mapping at top level (datasets, models, train, test), '
                       f'got {"an empty file" if node is None else node.id}')
    return loader, node


def _mapping_keys(node: MappingNode) -> List[str]:
    return [k.value for k, _ in node.value if isinstance(k, ScalarNode)]


_EXPONENT_FLOAT = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+')


def _compose_value(text: str) -> Node:
    """Parse an override VALUE as YAML (scalar, list, or tagged value); an empty VALUE means null."""
    try:
        node = yaml.compose(text, Loader=ConfigLoader)
    except yaml.YAMLError as exc:
        raise RunError(f'--set value {text!r} is not valid YAML: {exc}') from None
    if node is None:
        node = ScalarNode('tag:yaml.org,2002:null', '')
    # YAML 1.1 reads an unquoted 1e-3 as a string; on the command line it is meant as a number.
    if isinstance(node, ScalarNode) and node.style is None and node.tag == 'tag:yaml.org,2002:str' \
            and _EXPONENT_FLOAT.fullmatch(node.value):
        node.tag = 'tag:yaml.org,2002:float'
    return node


def _reference_counts(root: Node) -> Dict[int, int]:
    """How many places of the tree refer to each node (an anchor aliased twice counts 3)."""
    counts: Dict[int, int] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        counts[id(node)] = counts.get(id(node), 0) + 1
        if counts[id(node)] > 1:
            continue  # children already visited through the first reference
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                stack.extend((key_node, value_node))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return counts


def _through_alias(parent: Node, index: int) -> bool:
    """Whether the child at ``index`` of ``parent`` is written there as an alias (``*name``) rather than where its
    anchor (``&name``) defines it. The composer shares one node between the two; only the marks tell them apart: an
    alias's node carries the marks of its definition, which comes earlier in the file than the place of the alias."""
    if isinstance(parent, MappingNode):
        place, child = parent.value[index][0].end_mark, parent.value[index][1]
    else:
        place = parent.value[index - 1].end_mark if index else parent.start_mark
        child = parent.value[index]
    same_text = place is not None and child.start_mark is not None and place.name == child.start_mark.name
    return same_text and child.start_mark.index < place.index


def _unshared(node: Node, counts: Dict[int, int]) -> Node:
    # A container reached through a YAML alias is shared with the anchor and its other aliases: copy it (one level)
    # so that the override changes this path only. (Reached where its anchor defines it, it is changed in place, and
    # every alias of it sees the change: a split defined once stays one split.)
    if counts.get(id(node), 1) <= 1 or not isinstance(node, (MappingNode, SequenceNode)):
        return node
    copy = type(node)(node.tag, list(node.value), node.start_mark, node.end_mark, node.flow_style)
    for child in (node.value if isinstance(node, SequenceNode) else [v for pair in node.value for v in pair]):
        counts[id(child)] = counts.get(id(child), 1) + 1
    return copy


def apply_override(root: MappingNode, assignment: str) -> None:
    """Apply one ``KEY=VALUE`` override to the composed node tree in place.

    ``KEY`` is a dotted path through mappings (keys) and sequences (integer indices); every component must exist.
    A ``*`` component stands for every key (or index) at its level, e.g. ``datasets.*.init.kwargs.root=/data``
    sets the root of every dataset entry; at least one must have the rest of the path. A path through the place
    where an anchor (``&name``) defines a value changes that value for every alias (``*name``) of it; a path through
    an alias changes that place only (the containers on the way are copied first).

    :raises RunError: malformed assignment or a path that does not exist (naming the missing component).
    """
    if '=' not in assignment:
        raise RunError(f'--set expects KEY=VALUE (e.g. train.num_epochs=1), got {assignment!r}')
    dotted, value_text = assignment.split('=', 1)
    dotted = dotted.strip()
    parts = dotted.split('.')
    if not dotted or any(p == '' for p in parts):
        raise RunError(f'--set key must be a dotted path such as train.num_epochs, got {dotted!r}')
    if '*' in parts:
        for concrete in _expand_wildcards(root, parts, dotted):
            _apply_one(root, concrete, value_text, '.'.join(concrete))
        return
    _apply_one(root, parts, value_text, dotted)


def _children(node: Node):
    if isinstance(node, MappingNode):
        return [(k.value, v) for k, v in node.value if isinstance(k, ScalarNode)]
    if isinstance(node, SequenceNode):
        return [(str(i), v) for i, v in enumerate(node.value)]
    return []


def _expand_wildcards(root: Node, parts: List[str], dotted: str) -> List[List[str]]:
    """The concrete paths a path with ``*`` components stands for, among those that exist."""
    paths = [([], root)]
    for part in parts:
        step = []
        for prefix, node in paths:
            for name, child in _children(node):
                if part in ('*', name):
                    step.append((prefix + [name], child))
        paths = step
    if not paths:
        raise RunError(f'--set path {dotted!r} does not exist: no entry matches every component')
    return [path for path, _ in paths]


def _apply_one(root: MappingNode, parts: List[str], value_text: str, dotted: str) -> None:
    counts = _reference_counts(root)
    parent, index, node = None, None, root
    aliased = False  # once the path has gone through an alias, every shared container below it is copied
    for depth, part in enumerate(parts):
        here = '.'.join(parts[:depth]) or '<top level>'
        aliased = aliased or (parent is not None and _through_alias(parent, index))
        if aliased:
            copy = _unshared(node, counts)
            if copy is not node:
                if isinstance(parent, MappingNode):
                    parent.value[index] = (parent.value[index][0], copy)
                else:
                    parent.value[index] = copy
                node = copy
        if isinstance(node, MappingNode):
            matches = [i for i, (k, _) in enumerate(node.value) if isinstance(k, ScalarNode) and k.value == part]
            if not matches:
                raise RunError(f'--set path {dotted!r} does not exist: no key {part!r} under {here} '
                               f'(keys there: {", ".join(_mapping_keys(node)) or "none"})')
            parent, index = node, matches[-1]
            node = node.value[index][1]
        elif isinstance(node, SequenceNode):
            if not part.lstrip('-').isdigit() or not -len(node.value) <= int(part) < len(node.value):
                raise RunError(f'--set path {dotted!r} does not exist: {here} is a list of {len(node.value)} '
                               f'items, got index {part!r}')
            parent, index = node, int(part) % len(node.value)
            node = node.value[index]
        else:
            raise RunError(f'--set path {dotted!r} does not exist: {here} is a single value, '
                           f'not a mapping or list')
    new_node = _compose_value(value_text)
    aliased = aliased or _through_alias(parent, index)
    if not aliased and counts.get(id(node), 1) > 1 and type(new_node) is type(node):
        # the place where an anchor defines the value: its aliases are the same node, so change it in place
        node.tag, node.value = new_node.tag, new_node.value
        return
    if isinstance(parent, MappingNode):
        parent.value[index] = (parent.value[index][0], new_node)
    else:
        parent.value[index] = new_node


def _construct(loader: ConfigLoader, node: Node, what: str) -> Any:
    try:
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise RunError(f'cannot construct {what} at {_describe_mark(exc)}') from None
    except (ImportError, AttributeError) as exc:
        raise RunError(f'cannot construct {what}: {type(exc).__name__}: {exc}') from None


class SharedConstruction:
    """Construct several nodes of one document so that a node they share is built once.

    ``construct_document`` forgets what it built after each call; a dataset split defined once (an anchored
    ``split_dataset`` call) and named by two dataset ids through aliases would be split twice, each time at random,
    and the parts would overlap. Here the constructor's memory of built nodes lives until :meth:`close`, as it does
    while torchdistill constructs a whole file.
    """

    def __init__(self, loader: ConfigLoader):
        self.loader = loader

    def construct(self, node: Node) -> Any:
        data = self.loader.construct_object(node, deep=True)
        while self.loader.state_generators:  # as construct_document finishes objects built in two steps
            generators, self.loader.state_generators = self.loader.state_generators, []
            for generator in generators:
                for _ in generator:
                    pass
        return data

    def close(self) -> None:
        self.loader.constructed_objects = {}
        self.loader.recursive_objects = {}
        self.loader.deep_construct = False


def load_config(path: str, overrides: Sequence[str] = (), rewrite: Optional[Callable[[MappingNode], None]] = None
                ) -> LoadedConfig:
    """Compose ``path``, apply ``overrides`` (then ``rewrite``) and construct everything except the datasets.

    :param path: YAML config path.
    :param overrides: ``KEY=VALUE`` strings from ``--set``, applied in order.
    :param rewrite: changes the composed tree in place after the overrides (``--holdout``, :mod:`.holdout`).
    :return: the loaded config; ``config['datasets']`` is absent until the datasets are built.
    """
    loader, root = composed_with_overrides(path, overrides)
    if rewrite is not None:
        rewrite(root)
    tree = config_tree(root)
    dataset_nodes: List[Tuple[str, Node]] = []
    kept = []
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == 'datasets':
            if not isinstance(value_node, MappingNode):
                raise RunError(f'{path}: `datasets` must be a mapping of dataset id -> dataset, got {value_node.id}')
            for ds_key_node, ds_node in value_node.value:
                dataset_id = _construct(loader, ds_key_node, 'a dataset id')
                dataset_nodes.append((str(dataset_id), ds_node))
        else:
            kept.append((key_node, value_node))
    rest = MappingNode(root.tag, kept, root.start_mark, root.end_mark, root.flow_style)
    config = _construct(loader, rest, f'config {path}')
    return LoadedConfig(path=path, config=config, dataset_nodes=dataset_nodes, loader=loader, tree=tree)


def composed_with_overrides(path: str, overrides: Sequence[str] = ()) -> Tuple[ConfigLoader, MappingNode]:
    """Compose ``path`` and apply ``overrides`` (no tag executed)."""
    loader, root = compose_file(path)
    for assignment in overrides:
        apply_override(root, assignment)
    return loader, root


def mapping_value_node(node: Node, key: str) -> Optional[Node]:
    """The value node under ``key`` of a mapping node, or None."""
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return v
    return None
