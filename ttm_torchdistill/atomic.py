"""Write a file so that readers see either the old content or the complete new one, never a torn file.

Checkpoints, run summaries and downloads all go through :func:`atomic_file`: the data is written to a temporary
file in the destination's folder (same filesystem, so the final rename is atomic), flushed and fsync'ed, then
renamed over the destination, and the folder is fsync'ed so that the rename itself survives a crash of the node
(the runner writes the last-epoch checkpoint before the best one: after a crash the two must not fall out of step).
A failure before the rename leaves the old file untouched and the temporary file removed. A writer killed before
the rename leaves a hidden ``.NAME.<pid>@<host>.XXXXXXXX.tmp``; the next write of ``NAME`` removes those of this
host whose process has ended (a checkpoint's can be gigabytes), and nothing reads them. The file gets the mode
``open()`` would give it (0o666 less the umask), not the owner-only mode of a temporary file, so that a group
sharing a run folder can read its checkpoints and summaries.
"""
import os
import socket
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


def fsync_folder(folder: str) -> None:
    """Make the entries of ``folder`` (a rename into it) durable."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:  # Windows cannot open a folder; its renames are flushed by the filesystem itself
        return
    try:
        os.fsync(fd)
    except OSError:  # a filesystem that cannot sync a folder (some network mounts) has nothing more to offer
        pass
    finally:
        os.close(fd)


def _temp_prefix(name: str) -> str:
    return f'.{name}.{os.getpid()}@{socket.gethostname()}.'


def _writer_has_ended(entry: str, name: str, host: str) -> bool:
    """Whether ``entry`` is a temporary file of ``name`` left by a writer on ``host`` whose process has ended."""
    head = f'.{name}.'
    if not (entry.startswith(head) and entry.endswith('.tmp')):
        return False
    pid_text, _, rest = entry[len(head):-len('.tmp')].partition('@')
    if not pid_text.isdigit() or rest.rpartition('.')[0] != host:
        return False  # another host's writer (or a temporary file of an earlier version) cannot be judged here
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_temporaries(folder: str, name: str) -> None:
    """Remove the temporary files of ``folder/name`` left by killed writers of this host."""
    host = socket.gethostname()
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if _writer_has_ended(entry, name, host):
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:  # removed by another writer meanwhile, or not ours to remove
                pass


@contextmanager
def atomic_file(path: os.PathLike, mode: str = 'wb') -> Iterator[PendingFile]:
    """Open a temporary file next to ``path``; on a clean exit, fsync it and rename it to ``path``.

    :param path: the destination; its folder is created if needed.
    :param mode: ``'wb'`` or ``'w'``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    remove_stale_temporaries(folder, name)
    fd, temp_path = tempfile.mkstemp(prefix=_temp_prefix(name), suffix='.tmp', dir=folder)
    try:
        if hasattr(os, 'fchmod'):  # POSIX; Windows has no group permissions to give
            os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, mode) as fp:
            yield PendingFile(fp, temp_path)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temp_path, path)
        fsync_folder(folder)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise
