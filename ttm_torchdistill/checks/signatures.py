"""Which keyword arguments a registered class or function accepts, and what is wrong with the ones a config gives.

The list is read from ``inspect.signature``. A class's ``__init__`` that takes ``**kwargs`` is followed up the MRO
only through this package's own classes: its loss adapters pass ``**paths`` unchanged to a private base, so the
base's arguments belong to the public class the user wrote. Another package's ``**kwargs`` may be read in the body
(torchdistill's ``SimpleLossWrapper`` reads ``kwargs['input']``), so such a signature accepts any name; only its
missing required arguments are reported (with the names given that resemble them).
"""
import difflib
import functools
import inspect
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..errors import one_line

PLUGIN_PREFIX = 'ttm_torchdistill.'
# Where the chain of **kwargs ends: these accept no keyword arguments of their own.
_CLOSED_BASES = ('torch.nn.modules.module.Module', 'builtins.object')


@dataclass
class Accepted:
    """The keyword arguments of a callable, in declaration order.

    :param names: every name that may be given by keyword.
    :param required: the names without a default.
    :param open: True when the callable also takes names it does not declare (a ``**kwargs`` not followed).
    """
    names: List[str]
    required: List[str]
    open: bool


def _qualified(cls: type) -> str:
    return f'{cls.__module__}.{cls.__qualname__}'


def _is_plugin(obj: Any) -> bool:
    return (getattr(obj, '__module__', '') or '').startswith(PLUGIN_PREFIX)


def _own_inits(cls: type) -> Iterable[Tuple[type, Any]]:
    """``(class, __init__)`` for each class of the MRO that defines its own ``__init__``."""
    for klass in cls.__mro__:
        if '__init__' in vars(klass):
            yield klass, vars(klass)['__init__']


def _signature(func: Any) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature
        return None


def accepted_arguments(obj: Any, positional: int = 0, implicit: Iterable[str] = ()) -> Accepted:
    """The keyword arguments ``obj`` (a class or a function) accepts from a config.

    :param positional: leading parameters the caller fills positionally (a loss wrapper's loss, an optimizer's
        parameters), not counting ``self``.
    :param implicit: names the caller passes itself (an auxiliary wrapper's ``student_model``, ``device``, ...).
    """
    implicit = set(implicit)
    names: List[str] = []
    required: List[str] = []
    if inspect.isclass(obj):
        chain = list(_own_inits(obj))
        signatures = [(klass, _signature(init)) for klass, init in chain]
        skip_self = True
    else:
        signatures = [(None, _signature(obj))]
        skip_self = False
    first = True
    for klass, signature in signatures:
        if klass is not None and _qualified(klass) in _CLOSED_BASES:
            return Accepted(names, required, open=False)
        if signature is None:
            return Accepted(names, required, open=True)
        params = list(signature.parameters.values())
        if skip_self and params:
            params = params[1:]
        takes_var_kw = False
        to_skip = positional if first else 0
        for param in params:
            if param.kind is param.VAR_KEYWORD:
                takes_var_kw = True
                continue
            if param.kind is param.VAR_POSITIONAL:
                continue
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and to_skip > 0:
                to_skip -= 1
                implicit.add(param.name)  # filled positionally: a base declaring it again is given it too
                continue
            if param.kind is param.POSITIONAL_ONLY or param.name in names or param.name in implicit:
                continue
            names.append(param.name)
            if param.default is param.empty:
                required.append(param.name)
        first = False
        if not takes_var_kw:
            return Accepted(names, required, open=False)
        # Follow **kwargs to the base only when this class is the plugin's (it forwards them unchanged).
        if klass is None or not _is_plugin(klass):
            return Accepted(names, required, open=True)
    return Accepted(names, required, open=True)


def suggestion(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate closest to ``name`` (difflib), or None when none is close."""
    matches = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _listing(accepted: Accepted) -> str:
    if not accepted.names:
        shown = 'no arguments'
    else:
        shown = ', '.join(f'{n} (required)' if n in accepted.required else n for n in accepted.names)
    return shown + (' and others it does not declare' if accepted.open else '')


def argument_problem(public_name: str, accepted: Accepted, kwargs: Dict[str, Any]) -> Optional[str]:
    """What is wrong with ``kwargs`` for a callable the user knows as ``public_name``, or None when nothing is.

    The text names the unknown argument(s) with the closest valid name, the missing required ones, and the valid
    arguments. For an open signature unknown names are only reported when a required argument is missing too
    (an undeclared name is then likely its misspelling).
    """
    missing = [n for n in accepted.required if n not in kwargs]
    unknown = [k for k in kwargs if k not in accepted.names]
    if accepted.open and not missing:
        unknown = []
    if not unknown and not missing:
        return None
    parts, suggested = [], set()
    for name in unknown:
        close = suggestion(name, [n for n in accepted.names if n not in kwargs])
        suggested.add(close)
        hint = f" (did you mean '{close}'?)" if close else ''
        parts.append(f'{public_name} has no argument {name!r}{hint}')
    missing = [n for n in missing if n not in suggested]  # already named as the likely intended spelling
    if missing:
        parts.append(f'{public_name} needs {", ".join(map(repr, missing))}, which is not given')
    return '; '.join(parts) + f'; {public_name} accepts: {_listing(accepted)}'


#: A constructor in an exception's message, e.g. ``_LogitDistillationLoss.__init__()``.
INIT_NAME = re.compile(r'\b[A-Za-z_][\w.]*\.__init__\(\)')


def public_text(exc: BaseException, key: str) -> str:
    """``exc`` on one line, with a constructor's (possibly private) class name replaced by ``key``, the name the user
    wrote."""
    return INIT_NAME.sub(key, one_line(exc))


def checked_keywords(obj: Any, name: Optional[str] = None) -> Any:
    """Make a class (in place) or a function (wrapped) refuse wrong keyword arguments with a message of its own.

    Python's own ``TypeError`` names the function that received the arguments: for a loss adapter that forwards
    ``**paths`` to a private base, ``_LogitDistillationLoss.__init__() got an unexpected keyword argument``, and for a
    misspelt required argument only that it is missing. Here the keyword arguments are compared with what the
    callable accepts (:func:`accepted_arguments`) before it runs, and a problem is a ``TypeError`` naming the class or
    function the user called, each wrong argument with the closest valid one, and the valid ones
    (:func:`argument_problem`). Positional arguments are left to Python.

    :param name: what the user calls a function (its registry key; default: its ``__name__``). A class is named by
        the class of the object being built, so a subclass that inherits ``__init__`` names itself.
    """
    if inspect.isclass(obj):
        original = obj.__init__

        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            if type(self).__init__ is __init__:  # the class the user called (not a base reached through super())
                _refuse_wrong_keywords(type(self), type(self).__name__, args, kwargs)
            original(self, *args, **kwargs)
        obj.__init__ = __init__
        return obj

    @functools.wraps(obj)
    def call(*args, **kwargs):
        _refuse_wrong_keywords(obj, name or obj.__name__, args, kwargs)
        return obj(*args, **kwargs)
    return call


def _refuse_wrong_keywords(target: Any, name: str, args: tuple, kwargs: Dict[str, Any]) -> None:
    problem = argument_problem(name, accepted_arguments(target, positional=len(args)), kwargs)
    if problem is not None:
        raise TypeError(problem)
