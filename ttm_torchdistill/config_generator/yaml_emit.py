"""A config as nested data, and the one emitter that writes it as YAML with its comments, anchors and tags.

The configs are built from plain values: dicts are block mappings (in insertion order), lists are flow sequences
(``[a, b]``) when they hold only scalars and aliases and block sequences otherwise, and scalars are written by
:func:`scalar`. A YAML dumper would lose what makes the configs readable and what torchdistill needs, so three small
wrappers carry it: :class:`Node` (a value with the comment beside it, comment lines above its key, an anchor, a
``!tag``), :class:`Alias` (``*name``) and :class:`Key` (a mapping key with an anchor, as torchdistill's dataset ids
are written). :func:`emit` is the only place that knows about indentation.

Example::

    >>> emit({'train': {'lr': Node(0.05, comment='RepDistiller recipe')}})
    'train:\\n  lr: 0.05  # RepDistiller recipe\\n'
"""
import dataclasses
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple

INDENT = 2


@dataclasses.dataclass(frozen=True)
class Node:
    """A value as written: ``key: &anchor !tag value  # comment``, with ``above`` as comment lines over the key."""
    value: Any
    comment: str = ''
    above: Tuple[str, ...] = ()
    anchor: str = ''
    tag: str = ''


@dataclasses.dataclass(frozen=True)
class Alias:
    """``*name``: the node anchored as ``name`` earlier in the document (the same object for torchdistill)."""
    name: str


@dataclasses.dataclass(frozen=True)
class Key:
    """A mapping key with an anchor, ``&anchor text``: torchdistill refers to datasets by their keys this way."""
    text: str
    anchor: str


class _Null:
    """An explicit ``null`` (``None`` is written as an empty value, which YAML also reads as null)."""

    def __repr__(self) -> str:
        return 'NULL'


NULL = _Null()


def scalar(value: Any) -> str:
    """A YAML scalar as the configs write it: ``True``/``False``, numbers via ``repr`` (an exponent gets a dotted
    mantissa), strings single-quoted, and nothing for None (an empty value loads as null)."""
    if value is None:
        return ''
    if value is NULL:
        return 'null'
    if isinstance(value, bool):
        return 'True' if value else 'False'
    if isinstance(value, float) and 'e' in repr(value) and '.' not in repr(value):
        # YAML 1.1 (PyYAML) reads 1e-07 as a string: a float needs a dot in its mantissa, as in 1.0e-07
        mantissa, exponent = repr(value).split('e')
        return f'{mantissa}.0e{exponent}'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f'cannot write {value!r} ({type(value).__name__}) as a YAML scalar: expected None, NULL, bool, '
                    f'int, float or str')


def number(value: float) -> str:
    """A number for prose (headers, comments): 101 rather than 101.0, 0.1 as is."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _unwrap(value: Any) -> Tuple[Any, Node]:
    """The bare value and its decorations (an undecorated value gets an empty Node)."""
    if isinstance(value, Node):
        if isinstance(value.value, Node):
            raise TypeError(f'a Node inside a Node: {value!r}; merge their comments, anchors and tags into one')
        return value.value, value
    return value, Node(value)


def _inline(value: Any) -> Optional[str]:
    """The text of a value written on its key's line, or None for a block mapping or sequence."""
    if isinstance(value, Alias):
        return f'*{value.name}'
    if isinstance(value, dict):
        return '{}' if not value else None
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (Node, dict, list, tuple)) for item in value):  # scalars and aliases only
            return '[' + ', '.join('null' if item is None else _inline(item) for item in value) + ']'
        return None
    return scalar(value)


def _head(text: str, decorations: Node, inline: Optional[str]) -> str:
    """``text`` followed by the anchor, the tag, the inline value and the comment, each when present."""
    parts = [text]
    if decorations.anchor:
        parts.append(f'&{decorations.anchor}')
    if decorations.tag:
        parts.append(decorations.tag)
    if inline:
        parts.append(inline)
    line = ' '.join(parts)
    return line + f'  # {decorations.comment}' if decorations.comment else line


_PLAIN_KEY = re.compile(r'[A-Za-z_][A-Za-z0-9_./-]*')
# Words YAML 1.1 (PyYAML) reads as booleans or null when unquoted
_RESERVED_KEYS = {'null', 'true', 'false', 'yes', 'no', 'on', 'off'}


def _key_text(key: Any) -> str:
    """Keys are written plain, so each must read back as the same string."""
    text = key.text if isinstance(key, Key) else key
    if not isinstance(text, str):
        raise TypeError(f'a mapping key must be a str or a Key, got {key!r}')
    if not _PLAIN_KEY.fullmatch(text) or text.lower() in _RESERVED_KEYS:
        raise ValueError(f'a mapping key is written unquoted, so it must be a name (letters, digits, _ . / -, not '
                         f'starting with a digit) and not a YAML 1.1 boolean or null; got {text!r}')
    return f'&{key.anchor} {text}' if isinstance(key, Key) else text


def _children(value: Any, indent: int) -> List[str]:
    """The lines below a block value's head: mapping entries, or sequence items, at ``indent``."""
    if isinstance(value, dict):
        return [line for key, item in value.items() for line in _entry(key, item, indent)]
    return [line for item in value for line in _item(item, indent)]


def _entry(key: Any, value: Any, indent: int) -> List[str]:
    """``key: value`` at ``indent``, its comment lines above it and, for a block value, its children."""
    bare, decorations = _unwrap(value)
    pad = ' ' * indent
    lines = [f'{pad}# {text}' for text in decorations.above]
    inline = _inline(bare)
    lines.append(pad + _head(_key_text(key) + ':', decorations, inline))
    if inline is None:
        lines += _children(bare, indent + INDENT)
    return lines


def _item(value: Any, indent: int) -> List[str]:
    """``- value`` at ``indent``; an undecorated mapping starts on the dash's line (``- name: 'x'``)."""
    bare, decorations = _unwrap(value)
    pad = ' ' * indent
    if decorations.above:
        raise ValueError(f'comment lines above a sequence item are not supported: {decorations.above}')
    inline = _inline(bare)
    if inline is not None:
        return [pad + _head('-', decorations, inline)]
    if isinstance(bare, dict) and not (decorations.anchor or decorations.tag or decorations.comment):
        lines = _children(bare, indent + INDENT)
        if lines[0].lstrip().startswith('#'):
            raise ValueError(f'the first entry of a mapping in a sequence cannot have comment lines above it: {bare}')
        return [pad + '- ' + lines[0].lstrip()] + lines[1:]
    return [pad + _head('-', decorations, None)] + _children(bare, indent + INDENT)


def comment_lines(lines: Sequence[str]) -> List[str]:
    """``# ``-prefixed lines (an empty line becomes a bare ``#``)."""
    return [f'# {line}'.rstrip() for line in lines]


def emit(document: Mapping[Any, Any], header: Sequence[str] = ()) -> str:
    """The YAML text of ``document``: ``header`` as comment lines, then each top-level entry, a blank line apart."""
    if not isinstance(document, dict) or not document:
        raise TypeError(f'a document is a non-empty dict of top-level entries, got {document!r}')
    blocks = ['\n'.join(_entry(key, value, 0)) for key, value in document.items()]
    head = '\n'.join(comment_lines(header)) + '\n\n' if header else ''
    return head + '\n\n'.join(blocks) + '\n'
