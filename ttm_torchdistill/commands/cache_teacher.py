"""``python -m ttm_torchdistill cache-teacher``: the command line of
:func:`ttm_torchdistill.run.cache_teacher.cache_teacher`."""
import argparse
import sys
from typing import List, Optional

import torch

from ..errors import error_line
from ..run.cache_teacher import cache_teacher
from ..run.data.view_cache import AMP_MODES

PROG = 'python -m ttm_torchdistill cache-teacher'

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description='Compute a config\'s teacher logits for every epoch of the device-data augmentation '
                               'stream of one seed, or (--views all) for every view of every training image, for '
                               'runs with --device-data --teacher-cache DIR.')
    parser.add_argument('--config', required=True, metavar='YAML', help='the distillation config of the runs')
    parser.add_argument('--views', choices=('drawn', 'all'), default='drawn',
                        help='drawn (default): the views one seed draws in each epoch, for runs with that --seed; '
                             'all: every (crop offset, flip) view of every image, for runs of any seed and number '
                             'of epochs (CIFAR: 162 views per image; resumable: rerun the same command after a kill)')
    parser.add_argument('--seed', type=int, help='the --seed of the runs that will read the cache (--views drawn)')
    parser.add_argument('--out', required=True, metavar='DIR', help='the cache folder to write')
    parser.add_argument('--epochs', type=int, metavar='N',
                        help='epochs to cache (--views drawn; default: the config\'s number of training epochs)')
    parser.add_argument('--dtype', choices=('float32', 'float16', 'float64'), default='float32',
                        help='storage dtype: float16 halves the size (BENCHMARKS.md measures what it changes in '
                             'each loss)')
    parser.add_argument('--batch-size', type=int, default=500, help='images per teacher forward (default 500)')
    parser.add_argument('--amp', choices=AMP_MODES, default='off',
                        help='--views all: autocast of the teacher\'s forward passes (recorded in the metadata)')
    parser.add_argument('--save-every', type=float, metavar='SECONDS',
                        help='--views all: seconds between saves of the build\'s progress, the most work a kill can '
                             'lose (default 30; 0: after every batch)')
    parser.add_argument('--device', default=None, help='torch device (default: cuda when available, else cpu)')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='override a value of the YAML, as for the runner (repeatable)')
    parser.add_argument('--allow_pickle', '--allow-pickle', dest='allow_pickle', action='store_true',
                        help='read the teacher checkpoint with torch.load(weights_only=False): trusted files only')
    parser.add_argument('--traceback', action='store_true', help='show the Python traceback of errors')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``cache-teacher``; returns the exit status."""
    args = build_parser().parse_args(argv)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        cache_teacher(args.config, args.seed, args.out, args.epochs, args.dtype, args.batch_size, device,
                      args.overrides, args.allow_pickle, args.views, args.amp, args.save_every)
    except KeyboardInterrupt:
        if args.views == 'all':
            print('error: interrupted; rerun the same command to continue the build', file=sys.stderr)
        else:
            print('error: interrupted; the cache folder has no metadata.json and will be refused', file=sys.stderr)
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        print(error_line(exc), file=sys.stderr)
        return 1
    return 0
