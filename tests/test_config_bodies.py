"""The bodies of the shipped configs stay what they were when the generator's text layer was rewritten.

A config's *body* is what torchdistill builds from it: every key in its order, every value with its YAML type,
every ``!tag``, and which nodes are shared through anchors and aliases (``*root_dir``, ``*normalize_kwargs``,
``*val_sampler``, ...). Comments, quoting, flow or block style and anchor names are not part of it. The body decides
what a run computes (the order of ``sub_terms`` is the order of the loss sum), so an unchanged body means
bit-identical weights for the same seed.

``tests/config_bodies.json`` holds, for each config shipped before the generator built configs as nested data
(commit 4649aba), a digest of each top-level section of its body. Headers and comments may change freely; a
body may not change by accident. A body changed on purpose (a new recipe value, say) gets its digest replaced in
the same commit, with the reason in the commit message. A config moved to another name is listed in :data:`MOVED`:
its body is compared but for ``models`` (its checkpoint path follows its name).
"""
import hashlib
import json
from typing import Any, Dict

import pytest
import yaml

from conftest import REPO_ROOT
from ttm_torchdistill.config_generator import by_name

SNAPSHOT = REPO_ROOT / 'tests' / 'config_bodies.json'
#: Configs of the snapshot shipped under another name since: {old name: new name}.
MOVED: Dict[str, str] = {
    # DKD + max-logit temperature became a method of its own, for the 13 pairs
    'cifar100/dkd/resnet8x4_from_resnet32x4-max_logit': 'cifar100/dkd_at/resnet8x4_from_resnet32x4',
}
_STANDARD_TAG = 'tag:yaml.org,2002:'


def _shared_nodes(root: yaml.Node) -> Dict[int, int]:
    """{id(node): label} for the nodes reached more than once (anchored and aliased), labelled in visiting order."""
    seen, shared, stack = set(), [], [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            if id(node) not in shared:
                shared.append(id(node))
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in reversed(node.value) for item in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return {node_id: label for label, node_id in enumerate(shared)}


def _canonical(node: yaml.Node, shared: Dict[int, int], written: set, constructor: yaml.SafeLoader) -> Any:
    """A JSON-able form of ``node``: kind, tag, typed values, order kept, shared nodes labelled (``&k`` / ``*k``)."""
    label = shared.get(id(node))
    if label is not None:
        if label in written:
            return ['*', label]
        written.add(label)
    if isinstance(node, yaml.ScalarNode):
        if node.tag.startswith(_STANDARD_TAG):
            value = constructor.construct_object(node)
            form = ['scalar', node.tag, type(value).__name__, repr(value)]
        else:
            form = ['scalar', node.tag, 'str', node.value]
    elif isinstance(node, yaml.SequenceNode):
        form = ['seq', node.tag, [_canonical(item, shared, written, constructor) for item in node.value]]
    else:
        form = ['map', node.tag, [[_canonical(key, shared, written, constructor),
                                   _canonical(value, shared, written, constructor)] for key, value in node.value]]
    return form if label is None else ['&', label, form]


def body_digests(text: str) -> Dict[str, str]:
    """{top-level key: sha256 of its canonical body}, in the file's order (anchors count across sections)."""
    # composing builds nodes only: no tag is executed
    root = yaml.compose(text, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
    shared, written, constructor = _shared_nodes(root), set(), yaml.SafeLoader('')
    digests = {}
    for key, value in root.value:
        form = _canonical(value, shared, written, constructor)
        digests[key.value] = hashlib.sha256(json.dumps(form).encode()).hexdigest()
    return digests


def _snapshot() -> Dict[str, Dict[str, str]]:
    return {name: digests for name, digests in json.loads(SNAPSHOT.read_text())['configs'].items()}


SNAPSHOT_NAMES = sorted(_snapshot())


def test_snapshot_covers_the_configs_it_was_taken_from():
    assert len(SNAPSHOT_NAMES) == 118
    gone = [name for name in SNAPSHOT_NAMES if by_name(MOVED.get(name, name)) is None]
    assert not gone, f'configs of {SNAPSHOT.name} without a row (moved ones listed in MOVED): {gone}'
    assert not [name for name in MOVED if by_name(name) is not None], 'a moved config is still shipped'


@pytest.mark.parametrize('name', SNAPSHOT_NAMES)
def test_body_unchanged(name):
    expected = _snapshot()[name]
    shipped = MOVED.get(name, name)
    actual = body_digests((REPO_ROOT / 'configs' / f'{shipped}.yaml').read_text(encoding='utf-8'))
    assert list(actual) == list(expected), f'{shipped}: top-level keys {list(actual)} != {list(expected)}'
    compared = [key for key in expected if not (name in MOVED and key == 'models')]
    changed = [key for key in compared if actual[key] != expected[key]]
    assert not changed, f'configs/{shipped}.yaml: the body of {changed} changed (values, types, tags, order or ' \
                        f'shared nodes); only comments and layout may change without a new digest'


def test_digest_sees_values_types_order_tags_and_sharing():
    base = ("a: &x {k: 1, j: 'v'}\nb: *x\nc: !import_call {key: 'm'}\n")
    same_layout_changed = ("a: &y\n  k: 1  # a comment\n  j: v\nb: *y\nc: !import_call\n  key: m\n")
    assert body_digests(base) == body_digests(same_layout_changed)
    for changed in ("a: &x {k: 1.0, j: 'v'}\nb: *x\nc: !import_call {key: 'm'}\n",      # int -> float
                    "a: &x {j: 'v', k: 1}\nb: *x\nc: !import_call {key: 'm'}\n",        # key order
                    "a: &x {k: 1, j: 'v'}\nb: *x\nc: !import_get {key: 'm'}\n",         # tag
                    "a: {k: 1, j: 'v'}\nb: {k: 1, j: 'v'}\nc: !import_call {key: 'm'}\n",  # no longer shared
                    "a: &x {k: 1, j: 'v'}\nb: *x\nc: !import_call {key: 'n'}\n"):       # value
        assert body_digests(changed) != body_digests(base), changed
