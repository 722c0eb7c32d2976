"""Download a file over HTTP(S) with a progress bar, atomically (standard library only: ``urllib``)."""
import http.client
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Optional

from ..atomic import atomic_file
from ..errors import one_line
from .catalog import FetchError


class Unreachable(FetchError):
    """The server could not be reached at all (no network, a wrong host): the caller knows the way out."""

CHUNK = 1 << 20

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


def local_path(url: str) -> Optional[Path]:
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
                    for chunk in iter(lambda: response.read(CHUNK), b''):
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
        raise Unreachable(f'cannot reach {url}: {one_line(e.reason)}') from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # reset or timeout mid-body, bad URL
        if isinstance(e, PermissionError):
            raise FetchError(f'cannot write {target}: {one_line(e)}') from None
        raise FetchError(f'download of {url} failed: {one_line(e)}') from None
