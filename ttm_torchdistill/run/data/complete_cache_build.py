"""Build a complete teacher cache (``cache-teacher --views all``): the teacher's logits on every view of every image.

The (sample, view) pairs are taken in the file's row order (``row = sample * V + view``, see
:mod:`ttm_torchdistill.run.data.complete_cache`), ``batch_size`` rows per teacher forward; each row's image is made by
the run's own device pipeline from the view's parameters
(:meth:`~.device_dataset.DeviceDataset.render`), so a cached row holds the logits of exactly the
image a run draws for that view. The teacher runs in eval mode under ``torch.no_grad`` (and under autocast when
``amp`` asks for it; recorded in the metadata).

A killed build continues where it stopped. ``build.json`` holds the build's identity (teacher checkpoint, data
checksums, transform, dtype, amp, class count) and ``rows_done``; it is rewritten (atomically) every
``save_every_s`` seconds, after the rows before ``rows_done`` were flushed to ``logits.npy``. Rerunning the same
command finds it and carries on from ``rows_done``, in the same batches as an uninterrupted build; a kill loses
at most the rows since the last save. ``metadata.json`` is written last (atomically), then ``build.json`` removed.

A folder holding anything else (a complete cache of another build, another build's unfinished files, a per-seed
cache, other files) is refused: nothing is overwritten.
"""
import logging
import os
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..config.runtime import AMP_MODES, autocast as amp_autocast
from ..console import format_duration
from .per_seed_cache import DTYPES, METADATA_FILE
from .complete_cache import (BUILD_FIELDS, BUILD_FILE, FORMAT_VERSION, KIND, LAYOUT, LOGITS_FILE, PARTIAL, check_dtype,
                         data_fields, first_difference, read_json, write_json)
from .view_space import ViewSpace

logger = logging.getLogger('ttm_torchdistill.run')

BAR_WIDTH = 20


def _files(folder: str):
    # a kill during write_json may leave NAME.partial behind; nothing reads it
    return sorted(name for name in os.listdir(folder) if not name.endswith(PARTIAL))


def _resume_point(out: str, identity: Dict[str, Any]) -> Tuple[Optional[Dict[str, Any]], int, Optional[int]]:
    """What the folder holds: (metadata of a complete cache of this very build, else None; rows done; C or None).

    :raises ValueError: the folder holds something else.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f'{out} is a file: expected a folder for the cache')
    if not os.path.isdir(out):
        return None, 0, None
    meta_path, build_path = os.path.join(out, METADATA_FILE), os.path.join(out, BUILD_FILE)
    if os.path.isfile(meta_path):
        metadata = read_json(meta_path)
        if metadata.get('kind') != KIND:
            raise ValueError(f'{out} holds a per-seed teacher cache: expected a new or empty folder (or one of '
                             f'this complete cache); choose another --out')
        difference = first_difference(metadata, identity, BUILD_FIELDS, wanted_by='this build')
        if difference is not None:
            raise ValueError(f'{out} already holds a complete teacher cache of another build ({difference}): '
                             f'remove it or choose another --out')
        return metadata, 0, None
    if os.path.isfile(build_path):
        state = read_json(build_path)
        difference = first_difference(state, identity, BUILD_FIELDS, wanted_by='this build')
        if difference is not None:
            raise ValueError(f'{out} holds an unfinished build of another cache ({difference}): remove it or '
                             f'choose another --out')
        return None, int(state['rows_done']), int(state['num_classes'])
    present = _files(out)
    if present:
        raise ValueError(f'{out} is not empty ({", ".join(present[:5])}{" ..." if len(present) > 5 else ""}): '
                         f'expected a new or empty folder, or one holding an unfinished build of this cache')
    return None, 0, None


def _open_logits(out: str, shape, dtype: str, rows_done: int) -> np.memmap:
    path = os.path.join(out, LOGITS_FILE)
    if not os.path.isfile(path):
        if rows_done:
            raise ValueError(f'{out}: {LOGITS_FILE} is missing although {BUILD_FILE} records {rows_done} rows done: '
                             f'remove the folder and build again')
        return np.lib.format.open_memmap(path, mode='w+', dtype=DTYPES[dtype][1], shape=shape)
    array = np.lib.format.open_memmap(path, mode='r+')
    if array.shape != shape or array.dtype != DTYPES[dtype][1]:
        raise ValueError(f'{out}: {LOGITS_FILE} holds {array.dtype} {array.shape}, the build writes {dtype} {shape}: '
                         f'remove the folder and build again')
    return array


def _progress_line(done: int, total: int, done_here: int, seconds: float) -> str:
    filled = BAR_WIDTH * done // total
    rate = done_here / seconds if seconds > 0 else 0.0
    eta = format_duration((total - done) / rate) if rate > 0 else '?'
    return (f'teacher cache [{"#" * filled}{"-" * (BAR_WIDTH - filled)}] {100 * done / total:5.1f}%  '
            f'{done:,}/{total:,} views, {rate:,.0f} img/s, elapsed {format_duration(seconds)}, ETA {eta}')


def _check_arguments(dtype: str, amp: str, batch_size: int, save_every_s: float, teacher_sha256: str) -> None:
    check_dtype(dtype)
    if amp not in AMP_MODES:
        raise ValueError(f'amp {amp!r}: expected one of {", ".join(AMP_MODES)}')
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f'batch_size {batch_size!r}: expected a positive int')
    if not save_every_s >= 0:
        raise ValueError(f'save_every_s {save_every_s!r}: expected seconds >= 0')
    if not teacher_sha256:
        raise ValueError('teacher_sha256 is empty: expected file_sha256(teacher checkpoint)')


def _teacher_logits(teacher: torch.nn.Module, data, space: ViewSpace, rows: torch.Tensor, device: torch.device,
                    autocast, num_classes) -> torch.Tensor:
    """The teacher's logits of (sample, view) rows ``rows`` (``sample * V + view``), checked to be ``B x C``."""
    views_per_image = space.num_views
    samples, views = rows // views_per_image, rows % views_per_image
    params = [None if p is None else p.to(data.device) for p in space.params(views)]
    images = data.render(samples.to(data.device), params).to(device)
    with autocast:
        logits = teacher(images)
    if logits.dim() != 2 or logits.shape[0] != rows.numel() or \
            (num_classes is not None and logits.shape[1] != num_classes):
        expected = f'{rows.numel()} x {num_classes if num_classes is not None else "C"}'
        raise ValueError(f'the teacher returned {tuple(logits.shape)} for a batch of {rows.numel()} views: '
                         f'expected {expected} logits')
    return logits


@torch.no_grad()
def build_view_cache(teacher: torch.nn.Module, data, out: str, teacher_sha256: str, dtype: str = 'float32',
                     amp: str = 'off', batch_size: int = 500, device=None, save_every_s: float = 30.0,
                     log_every_s: float = 30.0) -> Dict[str, Any]:
    """Write (or complete) the cache of ``teacher`` on every view of every image of ``data``.

    :param teacher: the teacher, already on ``device`` (its train/eval mode is restored afterwards).
    :param data: the training split's :class:`~.device_dataset.DeviceDataset`.
    :param out: the cache folder (new, empty, or holding an unfinished build of this same cache).
    :param teacher_sha256: sha256 of the teacher checkpoint file.
    :param dtype: storage dtype, ``'float32'``, ``'float16'`` or ``'float64'``.
    :param amp: ``'off'``, ``'bf16'`` or ``'fp16'``: autocast of the teacher's forward passes.
    :param batch_size: (sample, view) rows per teacher forward.
    :param device: where the teacher runs (default: the dataset's device).
    :param save_every_s: seconds between saves of the progress (a kill loses at most this much work); 0 saves
        after every batch.
    :param log_every_s: seconds between progress lines.
    :return: the metadata of the complete cache.
    :raises ValueError: a folder holding something else, a transform whose views cannot be enumerated, bad
        arguments, or a teacher that does not return ``B x C`` logits.
    """
    _check_arguments(dtype, amp, batch_size, save_every_s, teacher_sha256)
    space = ViewSpace(data.pipeline)
    identity = {'kind': KIND, 'format_version': FORMAT_VERSION, **data_fields(teacher_sha256, data),
                'dtype': dtype, 'amp': amp, 'view_index': space.formula(), 'layout': LAYOUT}
    complete, rows_done, num_classes = _resume_point(out, identity)
    if complete is not None:
        logger.info(f'teacher cache {out} is complete already ({complete["num_views"]} views of '
                    f'{complete["dataset_size"]} images): nothing to do')
        return complete
    os.makedirs(out, exist_ok=True)
    n, views_per_image = len(data), space.num_views
    total = n * views_per_image
    device = torch.device(device) if device is not None else data.device
    autocast = amp_autocast(amp, device.type)
    build_path = os.path.join(out, BUILD_FILE)
    logits_file = flat = None
    if num_classes is not None:
        logits_file = _open_logits(out, (n, views_per_image, num_classes), dtype, rows_done)
        flat = logits_file.reshape(total, num_classes)
    if rows_done:
        logger.info(f'teacher cache {out}: continuing an unfinished build at row {rows_done:,} of {total:,}')
    was_training = teacher.training
    teacher.eval()
    start = last_save = last_log = time.monotonic()
    first_row = rows_done
    try:
        for begin in range(rows_done, total, batch_size):
            rows = torch.arange(begin, min(begin + batch_size, total))
            logits = _teacher_logits(teacher, data, space, rows, device, autocast, num_classes)
            if logits_file is None:  # a new build: the class count is known from the first batch
                num_classes = int(logits.shape[1])
                write_json(build_path, dict(identity, num_classes=num_classes, rows_done=0))
                logits_file = _open_logits(out, (n, views_per_image, num_classes), dtype, 0)
                flat = logits_file.reshape(total, num_classes)
            flat[begin:begin + rows.numel()] = logits.to('cpu', torch.float64).numpy()  # numpy casts to dtype
            end = begin + rows.numel()
            now = time.monotonic()
            if now - last_save >= save_every_s or end == total:
                logits_file.flush()  # the rows first, then the record that they are there
                write_json(build_path, dict(identity, num_classes=num_classes, rows_done=end))
                last_save = now
            if now - last_log >= log_every_s or end == total:
                logger.info(_progress_line(end, total, end - first_row, now - start))
                last_log = now
    finally:
        teacher.train(was_training)
    logits_file.flush()
    metadata = dict(identity, num_classes=num_classes)
    write_json(os.path.join(out, METADATA_FILE), metadata)
    os.remove(build_path)
    return metadata
