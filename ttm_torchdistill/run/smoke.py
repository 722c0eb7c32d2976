"""``--smoke``: shrink a loaded config so that it runs end to end offline in seconds.

Datasets are replaced elsewhere (:func:`ttm_torchdistill.run.data.build_smoke_datasets`); here the constructed
config is edited: one epoch, tiny batches, no worker processes, checkpoints redirected into a temporary folder,
no pretrained-weight downloads, no experiment tracker.
"""
import os
from typing import Any, Dict, Iterator, List, Tuple

SMOKE_BATCH_SIZE = 4


def iter_train_stage_configs(config: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``('train', train)`` or, for multi-stage configs, ``('train.stage1', ...)``, ... ."""
    train = config.get('train') or dict()
    stages = [key for key in train if key.startswith('stage') and isinstance(train[key], dict)]
    if stages:
        for key in stages:
            yield f'train.{key}', train[key]
    elif train:
        yield 'train', train


def iter_loader_configs(config: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Every data loader config with its dotted location."""
    for where, stage in iter_train_stage_configs(config):
        for name in ('train_data_loader', 'val_data_loader'):
            if isinstance(stage.get(name), dict):
                yield f'{where}.{name}', stage[name]
    test = config.get('test') or dict()
    if isinstance(test.get('test_data_loader'), dict):
        yield 'test.test_data_loader', test['test_data_loader']


def _redirect(path: Any, tmp_dir: str, prefix: str) -> Any:
    if not isinstance(path, str) or not path:
        return path
    return os.path.join(tmp_dir, f'{prefix}_{os.path.basename(path)}')


def apply_smoke(config: Dict[str, Any], tmp_dir: str) -> List[str]:
    """Edit ``config`` in place for a smoke run; returns human-readable notes about what was changed.

    :param config: the constructed config (datasets not needed).
    :param tmp_dir: folder receiving every checkpoint the run writes.
    """
    notes = []
    for where, stage in iter_train_stage_configs(config):
        stage['num_epochs'] = 1
        stage['log_freq'] = 1
        for role in ('teacher', 'student'):
            block = stage.get(role)
            if isinstance(block, dict) and block.get('dst_ckpt'):
                block['dst_ckpt'] = _redirect(block['dst_ckpt'], tmp_dir, f'{where}.{role}')
    for where, loader_config in iter_loader_configs(config):
        kwargs = loader_config.setdefault('kwargs', dict()) or dict()
        loader_config['kwargs'] = kwargs
        if 'batch_size' in kwargs or loader_config.get('batch_sampler') is None:
            kwargs['batch_size'] = min(int(kwargs.get('batch_size') or SMOKE_BATCH_SIZE), SMOKE_BATCH_SIZE)
        kwargs['num_workers'] = 0
        kwargs['pin_memory'] = False
        kwargs.pop('persistent_workers', None)
        kwargs.pop('prefetch_factor', None)
    models = config.get('models') or dict()
    for name, model_config in models.items():
        if not isinstance(model_config, dict):
            continue
        if model_config.get('dst_ckpt'):
            model_config['dst_ckpt'] = _redirect(model_config['dst_ckpt'], tmp_dir, name)
        kwargs = model_config.get('kwargs') or dict()
        # Pretrained torchvision weights would be downloaded: the smoke run checks wiring, not accuracy.
        if kwargs.get('weights') is not None:
            notes.append(f'models.{name}: pretrained weights {kwargs["weights"]} not loaded (smoke run)')
            kwargs['weights'] = None
        if kwargs.get('pretrained') is True:
            notes.append(f'models.{name}: pretrained=True ignored (smoke run)')
            kwargs['pretrained'] = False
    if config.get('tracker'):
        notes.append('tracker disabled (smoke run)')
        config['tracker'] = None
    return notes
