"""Fetch the public teachers: download (or read a local copy of) the archive, extract the requested members, check
each checkpoint, write it atomically.
"""
import hashlib
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch
from torchdistill.models.registry import MODEL_DICT

from .. import models  # noqa: F401  (registers the cifar_<name> architectures the checkpoints are loaded into)
from ..atomic import atomic_file
from ..errors import one_line
from .catalog import (
    ARCHIVE_NAME, DEFAULT_DEST, DEFAULT_URL, KNOWN_SHA256, TEACHERS, URL_ENV_VAR, FetchError, check_names,
    checkpoint_path, member_name,
)
from .download import CHUNK, Unreachable, download, local_path


def sha256_of(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
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
            for chunk in iter(lambda: source.read(CHUNK), b''):
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
    archive = local_path(url)
    downloaded = None
    if archive is None:
        try:
            downloaded = download(url, dest / ARCHIVE_NAME, timeout=timeout, progress=progress)
        except Unreachable as e:
            raise FetchError(f'{e}; without network, copy {ARCHIVE_NAME} from a machine that has it (it is {url}) '
                             f'and give its path: python -m ttm_torchdistill fetch-teachers --url '
                             f'/path/to/{ARCHIVE_NAME} (or set {URL_ENV_VAR}=/path/to/{ARCHIVE_NAME})') from None
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

