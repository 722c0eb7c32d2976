"""``--smoke``: a copy of the constructed config shrunk so that the run ends offline in seconds.

Datasets are replaced elsewhere (:func:`ttm_torchdistill.run.data.synthetic.build_smoke_datasets`, with
:data:`SMOKE_TRAIN_SAMPLES` training samples); here a deep copy of the constructed config is edited: one epoch, tiny
batches, no worker processes, checkpoints redirected into a temporary folder, no pretrained-weight downloads, no
experiment tracker, checkpoints to read that are absent (or remote) replaced by random weights, and CRD/ITRD fitted
to the synthetic data (:mod:`.smoke_features`). The caller's config is left as it was.
"""
import copy
import os
from typing import Any, Dict, List, Tuple

from .smoke_features import smoke_feature_losses
from .walk import iter_loader_configs, iter_train_stage_configs

SMOKE_BATCH_SIZE = 4
SMOKE_TRAIN_SAMPLES = 8  # per training dataset: two steps at the smoke batch size; CRD's memory follows it


def _redirect(path: Any, tmp_dir: str, prefix: str) -> Any:
    if not isinstance(path, str) or not path:
        return path
    return os.path.join(tmp_dir, f'{prefix}_{os.path.basename(path)}')


def _unavailable(path: Any) -> bool:
    """A checkpoint a smoke run cannot read: remote (would be downloaded) or not on disk."""
    if not isinstance(path, str) or not path:
        return False
    return path.startswith(('http://', 'https://')) or not os.path.isfile(os.path.expanduser(path))


def smoke_config(config: Dict[str, Any], tmp_dir: str) -> Tuple[Dict[str, Any], List[str]]:
    """A smoke-run copy of ``config`` and human-readable notes about what was changed.

    :param config: the constructed config (datasets not needed); not modified.
    :param tmp_dir: folder receiving every checkpoint the run writes.
    """
    config = copy.deepcopy(config)
    notes = []
    for where, stage in iter_train_stage_configs(config):
        stage['num_epochs'] = 1
        stage['log_freq'] = 1
        notes += smoke_feature_losses(stage, where, SMOKE_TRAIN_SAMPLES)
        for role in ('teacher', 'student'):
            block = stage.get(role)
            if not isinstance(block, dict):
                continue
            if block.get('dst_ckpt'):
                block['dst_ckpt'] = _redirect(block['dst_ckpt'], tmp_dir, f'{where}.{role}')
            if _unavailable(block.get('src_ckpt')):
                notes.append(f'{where}.{role}.src_ckpt: {block["src_ckpt"]} not available; random weights')
                block['src_ckpt'] = None
    for where, loader_config in iter_loader_configs(config):
        kwargs = loader_config.get('kwargs') or dict()
        loader_config['kwargs'] = kwargs
        if 'batch_size' in kwargs or loader_config.get('batch_sampler') is None:
            kwargs['batch_size'] = min(int(kwargs.get('batch_size') or SMOKE_BATCH_SIZE), SMOKE_BATCH_SIZE)
        kwargs['num_workers'] = 0
        kwargs['pin_memory'] = False
        kwargs.pop('persistent_workers', None)
        kwargs.pop('prefetch_factor', None)
    for name, model_config in (config.get('models') or dict()).items():
        if not isinstance(model_config, dict):
            continue
        if model_config.get('dst_ckpt'):
            model_config['dst_ckpt'] = _redirect(model_config['dst_ckpt'], tmp_dir, name)
        if _unavailable(model_config.get('src_ckpt')):
            notes.append(f'models.{name}.src_ckpt: {model_config["src_ckpt"]} not available; random weights')
            model_config['src_ckpt'] = None
        kwargs = model_config.get('kwargs') or dict()
        # Pretrained torchvision weights would be downloaded: the smoke run checks wiring, not accuracy.
        if kwargs.get('weights') is not None:
            notes.append(f'models.{name}: pretrained weights {kwargs["weights"]} not loaded')
            kwargs['weights'] = None
        if kwargs.get('pretrained') is True:
            notes.append(f'models.{name}: pretrained=True ignored')
            kwargs['pretrained'] = False
    if config.get('tracker'):
        notes.append('tracker disabled')
        config['tracker'] = None
    return config, notes
