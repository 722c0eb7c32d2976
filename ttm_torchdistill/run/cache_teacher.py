"""Run a config's teacher once over every epoch's augmentation stream and write the logits (``cache-teacher``).

The device-data path draws the augmentation of sample ``i`` in epoch ``e`` from (seed, e, i) alone, so the
teacher's logits of a whole run can be computed once and read back by every run of the same teacher, data,
transforms and seed (``--teacher-cache DIR``): the teacher's forward, most of a distillation step's compute for
resnet32x4 -> resnet8x4, is then paid once instead of once per run.
"""
import logging
import time
from typing import List, Optional

import torch

from ..errors import RunError
from .config.loading import load_config
from .config.runtime import split_runtime_overrides
from .config.walk import iter_train_stage_configs, teacher_entry
from .data.teacher_cache import build_teacher_cache, file_sha256
from .machine.context import cleanup, init_distributed
from .logging_setup import run_logging
from .models.weights import is_remote
from .options import RunOptions
from .prepare import prepare

logger = logging.getLogger('ttm_torchdistill.run')


def cache_teacher(config: str, seed: int, out: str, epochs: Optional[int] = None, dtype: str = 'float32',
                  batch_size: int = 500, device: str = 'cpu', overrides: Optional[List[str]] = None,
                  allow_pickle: bool = False) -> dict:
    """Build the cache of ``config``'s teacher for runs with ``--seed seed``; returns the metadata written."""
    opts = RunOptions(config=config, device=device, seed=seed, overrides=list(overrides or []),
                      allow_pickle=allow_pickle, runtime_flags={'device_data': True}, log_fitting=False)
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
            planned = sum(int(stage.get('num_epochs', 0)) for _, stage in stages)
            epochs = planned if epochs is None else epochs
            if epochs < 1:
                raise RunError(f'--epochs must be at least 1, got {epochs}')
            data = prepared.device_data.dataset(first['train_data_loader']['dataset_id'], f'{where}.train_data_loader')
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
