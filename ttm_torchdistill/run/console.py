"""What a run prints: where its log lines go (stdout: rank 0 at INFO, other ranks at WARNING; optionally a file)
and how durations read."""
import datetime
import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

from torchdistill.common.constant import LOGGING_FORMAT


class _StdoutHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stdout`` is at emit time (stderr stays free for the one-line error)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


@contextmanager
def run_logging(is_main: bool, run_log: Optional[str]) -> Iterator[None]:
    """Route log records for the duration of a run; the ``--run_log`` file is closed at the end."""
    root = logging.getLogger()
    if not any(isinstance(h, _StdoutHandler) for h in root.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter(LOGGING_FORMAT, datefmt='%Y/%m/%d %H:%M:%S'))
        root.addHandler(handler)
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    # torchdistill logs two INFO lines for every YAML tag it executes ("Getting/Calling `X` from `y`"): dozens per
    # config, drowning the progress lines. Its warnings still show.
    logging.getLogger('torchdistill.common.main_util').setLevel(logging.WARNING)
    file_handler = None
    if run_log and is_main:
        path = os.path.expanduser(run_log)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        file_handler = logging.FileHandler(path, mode='a')
        file_handler.setFormatter(logging.Formatter(LOGGING_FORMAT))
        root.addHandler(file_handler)
    try:
        yield
    finally:
        if file_handler is not None:
            root.removeHandler(file_handler)
            file_handler.close()


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``'1:02:05'``."""
    return str(datetime.timedelta(seconds=int(max(seconds, 0.0))))
