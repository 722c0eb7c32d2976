"""The first stage of a run: read the config, check it, build the datasets and the models.

Everything a later stage needs is returned in one :class:`~.prepared.Prepared` object; the config is not edited
after this stage (``--smoke`` works on a copy, see :mod:`ttm_torchdistill.run.config.smoke`).
"""
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn
from torchdistill.common.main_util import import_dependencies, set_seed

from ..errors import RunError
from .config import preflight
from .config.dataset_nodes import test_only_ids
from .config.holdout import fit_crd_to_training_part, holdout_record, holdout_rewrite
from .config.loading import LoadedConfig, load_config
from .config.runtime import Runtime, apply_model_runtime, check_device, resolve_runtime, split_runtime_overrides
from .config.smoke import SMOKE_TRAIN_SAMPLES, smoke_config
from .config.walk import (
    ConfigParts, planned_epochs, read_parts, student_entry, student_num_classes, train_dataset_ids,
)
from .data.real_datasets import build_real_datasets
from .data.fast_path import CachedTeacher, DeviceData, check_device_views, open_teacher_cache, two_view_teacher
from .data.synthetic import build_smoke_datasets
from .attempts import another_runs_files
from .machine.context import DistContext, on_leaders, rank0_first
from .machine.fit_to_machine import box_device_ids, fit_config_to_machine, sync_bn_applies
from .machine.seeding import RunSeed, resolve_seed
from .model_loading.build import build_model
from .model_loading.weights import load_weights
from .options import RunOptions
from .prepared import Prepared
from .summary import experiment_name
from .track import check_installed, plan_tracking
from .train.checkpoint import check_same_run, last_ckpt_path, load_last_on_rank0, run_identity

logger = logging.getLogger('ttm_torchdistill.run')


def _import_plugins(loaded: LoadedConfig) -> None:
    try:
        import_dependencies(loaded.config.get('dependencies'))
    except ImportError as exc:
        raise RunError(f'`dependencies:` of {loaded.path}: {exc}') from None


def _shared_temp_dir(ctx: DistContext) -> str:
    """A temporary folder made by rank 0 and known to every rank."""
    folder = tempfile.mkdtemp(prefix='ttm_torchdistill_smoke_') if ctx.is_main else None
    if ctx.distributed:
        holder = [folder]
        torch.distributed.broadcast_object_list(holder, src=0)
        folder = holder[0]
    return folder


def _build_and_load(model_config: Dict[str, Any], where: str, config: Dict[str, Any], ctx: DistContext,
                    allow_pickle: bool) -> nn.Module:
    model = build_model(model_config, where, config, sync_bn_applies(ctx))
    load_weights(model, model_config.get('src_ckpt'), f'{where}.src_ckpt', logger, allow_pickle)
    return model.to(ctx.device)


def _device_data(runtime: Runtime, datasets: Dict[str, Any], ctx: DistContext, seed: int) -> Optional[DeviceData]:
    if not runtime.device_data:
        return None
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    return DeviceData(datasets, ctx, seed, memory_format)


def _cached_teacher(runtime: Runtime, parts: ConfigParts, device_data: Optional[DeviceData],
                    ctx: DistContext, seed: RunSeed, teacher: Optional[nn.Module]) -> Optional[CachedTeacher]:
    """The stand-in teacher reading ``runtime.teacher_cache``, checked against this run's data (None without a cache;
    the config was checked by ``preflight.check_teacher_cache``); with MLKD's two views it runs ``teacher`` on the
    strong view."""
    if not runtime.teacher_cache:
        return None
    config, (where, first) = parts.config, parts.stages[0]
    train_data = device_data.dataset(first['train_data_loader']['dataset_id'], f'{where}.train_data_loader')
    cache = open_teacher_cache(runtime.teacher_cache, config, train_data, planned_epochs(config), ctx, seed.drawn)
    if two_view_teacher(config):
        logger.info(f'Teacher logits of the weak view read from the cache {runtime.teacher_cache}; the teacher network '
                    f'runs on the strong view')
        return CachedTeacher(cache, strong_teacher=teacher)
    logger.info(f'Teacher logits read from the cache {runtime.teacher_cache} (the teacher network is not run while '
                f'training)')
    return CachedTeacher(cache)


def _seed_the_run(opts: RunOptions, ctx: DistContext, resume_checkpoint: Optional[Dict[str, Any]]) -> RunSeed:
    """Resolve the run's one seed and seed python, numpy and torch with it (before any model is built)."""
    seed = resolve_seed(opts.seed, (resume_checkpoint or dict()).get('identity'), ctx)
    if seed.drawn and resume_checkpoint is None:
        logger.info(f'No --seed given: drew seed {seed.value} (rank 0, shared by every rank); rerun with '
                    f'--seed {seed.value} to reproduce this run')
    set_seed(seed.value)
    return seed


def prepare(opts: RunOptions, ctx: DistContext) -> Prepared:
    """Load and check the config, then build datasets and models (cheap checks first, so a typo costs seconds)."""
    overrides, runtime_set = split_runtime_overrides(opts.overrides)
    loaded = load_config(opts.config, overrides, rewrite=holdout_rewrite(runtime_set, opts.runtime_flags, opts.smoke))
    _import_plugins(loaded)
    runtime = resolve_runtime(loaded.config.get('runtime'), runtime_set, opts.runtime_flags)
    check_device(runtime, ctx.device.type, opts.data_parallel)
    config = loaded.config
    parts = read_parts(config)  # what the checks read, found once (again below only for --smoke's copy)
    # On the config as written: the smoke edits below switch pretrained weights off.
    preflight.check_teacher_has_weights(parts, opts.smoke)
    smoke_dir = _shared_temp_dir(ctx) if opts.smoke else None
    try:
        return _prepare_checked(loaded, parts, opts, ctx, smoke_dir, runtime)
    except BaseException:
        if smoke_dir is not None and ctx.is_main:
            shutil.rmtree(smoke_dir, ignore_errors=True)
        raise


def _prepare_checked(loaded: LoadedConfig, parts: ConfigParts, opts: RunOptions, ctx: DistContext,
                     smoke_dir: Optional[str], runtime: Runtime) -> Prepared:
    config = loaded.config
    if smoke_dir is not None:
        config, notes = smoke_config(config, smoke_dir)
        parts = read_parts(config)  # the smoke copy's own stages and loaders
        for note in notes:
            logger.info(f'smoke: {note}')
    student_name, dst_ckpt = _check_config(parts, opts, runtime)
    preflight.check_dataset_layout(loaded)
    if runtime.device_data:
        preflight.check_device_data_datasets(loaded, parts)
    # --resume: the checkpoint is read (by rank 0, for every rank) before anything is built: nothing to resume is a
    # cheap error, and a run started without --seed continues with the seed it recorded.
    resume_checkpoint = load_last_on_rank0(last_ckpt_path(dst_ckpt), ctx, opts.allow_pickle) if opts.resume else None
    seed = _seed_the_run(opts, ctx, resume_checkpoint)
    identity = run_identity(opts.config, seed.value, opts.overrides, seed.drawn, loaded.tree)
    if resume_checkpoint is not None:  # a changed config is refused here, before anything is built
        _check_resumed_run(resume_checkpoint, identity, loaded.tree, dst_ckpt, opts, ctx)
    elif not (opts.test_only or opts.smoke or opts.overwrite):
        on_leaders(lambda: _check_not_another_run(dst_ckpt, identity, opts, student_name), ctx, ctx.is_main,
                   f'checking {dst_ckpt}')
    track_plan = None if opts.smoke or opts.test_only or not opts.tracking else \
        plan_tracking(config.get('tracker'), runtime, experiment_name(opts.config)[0], seed.value, opts.overrides)
    check_installed(track_plan)  # a missing tracker package is a one-line error before anything is built
    for note in fit_config_to_machine(config, ctx, opts.data_parallel, amp=runtime.amp):
        if opts.log_fitting:
            logger.info(f'fitted to this machine: {note}')
    datasets, build_test_set = _build_datasets(loaded, parts, opts, ctx)
    for note in fit_crd_to_training_part(config, datasets) if runtime.holdout and not opts.smoke else ():
        logger.info(f'holdout: {note}')
    teacher, student = _build_models(parts, student_name, runtime, opts, ctx)
    if opts.log_config:
        logger.info(f'config: {config}')
    device_data = _device_data(runtime, datasets, ctx, seed.value)
    cached_teacher = _cached_teacher(runtime, parts, device_data, ctx, seed, teacher)
    return Prepared(config=config, datasets=datasets, teacher=teacher, student=student, student_name=student_name,
                    dst_ckpt=dst_ckpt, identity=identity, config_tree=loaded.tree, seed=seed,
                    resume_checkpoint=resume_checkpoint, runtime=runtime, device_data=device_data,
                    cached_teacher=cached_teacher, smoke_dir=smoke_dir,
                    device_ids=box_device_ids(ctx, opts.data_parallel), build_test_set=build_test_set,
                    holdout=holdout_record(runtime.holdout, runtime.holdout_seed, config, datasets),
                    track_plan=track_plan)


def _check_resumed_run(ckpt: Dict[str, Any], identity: Dict[str, Any], tree: Any, dst_ckpt: str, opts: RunOptions,
                       ctx: DistContext) -> None:
    notes = check_same_run(ckpt.get('identity'), identity, last_ckpt_path(dst_ckpt), ckpt.get('config_tree'), tree,
                           opts.continue_changed)
    if ctx.is_main:
        for level, note in notes:
            logger.log(level, f'--resume: {note}')


def _check_not_another_run(dst_ckpt: str, identity: Dict[str, Any], opts: RunOptions, student_name: str) -> None:
    """A new run must not overwrite another experiment's checkpoints and summary (a copied config keeps the original's
    ``dst_ckpt``); this experiment's own earlier run is overwritten with a warning (:mod:`.train.resume`)."""
    other = another_runs_files(dst_ckpt, opts.config, identity.get('config_digest'))
    if other is not None:
        raise RunError(f'{dst_ckpt} holds {other}; this run is {opts.config} (config digest '
                       f'{(identity.get("config_digest") or "")[:12]}) and would overwrite that run\'s checkpoints and '
                       f'summary: give this config its own dst_ckpt (models.{student_name}.dst_ckpt in the config, '
                       f'or --set models.{student_name}.dst_ckpt=...), '
                       f'or pass --overwrite to replace that run')


def _check_config(parts: ConfigParts, opts: RunOptions, runtime: Runtime) -> Tuple[str, str]:
    """Every check that reads the config alone; returns the student's entry name and its ``dst_ckpt`` (expanded)."""
    student_name, student_config = student_entry(parts.config)
    dst_ckpt = student_config.get('dst_ckpt')
    if not dst_ckpt:
        raise RunError(f'models.{student_name}.dst_ckpt is required (where the best student is saved)')
    preflight.check_trainable(parts, opts.test_only)
    preflight.check_checkpoint_paths(parts)
    preflight.check_loss_keys(parts)
    preflight.check_components(parts.config)
    if runtime.device_data:
        check_device_views(parts)
    preflight.check_teacher_cache(parts, runtime)
    return student_name, os.path.expanduser(dst_ckpt)


def _build_datasets(loaded: LoadedConfig, parts: ConfigParts, opts: RunOptions, ctx: DistContext):
    """The datasets training reads, and a function that builds the rest (the test loader's) for the final test."""
    if opts.smoke:
        datasets = build_smoke_datasets(loaded, student_num_classes(parts.config), train_dataset_ids(parts.config),
                                        train_samples=SMOKE_TRAIN_SAMPLES)
        preflight.check_dataset_ids(parts, datasets)
        return datasets, None
    loaders = dict(parts.loaders)
    test_ids = {c.get('dataset_id') for where, c in loaders.items() if where.startswith('test.')}
    later = test_only_ids(loaded, {c.get('dataset_id') for where, c in loaders.items()
                                   if not where.startswith('test.')}, test_ids)
    # Datasets may download and extract into a folder shared by processes and nodes: rank 0 first.
    eager = [dataset_id for dataset_id, _ in loaded.dataset_nodes if dataset_id not in later]
    datasets = rank0_first(lambda: build_real_datasets(loaded, eager), ctx, 'building the datasets')
    preflight.check_dataset_ids(parts, {**datasets, **{i: None for i in later}})
    if not later:
        return datasets, None
    return datasets, lambda: rank0_first(lambda: build_real_datasets(loaded, later), ctx, 'building the test set')


def _build_models(parts: ConfigParts, student_name: str, runtime: Runtime, opts: RunOptions,
                  ctx: DistContext) -> Tuple[Optional[nn.Module], nn.Module]:
    config, teacher_config = parts.config, parts.teacher
    teacher = None if teacher_config is None else \
        _build_and_load(teacher_config, 'models.teacher_model', config, ctx, opts.allow_pickle)
    student = _build_and_load(config['models'][student_name], f'models.{student_name}', config, ctx,
                              opts.allow_pickle)
    apply_model_runtime(student, runtime, compile_now=not ctx.distributed)  # else compiled inside DDP (training)
    if teacher is not None:
        apply_model_runtime(teacher, runtime)
    return teacher, student
