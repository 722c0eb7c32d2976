"""``python -m ttm_torchdistill cache-teacher``: run the teacher once over every epoch's augmentation stream.

The device-data path draws the augmentation of sample ``i`` in epoch ``e`` from (seed, e, i) alone, so the
teacher's logits of a whole run can be computed once and read back by every run of the same teacher, data,
transforms and seed (``--teacher-cache DIR``): the teacher's forward, most of a distillation step's compute for
resnet32x4 -> resnet8x4, is then paid once instead of once per run.

``--views all`` writes the complete cache instead (:mod:`ttm_torchdistill.run.view_cache`): the teacher's logits on
every (crop offset, flip) view of every training image, which serves runs of any seed and any number of epochs.
"""
import argparse
import logging
import sys
import time
from typing import List, Optional

import torch

from ..errors import RunError, error_line
from .config_walk import iter_train_stage_configs, teacher_entry
from .distributed import cleanup, init_distributed
from .logging_setup import run_logging
from .options import RunOptions
from .config import load_config
from .prepare import prepare
from .runtime import split_runtime_overrides
from .teacher_cache import build_teacher_cache, file_sha256
from .view_cache import AMP_MODES
from .view_cache_build import build_view_cache
from .weights import is_remote

logger = logging.getLogger('ttm_torchdistill.run')
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
                        help='storage dtype: float16 halves the size (see the README for what it changes)')
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


def cache_teacher(config: str, seed: Optional[int], out: str, epochs: Optional[int] = None, dtype: str = 'float32',
                  batch_size: int = 500, device: str = 'cpu', overrides: Optional[List[str]] = None,
                  allow_pickle: bool = False, views: str = 'drawn', amp: str = 'off',
                  save_every_s: Optional[float] = None) -> dict:
    """Build the cache of ``config``'s teacher for runs with ``--seed seed`` (``views='drawn'``), or the complete
    cache for runs of any seed (``views='all'``, no seed or epochs); returns the metadata written."""
    if views == 'all':
        given = [flag for flag, value in (('--seed', seed), ('--epochs', epochs)) if value is not None]
        if given:
            raise RunError(f'cache-teacher --views all takes no {" or ".join(given)}: the complete cache serves '
                           f'every seed and number of epochs')
        seed = 0  # builds the datasets; no random draw of it reaches the cache
    elif seed is None:
        raise RunError('cache-teacher needs --seed (the seed of the runs that will read the cache), or --views all')
    elif amp != 'off' or save_every_s is not None:
        raise RunError(f'cache-teacher {"--amp" if amp != "off" else "--save-every"} applies to --views all only')
    opts = RunOptions(config=config, device=device, seed=seed, overrides=list(overrides or []),
                      allow_pickle=allow_pickle, runtime_flags={'device_data': True})
    ctx = init_distributed(device, 1, 'env://')
    if ctx.distributed:
        raise RunError('cache-teacher runs in one process (the cache serves every rank); launch it without torchrun')
    try:
        with run_logging(True, None):
            # the teacher checkpoint is checked before anything is built (or downloaded)
            teacher = teacher_entry(load_config(config, split_runtime_overrides(opts.overrides)[0]).config)
            src_ckpt = (teacher or dict()).get('src_ckpt')
            if teacher is None or not isinstance(src_ckpt, str) or not src_ckpt or is_remote(src_ckpt):
                raise RunError('cache-teacher needs models.teacher_model with a local src_ckpt (the cache records its '
                               f'sha256), got {src_ckpt!r}')
            torch.manual_seed(seed)
            prepared = prepare(opts, ctx)
            stages = list(iter_train_stage_configs(prepared.config))
            where, first = stages[0]
            data = prepared.device_data.dataset(first['train_data_loader']['dataset_id'], f'{where}.train_data_loader')
            if views == 'all':
                logger.info(f'Caching the teacher of {config} on every view of {len(data)} images, {dtype}, amp '
                            f'{amp} -> {out}')
                start = time.time()
                metadata = build_view_cache(prepared.teacher, data, out, file_sha256(src_ckpt), dtype=dtype, amp=amp,
                                            batch_size=batch_size, device=ctx.device,
                                            save_every_s=30.0 if save_every_s is None else save_every_s)
                logger.info(f'Teacher cache {out} complete ({time.time() - start:.1f}s in this command)')
                return metadata
            planned = sum(int(stage.get('num_epochs', 0)) for _, stage in stages)
            epochs = planned if epochs is None else epochs
            if epochs < 1:
                raise RunError(f'--epochs must be at least 1, got {epochs}')
            logger.info(f'Caching the teacher of {config}: {epochs} epochs x {len(data)} images, {dtype}, seed {seed} '
                        f'-> {out}')
            start = time.time()
            metadata = build_teacher_cache(prepared.teacher, data, epochs, out,
                                           {'teacher_sha256': file_sha256(src_ckpt)}, dtype=dtype,
                                           device=ctx.device, batch_size=batch_size)
            logger.info(f'Teacher cache written to {out} in {time.time() - start:.1f}s')
            return metadata
    except ValueError as exc:
        raise RunError(f'cache-teacher: {exc}') from None
    finally:
        cleanup(ctx)


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
