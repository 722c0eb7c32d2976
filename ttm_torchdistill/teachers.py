"""``fetch-teachers``: download the public RepDistiller CIFAR-100 teachers and check them.

The TTM, DIST and adaptive-temperature papers distil from the teachers trained by RepDistiller (Tian et al.,
"Contrastive Representation Distillation", ICLR 2020; https://github.com/HobbitLong/RepDistiller). Their
original server is gone; the copy users rely on is the ``cifar_teachers.tar`` release asset of mdistiller
(Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022; https://github.com/megvii-research/mdistiller),
whose members are ``cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth``: RepDistiller checkpoints, dicts whose
``'model'`` entry is the state_dict.

This module downloads that archive (or reads a local copy), extracts only the requested members to
``<dest>/<name>_vanilla/ckpt_epoch_240.pth`` (the path the shipped configs use), checks the published sha256
where one is known, and checks every file by loading ``ckpt['model']`` with ``strict=True`` into the
registered architecture ``cifar_<name>``. Files are written under a temporary name and renamed only once
complete and valid, so an interrupted run never leaves a file that looks finished. Re-running is a no-op
when every requested file is present and valid.

Command line (``python -m ttm_torchdistill fetch-teachers --help``)::

    python -m ttm_torchdistill fetch-teachers                       # all six teachers
    python -m ttm_torchdistill fetch-teachers --names resnet32x4 wrn_40_2
    python -m ttm_torchdistill fetch-teachers --url /data/cifar_teachers.tar   # offline copy
    TTM_TORCHDISTILL_TEACHERS_URL=https://mirror.example/cifar_teachers.tar python -m ttm_torchdistill fetch-teachers

Only the standard library is used for HTTP (``urllib``).
"""
import argparse
import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
from torchdistill.models.registry import MODEL_DICT

from .atomic import atomic_file
from .errors import UserError, error_line, one_line
from . import models  # noqa: F401  (registers the cifar_<name> architectures the checkpoints are loaded into)

DEFAULT_URL = 'https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar'
URL_ENV_VAR = 'TTM_TORCHDISTILL_TEACHERS_URL'
DEFAULT_DEST = os.path.join('.', 'resource', 'ckpt', 'cifar100', 'teachers')
ARCHIVE_NAME = 'cifar_teachers.tar'
CHECKPOINT_NAME = 'ckpt_epoch_240.pth'

# RepDistiller names of the public teachers, in the order of the papers' tables.
TEACHERS = ('wrn_40_2', 'resnet56', 'resnet110', 'resnet32x4', 'vgg13', 'ResNet50')

# sha256 of archive members where a published value exists (a public listing of the mdistiller asset).
# Teachers without an entry are checked by strict loading only.
KNOWN_SHA256: Dict[str, str] = {
    'resnet32x4': '22aa12e2b632b19ddde155ccf2388671842ddd304824b3095e0a7fff364beb4f',
}

_CHUNK = 1 << 20


class FetchError(UserError):
    """A failure that ``main`` reports as one ``error: ...`` line (no traceback) with exit status 1."""


def member_name(name: str) -> str:
    """Path of a teacher's checkpoint inside the archive."""
    return f'cifar_teachers/{name}_vanilla/{CHECKPOINT_NAME}'


def checkpoint_path(dest: os.PathLike, name: str) -> Path:
    """Where a teacher's checkpoint goes: ``<dest>/<name>_vanilla/ckpt_epoch_240.pth``."""
    return Path(dest) / f'{name}_vanilla' / CHECKPOINT_NAME


def check_names(names: Iterable[str]) -> List[str]:
    """Return the names without duplicates, or raise :class:`FetchError` on a name that is not a teacher."""
    selected: List[str] = []
    for name in names:
        if name not in TEACHERS:
            raise FetchError(f'unknown teacher {name!r}; expected some of: {", ".join(TEACHERS)}')
        if name not in selected:
            selected.append(name)
    if not selected:
        raise FetchError(f'no teacher selected; expected some of: {", ".join(TEACHERS)}')
    return selected


def sha256_of(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checkpoint(path: os.PathLike, name: str, known_sha256: Mapping[str, str] = KNOWN_SHA256,
                      allow_pickle: bool = False) -> None:
    """Check a teacher checkpoint file; raise :class:`FetchError` saying what is wrong.

    :param path: the checkpoint file.
    :param name: RepDistiller name of the teacher (``'resnet56'``...).
    :param known_sha256: expected sha256 per teacher name; teachers without an entry skip the hash check.
    :param allow_pickle: load with ``torch.load(weights_only=False)``, which can run code stored in the file.
        The default ``weights_only=True`` suffices for RepDistiller's format (tensors, numbers, dicts, lists).
    """
    expected = known_sha256.get(name)
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected.lower():
            raise FetchError(f'sha256 mismatch for {name}: expected {expected}, got {actual} ({path})')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=not allow_pickle)
    except Exception as e:  # torch raises several types for damaged or foreign files
        hint = '' if allow_pickle else ' (loaded with weights_only=True; pass --allow-pickle only for a trusted file)'
        raise FetchError(f'cannot load the {name} checkpoint {path}: {one_line(e)}{hint}') from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('model'), dict):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise FetchError(f'the {name} checkpoint {path} is not a dict with a "model" state_dict; found {found}')
    key = f'cifar_{name}'
    try:
        MODEL_DICT[key]().load_state_dict(checkpoint['model'], strict=True)
    except RuntimeError as e:
        raise FetchError(f'the {name} checkpoint {path} does not load strictly into {key}: {one_line(e)}') from None


class ProgressBar:
    """A small text progress bar on a stream (stderr by default); redraws in place on a terminal."""

    def __init__(self, label: str, total: Optional[int], stream: Optional[IO[str]] = None, width: int = 30):
        self.label, self.total, self.width = label, total, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = getattr(self.stream, 'isatty', lambda: False)()
        self.done = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.1:
                self._draw(end='\r')
                self._last_draw = now
        elif self.total:
            # Not a terminal (a log file): one line per 10 %, not thousands of carriage returns.
            decile = 10 * self.done // self.total
            if decile > self._last_decile and decile < 10:
                self._last_decile = decile
                self._draw(end='\n')

    def close(self) -> None:
        self._draw(end='\n')

    def _draw(self, end: str) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed / 1e6
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(self.width * fraction)
            text = (f'{self.label} {100 * fraction:3.0f}% [{"#" * filled}{"." * (self.width - filled)}] '
                    f'{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB {rate:.1f} MB/s')
        else:
            text = f'{self.label} {self.done / 1e6:.1f} MB {rate:.1f} MB/s'
        self.stream.write(text + end)
        self.stream.flush()


def _local_path(url: str) -> Optional[Path]:
    """The file a ``file://`` URL or a plain path designates, or None for a network URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == 'file':
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme in ('http', 'https', 'ftp'):
        return None
    return Path(url)  # a plain path (a one-letter "scheme" is a Windows drive)


def download(url: str, target: Path, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``target`` through a temporary file in the same folder, renamed when complete.

    :raises FetchError: on an HTTP error status, an unreachable host, or a transfer that ends early.
    """
    request = urllib.request.Request(url, headers={'User-Agent': 'ttm_torchdistill-fetch-teachers'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get('Content-Length')
            total = int(length) if length is not None and length.isdigit() else None
            bar = ProgressBar(target.name, total) if progress else None
            received = 0
            try:
                with atomic_file(target) as pending:
                    for chunk in iter(lambda: response.read(_CHUNK), b''):
                        pending.file.write(chunk)
                        received += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    # urllib returns a short body without complaint when the server closes early: count the bytes
                    # (before the rename, so a short file never takes the target's name).
                    if total is not None and received != total:
                        raise FetchError(f'download of {url} interrupted: received {received} of {total} bytes')
            finally:
                if bar is not None:  # also when the transfer breaks, so the error starts on its own line
                    bar.close()
        return target
    except urllib.error.HTTPError as e:
        raise FetchError(f'HTTP {e.code} {e.reason} for {url}') from None
    except urllib.error.URLError as e:
        raise FetchError(f'cannot reach {url}: {one_line(e.reason)}') from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # reset or timeout mid-body, bad URL
        if isinstance(e, PermissionError):
            raise FetchError(f'cannot write {target}: {one_line(e)}') from None
        raise FetchError(f'download of {url} failed: {one_line(e)}') from None


def _ensure_writable(dest: Path) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=dest):
            pass
    except OSError as e:
        raise FetchError(f'destination {dest} is not a writable directory: {one_line(e)}') from None


def _normalised(member: str) -> str:
    # tar files made with "tar -cf x.tar ./cifar_teachers" prefix every name with "./".
    return member[2:] if member.startswith('./') else member


def _extract_member(tar: tarfile.TarFile, archive: Path, name: str, target: Path,
                    verify: Callable[[Path], None]) -> None:
    """Copy one member to a temporary file next to ``target``, verify it, then rename it to ``target``.

    Only the member with the exact expected name is read, its data is copied into a path this function
    chooses (never one taken from the archive), and anything but a regular file is refused, so no archive
    content can write outside ``target``'s folder (no path traversal, links or devices).
    """
    wanted = member_name(name)
    try:
        member = next((m for m in tar.getmembers() if _normalised(m.name) == wanted), None)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise FetchError(f'archive {archive} is corrupt or truncated: {one_line(e)}') from None
    if member is None:
        raise FetchError(f'archive {archive} has no member {wanted} (truncated, or not the teachers archive?)')
    if not member.isfile():
        raise FetchError(f'archive member {wanted} in {archive} is not a regular file; refusing it')
    try:
        with atomic_file(target) as pending:
            source = tar.extractfile(member)
            copied = 0
            for chunk in iter(lambda: source.read(_CHUNK), b''):
                pending.file.write(chunk)
                copied += len(chunk)
            if copied != member.size:
                raise FetchError(f'archive {archive} is truncated: member {wanted} has {copied} of {member.size} '
                                 f'bytes')
            pending.file.flush()
            verify(Path(pending.temp_path))
    except (tarfile.TarError, EOFError) as e:
        raise FetchError(f'archive {archive} is corrupt or truncated: {one_line(e)}') from None
    except OSError as e:
        raise FetchError(f'cannot extract {wanted} to {target}: {one_line(e)}') from None


def fetch_teachers(names: Sequence[str] = TEACHERS, dest: os.PathLike = DEFAULT_DEST, url: Optional[str] = None,
                   known_sha256: Mapping[str, str] = KNOWN_SHA256, keep_archive: bool = False,
                   allow_pickle: bool = False, timeout: float = 60.0, progress: bool = True,
                   log: Callable[[str], None] = print) -> Dict[str, Path]:
    """Make sure ``<dest>/<name>_vanilla/ckpt_epoch_240.pth`` holds a valid checkpoint for every name.

    :param names: RepDistiller teacher names (subset of :data:`TEACHERS`).
    :param dest: destination folder (the shipped configs expect ``./resource/ckpt/cifar100/teachers``).
    :param url: archive location: http(s) URL, ``file://`` URL or local path; default: the environment
        variable ``TTM_TORCHDISTILL_TEACHERS_URL``, else :data:`DEFAULT_URL`.
    :param known_sha256: expected sha256 per teacher name (checked where present).
    :param keep_archive: keep a downloaded archive as ``<dest>/cifar_teachers.tar``.
    :param allow_pickle: see :func:`verify_checkpoint`.
    :param timeout: seconds without network progress before giving up.
    :param progress: draw a progress bar on stderr while downloading.
    :param log: receives one status line per teacher.
    :return: the checkpoint path of every requested teacher.
    :raises FetchError: on any failure, with a one-line message.
    """
    selected = check_names(names)
    dest = Path(dest)
    url = url or os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    targets = {name: checkpoint_path(dest, name) for name in selected}

    def verify(path: Path, name: str) -> None:
        verify_checkpoint(path, name, known_sha256=known_sha256, allow_pickle=allow_pickle)

    missing = []
    for name, target in targets.items():
        if not target.is_file():
            missing.append(name)
            continue
        try:
            verify(target, name)
            log(f'{name}: present and valid ({target})')
        except FetchError as e:
            log(f'{name}: present but invalid, fetching it again ({e})')
            missing.append(name)
    if not missing:
        return targets

    _ensure_writable(dest)
    archive = _local_path(url)
    downloaded = None
    if archive is None:
        downloaded = download(url, dest / ARCHIVE_NAME, timeout=timeout, progress=progress)
        archive = downloaded
    elif not archive.is_file():
        raise FetchError(f'archive {archive} not found')
    try:
        try:
            tar = tarfile.open(archive, 'r:*')
        except tarfile.ReadError:  # its message lists every compression tried; only the verdict matters
            raise FetchError(f'archive {archive} is corrupt or not a tar file') from None
        except (tarfile.TarError, EOFError, OSError) as e:
            raise FetchError(f'cannot read archive {archive}: {one_line(e)}') from None
        with tar:
            for name in missing:
                _extract_member(tar, archive, name, targets[name], lambda path, n=name: verify(path, n))
                log(f'{name}: fetched and valid ({targets[name]})')
    finally:
        if downloaded is not None and not keep_archive and downloaded.exists():
            downloaded.unlink()
    return targets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m ttm_torchdistill fetch-teachers',
        description='Download the public RepDistiller CIFAR-100 teachers (mdistiller mirror), extract them to '
                    '<dest>/<name>_vanilla/ckpt_epoch_240.pth and check each one by loading it strictly into '
                    'its cifar_<name> architecture (and by sha256 where one is known).')
    parser.add_argument('--names', nargs='+', default=list(TEACHERS), metavar='NAME',
                        help=f'teachers to fetch (space or comma separated; default: all of {", ".join(TEACHERS)})')
    parser.add_argument('--dest', default=DEFAULT_DEST, help=f'destination folder (default: {DEFAULT_DEST})')
    parser.add_argument('--url', default=None,
                        help=f'archive URL, file:// URL or local path (default: ${URL_ENV_VAR}, else {DEFAULT_URL})')
    parser.add_argument('--keep-archive', action='store_true',
                        help=f'keep the downloaded archive as <dest>/{ARCHIVE_NAME}')
    parser.add_argument('--allow-pickle', '--allow_pickle', dest='allow_pickle', action='store_true',
                        help='load checkpoints with torch.load(weights_only=False); only for files you trust')
    parser.add_argument('--timeout', type=float, default=60.0, help='network timeout in seconds (default: 60)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``fetch-teachers``; returns the exit status (0 on success, 1 on failure, 2 on bad usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error; argparse has already printed what to say
        return e.code if isinstance(e.code, int) else 2
    names = [part for item in args.names for part in item.split(',') if part]
    try:
        fetch_teachers(names, dest=args.dest, url=args.url, keep_archive=args.keep_archive,
                       allow_pickle=args.allow_pickle, timeout=args.timeout, progress=not args.quiet)
    except FetchError as e:
        print(error_line(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('error: interrupted; no partial file was kept', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
