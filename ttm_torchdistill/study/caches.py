"""Which teacher cache a run needs: the one decision, :func:`cache_for`, and what building a cache takes.

With ``runtime.teacher_cache: auto`` (and ``device_data``) the study builds each needed teacher-logit cache once
and every run that can use it reads it (``--teacher-cache``). Two kinds:

* ``complete`` (``cache-teacher --views all``), chosen whenever the training transform's views can all be listed
  (CIFAR's crop and flip: 162 views per image): the teacher's logits on every view of every image, which serve
  every seed and any number of epochs. Its key is the teacher checkpoint, the teacher model and the training data
  (its YAML: class, root, transform): one cache per teacher for a whole table.
* ``per_seed`` (``cache-teacher --seed S --epochs N``) otherwise, or when the study asks for it
  (``teacher_cache: per_seed``): one seed's augmentation stream, keyed by the same and the seed, holding the most
  epochs any of its runs trains.
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from . import runner_api
from .runner_api import ConfigFacts

#: Folder of a cache below the study folder, and of its logits below that.
CACHES_DIR = 'caches'
LOGITS_DIR = 'logits'


@dataclass(frozen=True)
class CacheNeed:
    """A teacher cache that some runs read.

    :param key: the folder name below ``<out>/caches``: teacher model key, seed, hash of what the cache depends on.
    :param kind: ``'complete'`` (``cache-teacher --views all``) or ``'per_seed'`` (``--seed S --epochs N``).
    :param folder: ``<out>/caches/<key>``; the cache itself is its ``logits`` folder.
    :param config: a config of the runs that read it (any of them: the key holds all they share).
    :param overrides: that run's ``--set`` overrides (the teacher and data are the same for all its runs).
    :param seed: the seed of the augmentation stream (None for a complete cache).
    :param epochs: epochs to hold (None for a complete cache).
    :param dtype: storage dtype.
    """
    key: str
    kind: str
    folder: str
    config: str
    overrides: Tuple[str, ...]
    seed: Optional[int]
    epochs: Optional[int]
    dtype: str

    @property
    def logits_dir(self) -> str:
        return os.path.join(self.folder, LOGITS_DIR)

    def build_argv(self, python: str) -> List[str]:
        """The ``cache-teacher`` command that writes this cache."""
        return runner_api.cache_teacher_argv(python, self.config, self.seed, list(self.overrides), self.logits_dir,
                                             self.epochs, self.dtype)

    def with_epochs(self, epochs: Optional[int]) -> 'CacheNeed':
        """The same cache holding at least ``epochs`` (a complete cache holds every epoch already)."""
        if self.epochs is None or epochs is None:
            return self
        return CacheNeed(self.key, self.kind, self.folder, self.config, self.overrides, self.seed,
                         max(self.epochs, epochs), self.dtype)


#: ``runtime.teacher_cache`` values that make the study build the caches.
STUDY_CACHE_MODES = ('auto', 'per_seed')


def no_cache_reason(mode: Optional[str], facts: ConfigFacts) -> Optional[str]:
    """Why a run reads no cache made by the study (None when it does)."""
    if mode not in STUDY_CACHE_MODES:
        return 'runtime.teacher_cache is not auto'
    if facts.device_data_refusal is not None:  # device_data: auto left it on torchdistill's loader
        return f'the cache follows the device data path, which refuses it: {facts.device_data_refusal}'
    if facts.teacher_model is None:
        return 'the config has no teacher'
    if facts.teacher_ckpt is None:
        return 'the teacher has no local src_ckpt'
    if facts.cache_refusal is not None:
        return facts.cache_refusal
    return None


def cache_for(mode: Optional[str], out: str, config: str, overrides: Tuple[str, ...], seed: int,
              facts: ConfigFacts, dtype: str) -> Optional[CacheNeed]:
    """The cache the run of ``config`` with ``overrides`` and ``seed`` reads, or None (see :func:`no_cache_reason`).

    This is the one place that decides a run's cache: its key, folder and build command.
    """
    if no_cache_reason(mode, facts) is not None:
        return None
    complete = mode == 'auto' and facts.views_refusal is None
    real, size, mtime = runner_api.teacher_file_identity(facts.teacher_ckpt)
    depends_on = {'kind': 'complete' if complete else 'per_seed', 'teacher_ckpt': [real, size, mtime],
                  'teacher_model': facts.teacher_model, 'train_data': facts.train_data, 'dtype': dtype}
    if not complete:
        depends_on['seed'] = seed
    digest = hashlib.sha256(json.dumps(depends_on, sort_keys=True, default=str).encode()).hexdigest()[:10]
    # the teacher's model key names the folder (checkpoint files are often all called ckpt_epoch_240.pth)
    name = re.sub(r'[^A-Za-z0-9_.-]', '_', str(facts.teacher_model.get('key') or 'teacher'))
    key = f'{name}-all-views-{digest}' if complete else f'{name}-seed{seed}-{digest}'
    kept = tuple(o for o in overrides if not o.startswith('runtime.'))
    if complete:
        return CacheNeed(key, 'complete', os.path.join(out, CACHES_DIR, key), config, kept, None, None, dtype)
    return CacheNeed(key, 'per_seed', os.path.join(out, CACHES_DIR, key), config, kept, seed, facts.planned_epochs,
                     dtype)
