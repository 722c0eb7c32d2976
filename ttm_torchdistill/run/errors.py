"""The one exception type the command line turns into a single ``error: ...`` line on stderr."""


class RunError(Exception):
    """A problem with the user's input (config, paths, checkpoints) that a traceback would not explain better.

    The message must say what was expected and what arrived, and where (file, config path, epoch/step).
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' when it has none), for one-line error reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ''
