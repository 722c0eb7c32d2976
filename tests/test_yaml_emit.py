"""The emitter of the generated configs: nested data in, YAML out, with comments, anchors, aliases and tags.

The configs' own tests check the shipped files; these check the emitter alone: exact text for each construct, a
round trip through PyYAML (values, types, tags and shared nodes come back as written), and every error.
"""
import textwrap

import pytest
import yaml

from ttm_torchdistill.config_generator.yaml_emit import NULL, Alias, Key, Node, emit, number, scalar


class _TagLoader(yaml.SafeLoader):
    """SafeLoader that keeps a custom ``!tag`` as ``('!tag', value)`` (nothing is imported or called)."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        return '!' + suffix, loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return '!' + suffix, loader.construct_sequence(node, deep=True)
    return '!' + suffix, loader.construct_scalar(node)


_TagLoader.add_multi_constructor('!', _tagged)


def test_each_construct_is_written_as_the_configs_write_it():
    document = {
        'dependencies': [{'name': 'ttm_torchdistill', 'extra': 1}],
        'datasets': {
            Key('data/train', 'train_id'): Node({'_root': Node('./root', anchor='root'), 'key': 'Dataset',
                                                 'init': None}, tag='!import_call', above=('one', 'two')),
        },
        'train': {
            'dataset_id': Alias('train_id'),
            'root': Node([Alias('root'), '/train'], tag='!join'),
            'size': Node([224, 224], anchor='size', comment='pixels'),
            'transforms': [Node({'key': 'T', 'init': None}, tag='!import_call'), 'plain'],
            'kwargs': Node({'lr': 0.05}, anchor='kw', comment='why'),
            'empty': [], 'nothing': {}, 'unset': None, 'explicit': NULL, 'flag': True,
        },
    }
    expected = textwrap.dedent('''\
        # header line

        dependencies:
          - name: 'ttm_torchdistill'
            extra: 1

        datasets:
          # one
          # two
          &train_id data/train: !import_call
            _root: &root './root'
            key: 'Dataset'
            init:

        train:
          dataset_id: *train_id
          root: !join [*root, '/train']
          size: &size [224, 224]  # pixels
          transforms:
            - !import_call
              key: 'T'
              init:
            - 'plain'
          kwargs: &kw  # why
            lr: 0.05
          empty: []
          nothing: {}
          unset:
          explicit: null
          flag: True
        ''')
    assert emit(document, ['header line']) == expected


def test_round_trip_keeps_values_types_order_tags_and_shared_nodes():
    shared = {'mean': [0.5, 0.25], 'std': [1.0, 2.0]}
    document = {'a': Node(shared, anchor='norm', comment='c'), 'b': Alias('norm'),
                'c': Node({'key': 'm', 'kwargs': {'eps': 1e-07, 'n': 3, 'x': 1.0, 's': '1.0', 'q': "it's"}},
                          tag='!import_call'),
                'd': [None, 'x', 2]}
    text = emit(document)
    loaded = yaml.load(text, Loader=_TagLoader)
    assert list(loaded) == ['a', 'b', 'c', 'd']
    assert loaded['a'] == shared and loaded['b'] is loaded['a']  # the alias is the same node
    tag, body = loaded['c']
    assert tag == '!import_call' and body == {'key': 'm', 'kwargs': {'eps': 1e-07, 'n': 3, 'x': 1.0, 's': '1.0',
                                                                      'q': "it's"}}
    assert [type(v) for v in body['kwargs'].values()] == [float, int, float, str, str]
    assert loaded['d'] == [None, 'x', 2]


@pytest.mark.parametrize('value,text', [
    (None, ''), (NULL, 'null'), (True, 'True'), (False, 'False'), (3, '3'), (0.0005, '0.0005'),
    (1e-07, '1.0e-07'),  # PyYAML reads 1e-07 (no dot) as a string
    (2.5e10, '25000000000.0'), ('text', "'text'"), ("it's", "'it''s'"), ('', "''"),
])
def test_scalar(value, text):
    assert scalar(value) == text


def test_number_for_prose():
    assert (number(101.0), number(0.1), number(7)) == ('101', '0.1', '7')


def test_a_value_that_is_no_yaml_scalar_is_an_error():
    with pytest.raises(TypeError, match=r"cannot write \{1\} \(set\) as a YAML scalar"):
        emit({'a': {1}})


def test_a_node_inside_a_node_is_an_error():
    with pytest.raises(TypeError, match='a Node inside a Node'):
        emit({'a': Node(Node(1), comment='x')})


def test_a_key_that_is_no_str_or_key_is_an_error():
    with pytest.raises(TypeError, match='a mapping key must be a str or a Key, got 1'):
        emit({'a': {1: 'x'}})


@pytest.mark.parametrize('key', ['null', 'Yes', 'on', '1st', 'a key', "it's", ''])
def test_a_key_that_would_not_read_back_as_itself_is_an_error(key):
    with pytest.raises(ValueError, match='a mapping key is written unquoted'):
        emit({'a': {key: 1}})


def test_comment_lines_above_a_sequence_item_are_an_error():
    with pytest.raises(ValueError, match='comment lines above a sequence item are not supported'):
        emit({'a': [Node({'k': 1}, above=('no',))]})


def test_comment_lines_above_the_first_entry_of_an_inline_mapping_item_are_an_error():
    with pytest.raises(ValueError, match='the first entry of a mapping in a sequence cannot have comment lines'):
        emit({'a': [{'k': Node(1, above=('no',))}]})


@pytest.mark.parametrize('document', [{}, ['a'], None], ids=['empty', 'list', 'none'])
def test_a_document_is_a_non_empty_dict(document):
    with pytest.raises(TypeError, match='a document is a non-empty dict of top-level entries'):
        emit(document)
