"""Writing YAML scalars and commented lines by hand, so the generated configs keep their layout and comments.

The configs are written as text, not dumped from dicts: a YAML dumper would drop the comments, anchors and
torchdistill's ``!tags`` that make the files readable. These helpers keep the few formatting rules in one place.
"""
from typing import Any

from .schema import Param


def scalar(value: Any) -> str:
    """A YAML scalar as the configs write it: ``True``/``False``, numbers via ``repr`` (an exponent gets a dotted
    mantissa), strings single-quoted, flow lists ``[a, b]``, and nothing for None (an empty value loads as null)."""
    if value is None:
        return ''
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
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(scalar(v) for v in value) + ']'
    raise TypeError(f'cannot write {value!r} ({type(value).__name__}) as a YAML scalar: expected None, bool, '
                    f'int, float, str or a list of them')


def number(value: float) -> str:
    """A number for prose (headers, comments): 101 rather than 101.0, 0.1 as is."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def line(indent: int, key: str, value: Any = None, comment: str = '') -> str:
    """``<indent>key: value  # comment`` with a trailing newline; no space after a colon without a value."""
    text = ' ' * indent + f'{key}:'
    written = scalar(value)
    if written:
        text += ' ' + written
    if comment:
        text += '  # ' + comment
    return text + '\n'


def param_line(indent: int, key: str, param: Param, as_float: bool = False) -> str:
    """A line holding ``param.value`` with ``param.source`` as its comment (floats forced for loss weights)."""
    value = float(param.value) if as_float else param.value
    return line(indent, key, value, param.source)
