"""The one family of errors that the command line reports as a single ``error: ...`` line (exit status 1).

Every subcommand (training, ``fetch-teachers``, ``report``, ...) raises a subclass of :class:`UserError` for a
problem with the user's input, and every ``main`` prints it through :func:`error_line`, so the user sees one
prefix everywhere and no traceback. Unexpected failures are turned into one line by the same helper.
"""
from typing import Optional


class UserError(Exception):
    """A problem with the user's input (config, paths, checkpoints, data) that a traceback would not explain better.

    The message says what was expected, what arrived, and where (file, config path, epoch/step).
    """


class RunError(UserError):
    """A problem found while preparing or running a training/test run (``python -m ttm_torchdistill --config``)."""


class StudyError(UserError):
    """A study file, a study folder or a study command that cannot be used; the message names the key or file."""


def one_line(exc: BaseException, limit: Optional[int] = 300) -> str:
    """An exception's message on one line (whitespace collapsed, ANSI colour codes removed, cut at ``limit``).

    torch and urllib put newlines, indentation and terminal colour codes into their messages; a one-line report
    keeps the words only. An empty message gives the exception's type name.
    """
    text = _strip_ansi(str(exc))
    text = ' '.join(text.split()) or type(exc).__name__
    if limit is not None and len(text) > limit:
        text = text[:limit].rstrip() + '...'
    return text


def _strip_ansi(text: str) -> str:
    # ESC [ ... letter: torch's weights_only message bolds words with ESC[1m ... ESC[0m
    out, i = [], 0
    while i < len(text):
        if text[i] == '\x1b' and i + 1 < len(text) and text[i + 1] == '[':
            j = i + 2
            while j < len(text) and not text[j].isalpha():
                j += 1
            i = j + 1
            continue
        out.append(text[i])
        i += 1
    return ''.join(out)


def error_line(exc: BaseException) -> str:
    """The line printed on stderr for ``exc``: ``error: MESSAGE`` (with the type name for unexpected errors)."""
    if isinstance(exc, UserError):
        return f'error: {one_line(exc, limit=None)}'
    return f'error: {type(exc).__name__}: {one_line(exc)} (rerun with --traceback for details)'
