"""``python -m ttm_torchdistill fetch-teachers``: the command line of :mod:`ttm_torchdistill.teachers`."""
import argparse
import sys
from typing import Optional, Sequence

from ..errors import error_line
from ..teachers import ARCHIVE_NAME, DEFAULT_DEST, DEFAULT_URL, TEACHERS, URL_ENV_VAR, FetchError, fetch_teachers


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
