"""Write a file so that readers see either the old content or the complete new one, never a torn file.

Checkpoints, run summaries and downloads all go through :func:`atomic_file`: the data is written to a temporary
file in the destination's folder (same filesystem, so the final rename is atomic), flushed and fsync'ed, and only
then renamed over the destination. A failure (or a kill) before the rename leaves the old file untouched and the
temporary file removed (or, after a kill, a hidden ``.NAME.*.tmp`` that nothing reads). The file gets the mode
``open()`` would give it (0o666 less the umask), not the owner-only mode of a temporary file, so that a group
sharing a run folder can read its checkpoints and summaries.
"""
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Iterator


@dataclass
class PendingFile:
    """The open temporary file (``file``) and its path (``temp_path``, e.g. to verify it before it is renamed)."""
    file: IO
    temp_path: str


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``).

    Elsewhere it is read the only portable way, by setting it and setting it back; that briefly changes it for every
    thread of the process, which is why the read-only way comes first.
    """
    try:
        with open('/proc/self/status') as fp:
            for line in fp:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def new_file_mode() -> int:
    """The permissions ``open()`` gives a new file: 0o666 less the process's umask."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_file(path: os.PathLike, mode: str = 'wb') -> Iterator[PendingFile]:
    """Open a temporary file next to ``path``; on a clean exit, fsync it and rename it to ``path``.

    :param path: the destination; its folder is created if needed.
    :param mode: ``'wb'`` or ``'w'``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        if hasattr(os, 'fchmod'):  # POSIX; Windows has no group permissions to give
            os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, mode) as fp:
            yield PendingFile(fp, temp_path)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise
