"""What a run is, as data (``run/config/identity.py``): the composed config after ``--set`` as a tree, its digest,
the changes between two trees, and the attempts file (``run/attempts.py``)."""
import json

import pytest
import yaml

from ttm_torchdistill.run.attempts import attempt_record, changed_mid_run, read_attempts, write_attempts
from ttm_torchdistill.run.config.identity import (
    TAG_KEY, Change, config_tree, is_epoch_change, tree_changes, tree_digest,
)
from ttm_torchdistill.run.config.loading import ConfigLoader


def tree(text):
    return config_tree(yaml.compose(text, Loader=ConfigLoader))


def test_tree_keeps_tags_values_and_aliases():
    composed = tree("a: &x {k: 1}\nb: *x\nc: !import_call {key: 'torch.nn.ReLU'}\nd: [1, 'two', null, true]\n"
                    "e: !!str 3\n")
    assert composed['a'] == composed['b'] == {'k': 1.0}
    assert composed['c'] == {'key': 'torch.nn.ReLU', TAG_KEY: '!import_call'}
    assert composed['d'] == [1.0, 'two', None, True] and composed['e'] == '3'
    json.dumps(composed)  # plain JSON data


def test_digest_ignores_number_spelling_comments_and_bookkeeping():
    base = tree('train: {lr: 4, num_workers: 8}\nmodels: {s: {dst_ckpt: a.pt}}\nreference: {top1: 70}\n')
    same = tree('# a comment\ntrain: {lr: 4.0, num_workers: 2}\nmodels: {s: {dst_ckpt: b.pt}}\n')
    assert tree_digest(base) == tree_digest(same)
    assert tree_digest(base) != tree_digest(tree('train: {lr: 4.5}\nmodels: {s: {dst_ckpt: a.pt}}\n'))
    assert tree_digest(base) != tree_digest(tree('train: {lr: 4, num_epochs: 1}\nmodels: {s: {dst_ckpt: a.pt}}\n'))


def test_changes_name_each_path_with_both_values():
    before = tree("train: {lr: 0.1, stage2: {num_epochs: 3}, wd: [1, 2]}\ndatasets: {t: {root: /a, x: !import_call "
                  "{key: 'A'}}}\nruntime: {amp: bf16}\n")
    after = tree("train: {lr: 0.1, stage2: {num_epochs: 5}, wd: [1, 3], extra: 1}\ndatasets: {t: {root: /b, x: "
                 "!import_call {key: 'B'}}}\nruntime: {amp: 'off'}\n")
    assert [c.text() for c in tree_changes(before, after)] == [
        'train.stage2.num_epochs: 3.0 -> 5.0', 'train.wd.1: 2.0 -> 3.0', 'train.extra: (absent) -> 1.0',
        "datasets.t.x.key: 'A' -> 'B'"]
    assert [is_epoch_change(c) for c in tree_changes(before, after)] == [True, False, False, False]
    assert tree_changes(before, before) == []


def test_a_changed_tag_or_list_length_is_one_change_of_the_whole_value():
    changes = tree_changes(tree("a: !import_call {key: 'A'}\nb: [1]\n"), tree("a: !import_get {key: 'A'}\nb: [1, 2]\n"))
    assert [c.path for c in changes] == ['a', 'b']
    assert Change('p', 'x' * 80, None).text() == f"p: '{'x' * 56}... -> (absent)"


def test_config_tree_refuses_what_is_not_a_node():
    with pytest.raises(TypeError, match=r'^config_tree: expected a YAML node, got dict$'):
        config_tree({'a': 1})


def test_attempts_record_changes_and_round_trip(tmp_path):
    identity = {'seed': 0, 'config_digest': 'd', 'config_sha256': 's', 'overrides': ['x=1'], 'code_version': 'v'}
    first = attempt_record(identity, {'amp': 'off'}, 0, 1, None, tree('train: {num_epochs: 2, lr: 1}'))
    second = attempt_record(identity, {'amp': 'off'}, 2, 1, tree('train: {num_epochs: 2, lr: 1}'),
                            tree('train: {num_epochs: 4, lr: 2}'))
    assert first['changes'] == [] and first['more_epochs'] == []
    assert second['more_epochs'] == ['train.num_epochs: 2.0 -> 4.0'] and second['changes'] == ['train.lr: 1.0 -> 2.0']
    assert changed_mid_run([first, second]) == ['train.lr: 1.0 -> 2.0']
    path = str(tmp_path / 'x.attempts.json')
    write_attempts(path, [first, second], {'train': {'lr': 2.0}})
    assert read_attempts(path) == {'format': 1, 'attempts': [first, second], 'config_tree': {'train': {'lr': 2.0}}}
    assert read_attempts(str(tmp_path / 'missing.json')) is None
