"""Run a config's teacher once over every epoch's augmentation stream and write the logits (``cache-teacher``).

The device-data path draws the augmentation of sample ``i`` in epoch ``e`` from (seed, e, i) alone, so the
teacher's logits of a whole run can be computed once and read back by every run of the same teacher, data,
transforms and seed (``--teacher-cache DIR``): the teacher's forward, most of a distillation step's compute for
resnet32x4 -> resnet8x4, is then paid once instead of once per run.

``--views all`` writes the complete cache instead (:mod:`ttm_torchdistill.run.data.complete_cache`): the teacher's
logits on every (crop offset, flip) view of every training image, which serves runs of any seed and any number of
epochs.
"""
import logging
import time
from typing import List, Optional

import torch

from ..errors import RunError
from .config.loading import load_config
from .config.runtime import split_runtime_overrides
from .config.walk import iter_train_stage_configs, planned_epochs, teacher_entry
from .data.per_seed_cache import build_teacher_cache, file_sha256
from .data.complete_cache_build import build_view_cache
from .machine.context import cleanup, init_distributed
from .console import run_logging
from .model_loading.weights import is_remote
from .options import RunOptions
from .prepare import prepare

logger = logging.getLogger('ttm_torchdistill.run')


def _check_arguments(views: str, seed: Optional[int], epochs: Optional[int], amp: str,
                     save_every_s: Optional[float]) -> int:
    """The seed to prepare the run with: ``seed`` for the per-seed cache; any for the complete one (no random draw
    of it reaches that cache)."""
    if views == 'all':
        given = [flag for flag, value in (('--seed', seed), ('--epochs', epochs)) if value is not None]
        if given:
            raise RunError(f'cache-teacher --views all takes no {" or ".join(given)}: the complete cache serves '
                           f'every seed and number of epochs')
        return 0
    if seed is None:
        raise RunError('cache-teacher needs --seed (the seed of the runs that will read the cache), or --views all')
    if amp != 'off' or save_every_s is not None:
        raise RunError(f'cache-teacher {"--amp" if amp != "off" else "--save-every"} applies to --views all only')
    return seed


def _local_teacher_checkpoint(opts: RunOptions) -> str:
    """The teacher's ``src_ckpt``, checked before anything is built (or downloaded): a local file."""
    teacher = teacher_entry(load_config(opts.config, split_runtime_overrides(opts.overrides)[0]).config)
    src_ckpt = (teacher or dict()).get('src_ckpt')
    if teacher is None or not isinstance(src_ckpt, str) or not src_ckpt or is_remote(src_ckpt):
        raise RunError('cache-teacher needs models.teacher_model with a local src_ckpt (the cache records its '
                       f'sha256), got {src_ckpt!r}')
    return src_ckpt


def cache_teacher(config: str, seed: Optional[int], out: str, epochs: Optional[int] = None, dtype: str = 'float32',
                  batch_size: int = 500, device: str = 'cpu', overrides: Optional[List[str]] = None,
                  allow_pickle: bool = False, views: str = 'drawn', amp: str = 'off',
                  save_every_s: Optional[float] = None) -> dict:
    """Build the cache of ``config``'s teacher for runs with ``--seed seed`` (``views='drawn'``), or the complete
    cache for runs of any seed (``views='all'``, no seed or epochs); returns the metadata written."""
    seed = _check_arguments(views, seed, epochs, amp, save_every_s)
    opts = RunOptions(config=config, device=device, seed=seed, overrides=list(overrides or []),
                      allow_pickle=allow_pickle, runtime_flags={'device_data': True}, log_fitting=False,
                      tracking=False)
    ctx = init_distributed(device, 1, 'env://')
    if ctx.distributed:
        raise RunError('cache-teacher runs in one process (the cache serves every rank); launch it without torchrun')
    try:
        with run_logging(True, None):
            src_ckpt = _local_teacher_checkpoint(opts)
            torch.manual_seed(seed)
            prepared = prepare(opts, ctx)
            stages = list(iter_train_stage_configs(prepared.config))
            where, first = stages[0]
            data = prepared.device_data.dataset(first['train_data_loader']['dataset_id'], f'{where}.train_data_loader')
            start = time.time()
            if views == 'all':
                logger.info(f'Caching the teacher of {config} on every view of {len(data)} images, {dtype}, amp '
                            f'{amp} -> {out}')
                metadata = build_view_cache(prepared.teacher, data, out, file_sha256(src_ckpt), dtype=dtype, amp=amp,
                                            batch_size=batch_size, device=ctx.device,
                                            save_every_s=30.0 if save_every_s is None else save_every_s)
                logger.info(f'Teacher cache {out} complete ({time.time() - start:.1f}s in this command)')
                return metadata
            epochs = planned_epochs(prepared.config) if epochs is None else epochs
            if epochs < 1:
                raise RunError(f'--epochs must be at least 1, got {epochs}')
            logger.info(f'Caching the teacher of {config}: {epochs} epochs x {len(data)} images, {dtype}, seed {seed} '
                        f'-> {out}')
            metadata = build_teacher_cache(prepared.teacher, data, epochs, out,
                                           {'teacher_sha256': file_sha256(src_ckpt)}, dtype=dtype,
                                           device=ctx.device, batch_size=batch_size)
            logger.info(f'Teacher cache written to {out} in {time.time() - start:.1f}s')
            return metadata
    except ValueError as exc:
        raise RunError(f'cache-teacher: {exc}') from None
    finally:
        cleanup(ctx)
