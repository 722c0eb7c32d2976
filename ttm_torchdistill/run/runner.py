"""Train, evaluate and resume a torchdistill image-classification config (the body of ``python -m ttm_torchdistill``).

The order follows torchdistill's example runner (seed, config, dependencies, teacher/student, Distillation- or
TrainingBox, epochs, reload best, test) and reuses torchdistill's boxes, loaders, losses and processes; what
differs is listed in the README section "Running": strict checkpoints, teacher in eval mode, atomic best/last
checkpoints with exact resume, gloo/NCCL distributed with the student always DDP-wrapped, per-term progress lines,
and a JSON run summary.
"""
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch.backends import cudnn
from torchdistill.common.constant import LOGGING_FORMAT, def_logger
from torchdistill.common.main_util import import_dependencies, set_seed
from torchdistill.core.distillation import get_distillation_box
from torchdistill.core.training import get_training_box
from torchdistill.datasets.util import build_data_loader
from torchdistill.misc.log import setup_tracker

from .checkpoint import best_checkpoint_epoch, check_same_run, last_ckpt_path, load_last, optional_state, \
    restore_rng_state, run_identity, save_best, save_last, \
    summary_path
from .config import load_config
from .data import build_real_datasets, build_smoke_datasets, check_dataset_ids, num_classes_of
from .distributed import DistContext, all_reduce_sum, any_rank, cleanup, ensure_ddp, init_distributed, unwrap
from .errors import RunError
from .models import build_model, check_checkpoint_paths, check_loss_keys, load_weights
from .progress import EpochProgress, LossTermRecorder, evaluate, format_duration, temperature_stats
from .smoke import apply_smoke, iter_loader_configs, iter_train_stage_configs
from .summary import build_summary, write_summary

logger = def_logger.getChild('ttm_torchdistill.run')


@dataclass
class RunOptions:
    """Parsed command-line options (see :mod:`ttm_torchdistill.cli` for their meaning)."""
    config: str
    device: str = 'cpu'
    run_log: Optional[str] = None
    seed: Optional[int] = None
    start_epoch: int = 0
    test_only: bool = False
    student_only: bool = False
    log_config: bool = False
    disable_cudnn_benchmark: bool = False
    world_size: int = 1
    dist_url: str = 'env://'
    adjust_lr: bool = False
    overrides: List[str] = field(default_factory=list)
    resume: bool = False
    smoke: bool = False
    allow_pickle: bool = False


class _StdoutHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stdout`` is at emit time (stderr stays free for the one-line error)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(ctx: DistContext, run_log: Optional[str]) -> Optional[logging.Handler]:
    root = logging.getLogger()
    if not any(isinstance(h, _StdoutHandler) for h in root.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter(LOGGING_FORMAT, datefmt='%Y/%m/%d %H:%M:%S'))
        root.addHandler(handler)
    root.setLevel(logging.INFO if ctx.is_main else logging.WARNING)
    # torchdistill logs two INFO lines for every YAML tag it executes ("Getting/Calling `X` from `y`"): dozens per
    # config, drowning the progress lines. Its warnings still show.
    logging.getLogger('torchdistill.common.main_util').setLevel(logging.WARNING)
    if run_log and ctx.is_main:
        path = os.path.expanduser(run_log)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        file_handler = logging.FileHandler(path, mode='a')
        file_handler.setFormatter(logging.Formatter(LOGGING_FORMAT))
        root.addHandler(file_handler)
        return file_handler
    return None


def _student_config(models: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    for name in ('student_model', 'model'):
        if isinstance(models.get(name), dict):
            return name, models[name]
    raise RunError('the config\'s `models:` needs a `student_model` (or `model`) entry with key/kwargs/dst_ckpt')


def _check_box_ckpts(config: Dict[str, Any], smoke: bool) -> None:
    """``train.{teacher,student}.src_ckpt`` are loaded by torchdistill, which silently skips missing files."""
    for where, stage in iter_train_stage_configs(config):
        for role in ('teacher', 'student'):
            block = stage.get(role)
            path = block.get('src_ckpt') if isinstance(block, dict) else None
            if isinstance(path, str) and path and not path.startswith(('http://', 'https://')) \
                    and not os.path.isfile(os.path.expanduser(path)):
                if smoke:
                    logger.warning(f'{where}.{role}.src_ckpt: {path} does not exist; ignored (smoke run)')
                    block['src_ckpt'] = None
                else:
                    raise RunError(f'checkpoint not found: {path} ({where}.{role}.src_ckpt)')


def _check_teacher_has_weights(teacher_config: Dict[str, Any], config: Dict[str, Any], smoke: bool) -> None:
    """A teacher without src_ckpt, box-level src_ckpt or pretrained weights would distil random logits."""
    kwargs = teacher_config.get('kwargs') or dict()
    sources = [teacher_config.get('src_ckpt'), kwargs.get('weights'), kwargs.get('pretrained')]
    sources += [(stage.get('teacher') or dict()).get('src_ckpt') for _, stage in iter_train_stage_configs(config)]
    if any(source not in (None, '', False) for source in sources):
        return
    message = ('models.teacher_model has no src_ckpt and no pretrained weights: the student would distil from a '
               'randomly initialised teacher')
    if smoke:
        logger.warning(message + ' (smoke run: allowed)')
        return
    raise RunError(message + '; set models.teacher_model.src_ckpt (e.g. python -m ttm_torchdistill fetch-teachers, '
                   'or train the teacher with its configs/cifar100/ce/ config)')


def _setup_box(teacher, student, datasets, train_config, ctx: DistContext, lr_factor: float):
    try:
        if teacher is None:
            return get_training_box(student, datasets, train_config, ctx.device, ctx.device_ids,
                                    ctx.distributed, lr_factor)
        return get_distillation_box(teacher, student, datasets, train_config, ctx.device, ctx.device_ids,
                                    ctx.distributed, lr_factor)
    except RunError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise RunError(f'cannot set up training from `train:`: {type(exc).__name__}: {exc}') from None


def _student_of(box) -> torch.nn.Module:
    return box.model if hasattr(box, 'model') else box.student_model


def _set_student(box, model) -> None:
    if hasattr(box, 'model'):
        box.model = model
    else:
        box.student_model = model


def _train_one_epoch(box, ctx: DistContext, epoch: int, num_epochs: int, log_freq: int,
                     recorder: LossTermRecorder, tracker, last_path: str) -> EpochProgress:
    loader = box.train_data_loader
    steps = len(loader)
    progress = EpochProgress(epoch + 1, num_epochs, steps)
    for step, (sample_batch, targets, supp_dict) in enumerate(loader, start=1):
        sample_batch, targets = sample_batch.to(ctx.device), targets.to(ctx.device)
        loss = box.forward_process(sample_batch, targets, supp_dict)
        loss_value = loss.item()
        bad = not torch.isfinite(loss).all().item()
        if any_rank(bad, ctx) if ctx.distributed else bad:
            kept = last_path if os.path.isfile(last_path) else 'none (no epoch completed yet)'
            raise RunError(f'non-finite loss ({loss_value}) at epoch {epoch + 1}, step {step}/{steps}; stopped '
                           f'before the update; last good checkpoint: {kept}')
        box.post_forward_process(loss=loss)
        lr = box.optimizer.param_groups[0]['lr']
        progress.update(loss_value, recorder.pop(), sample_batch.shape[0], temperature_stats(box.criterion))
        if step % log_freq == 0 or step == steps:
            logger.info(progress.line(step, lr, ctx.world_size))
            if tracker is not None:
                tracker.log({'train/loss': loss_value, 'train/lr': lr}, step=epoch * steps + step)
    return progress


def _resume(box, student: torch.nn.Module, ctx: DistContext, last_path: str, dst_ckpt: str,
            identity: Dict[str, Any], state: Dict[str, Any]) -> int:
    """Restore model, optimizer, scheduler, history and RNG from the last-epoch checkpoint; returns its epoch."""
    ckpt = load_last(last_path)
    for note in check_same_run(ckpt.get('identity'), identity, last_path):
        logger.warning(f'--resume: {note}')
    student.load_state_dict(ckpt['model'])
    optional_state(box.optimizer, ckpt['optimizer'], 'optimizer', last_path)
    optional_state(box.lr_scheduler, ckpt['lr_scheduler'], 'lr_scheduler', last_path)
    if ckpt.get('world_size', 1) != ctx.world_size:
        logger.warning(f'--resume: checkpoint written with world size {ckpt.get("world_size")}, '
                       f'now {ctx.world_size}: the run will not be bitwise identical')
    state['history'] = list(ckpt['history'])
    state['best'] = dict(ckpt['best'])
    state['previous_wall_time_s'] = float(ckpt.get('wall_time_s', 0.0))
    restore_rng_state(ckpt['rng'])
    if ckpt['epoch'] >= box.num_epochs:
        raise RunError(f'--resume: {last_path} already holds all {box.num_epochs} epochs; nothing to resume')
    # The last checkpoint is written before the best one, so a kill between the two leaves dst_ckpt one
    # improvement behind; that improvement was the last completed epoch, whose weights the last checkpoint holds.
    best_epoch = state['best']['epoch']
    if ctx.is_main and best_epoch is not None and best_epoch != best_checkpoint_epoch(dst_ckpt):
        if best_epoch == ckpt['epoch']:
            save_best(dst_ckpt, ckpt['model'], best_epoch, state['best']['top1'], state['best']['top5'])
            logger.info(f'--resume: restored the best checkpoint of epoch {best_epoch} at {dst_ckpt}')
        else:
            logger.warning(f'--resume: {dst_ckpt} does not hold the best epoch {best_epoch}; the final test uses '
                           f'whatever it holds')
    logger.info(f'Resuming from {last_path} at epoch {ckpt["epoch"] + 1}/{box.num_epochs}')
    return ckpt['epoch']


def _train(box, student: torch.nn.Module, ctx: DistContext, opts: RunOptions, train_config: Dict[str, Any],
           dst_ckpt: str, tracker, state: Dict[str, Any]) -> None:
    """Epoch loop with validation, best/last checkpoints and resume; fills ``state`` (history, best).

    :param student: the student as built from ``models:`` (unwrapped). It is what is validated and saved even
        when the box trains a redesigned module around it (``sequential``, auxiliary wrappers), as in
        torchdistill's example runner.
    """
    last_path = last_ckpt_path(dst_ckpt)
    identity = run_identity(opts.config, opts.seed, opts.overrides)
    start_epoch = opts.start_epoch
    if opts.resume:
        start_epoch = _resume(box, student, ctx, last_path, dst_ckpt, identity, state)
    elif os.path.isfile(last_path) and ctx.is_main:
        logger.warning(f'starting a new run: {last_path} (and {dst_ckpt}) of an earlier run will be overwritten; '
                       f'use --resume to continue that run instead')
    if box.val_data_loader is None:
        raise RunError('train.val_data_loader is required (validation picks the best checkpoint)')
    log_freq = max(int(train_config.get('log_freq', 100) or 1), 1)
    recorder = LossTermRecorder(box.criterion)
    session_start = time.time()
    try:
        for epoch in range(start_epoch, box.num_epochs):
            epoch_start = time.time()
            box.pre_epoch_process(epoch=epoch)
            progress = _train_one_epoch(box, ctx, epoch, box.num_epochs, log_freq, recorder, tracker, last_path)
            lr = box.optimizer.param_groups[0]['lr']
            top1, top5, _ = evaluate(student, box.val_data_loader, ctx)
            # Per-rank mean of the per-step losses, averaged over ranks.
            train_loss = progress.mean_loss
            if ctx.distributed:
                train_loss = all_reduce_sum([train_loss], ctx)[0] / ctx.world_size
            epoch_time = time.time() - epoch_start
            state['history'].append({'epoch': epoch + 1, 'lr': lr, 'train_loss': train_loss,
                                     'val_top1': top1, 'val_top5': top5, 'epoch_time_s': epoch_time})
            improved = top1 > state['best']['top1']
            if improved:
                state['best'] = {'epoch': epoch + 1, 'top1': top1, 'top5': top5}
            logger.info(f'Epoch {epoch + 1}/{box.num_epochs} done in {format_duration(epoch_time)}: train loss '
                        f'{train_loss:.4f}  val top-1 {top1:.2f}  top-5 {top5:.2f}  (best top-1 '
                        f'{state["best"]["top1"]:.2f} at epoch {state["best"]["epoch"]}'
                        + (', saved' if improved else '') + ')')
            if tracker is not None:
                tracker.log({'val/acc1': top1, 'val/acc5': top5, 'epoch': epoch + 1})
            box.post_epoch_process(metrics=top1)
            # A multi-stage box rebuilds its student at a stage change, unwrapped on CPU: wrap it again.
            _set_student(box, ensure_ddp(_student_of(box), ctx))
            if ctx.is_main:
                # last before best: see _resume for how a kill between the two is repaired
                wall = state['previous_wall_time_s'] + time.time() - session_start
                save_last(last_path, student.state_dict(), box.optimizer, box.lr_scheduler, epoch + 1,
                          state['best'], state['history'], ctx.world_size, wall, identity)
                if improved:
                    save_best(dst_ckpt, student.state_dict(), epoch + 1, top1, top5)
            if ctx.distributed:
                torch.distributed.barrier()
    finally:
        recorder.remove()
        state['wall_time_s'] = state['previous_wall_time_s'] + time.time() - session_start


def _test_loader(config, datasets, ctx):
    test = config.get('test') or dict()
    loader_config = test.get('test_data_loader')
    if not isinstance(loader_config, dict):
        return None
    return build_data_loader(datasets[loader_config['dataset_id']], loader_config, ctx.distributed)


def _test(config, datasets, ctx: DistContext, teacher, student) -> Dict[str, Any]:
    """Top-1/top-5 of the student (and the teacher, when given) on the test loader."""
    test = {'student': None, 'teacher': None}
    test_loader = _test_loader(config, datasets, ctx)
    if test_loader is None:
        logger.warning('no test.test_data_loader in the config: skipping the test')
        return test
    cudnn.benchmark = False
    cudnn.deterministic = True
    models = config['models']
    for role, model, key in (('teacher', teacher, 'teacher_model'), ('student', student, None)):
        if model is None:
            continue
        top1, top5, _ = evaluate(unwrap(model), test_loader, ctx)
        test[role] = {'top1': top1, 'top5': top5}
        name = models[key]['key'] if key else _student_config(models)[1]['key']
        logger.info(f'[{role.capitalize()}: {name}] test top-1 {top1:.2f}  top-5 {top5:.2f}')
    return test


def _format_metrics(metrics: Optional[Dict[str, Any]]) -> str:
    if not metrics or metrics.get('top1') is None:
        return 'n/a'
    return f"top-1 {metrics['top1']:.2f} top-5 {metrics['top5']:.2f}"


def _write_summary(opts: RunOptions, config, state: Dict[str, Any], test: Dict[str, Any], dst_ckpt: str,
                   world_size: int) -> None:
    """Log the end-of-run summary and write it as JSON next to the best checkpoint."""
    checkpoints = {'best': dst_ckpt, 'last': last_ckpt_path(dst_ckpt)}
    summary = build_summary(opts.config, config.get('reference'), run_identity(opts.config, opts.seed, opts.overrides),
                            world_size, state.get('planned_epochs'), state['history'], state['best'], test,
                            checkpoints, state['wall_time_s'])
    json_path = summary_path(dst_ckpt)
    write_summary(json_path, summary)
    logger.info(f'Summary: student best val {_format_metrics(summary["best"])} (epoch {summary["best"]["epoch"]}); '
                f'last val {_format_metrics(summary["last"])} (epoch {summary["last"]["epoch"]}); '
                f'test {_format_metrics(test["student"])}; teacher test {_format_metrics(test["teacher"])}; '
                f'wall time {format_duration(state["wall_time_s"])}')
    logger.info(f'Checkpoints: best {dst_ckpt}  last {checkpoints["last"]}  summary {json_path}')


def run(opts: RunOptions) -> int:
    """Run one config; returns the process exit code (errors are raised as :class:`RunError`)."""
    if opts.resume and opts.start_epoch:
        raise RunError('--resume takes the epoch from the last-epoch checkpoint; drop --start_epoch')
    wall_start = time.time()
    ctx = init_distributed(opts.device, opts.world_size, opts.dist_url)
    file_handler = _setup_logging(ctx, opts.run_log)
    smoke_dir = None
    tracker = None
    try:
        cudnn.benchmark = not opts.disable_cudnn_benchmark
        set_seed(opts.seed)
        loaded = load_config(opts.config, opts.overrides)
        config = loaded.config
        try:
            import_dependencies(config.get('dependencies'))
        except ImportError as exc:
            raise RunError(f'`dependencies:` of {opts.config}: {exc}') from None
        teacher_config = (config.get('models') or dict()).get('teacher_model')
        if isinstance(teacher_config, dict):  # before the smoke edits, which switch pretrained weights off
            _check_teacher_has_weights(teacher_config, config, opts.smoke)
        if opts.smoke:
            smoke_dir = tempfile.mkdtemp(prefix='ttm_torchdistill_smoke_') if ctx.is_main else None
            if ctx.distributed:
                holder = [smoke_dir]
                torch.distributed.broadcast_object_list(holder, src=0)
                smoke_dir = holder[0]
            for note in apply_smoke(config, smoke_dir):
                logger.info(f'smoke: {note}')
            train_ids = {cfg.get('dataset_id') for where, cfg in iter_loader_configs(config)
                         if where.endswith('train_data_loader')}
            datasets = build_smoke_datasets(loaded, num_classes_of(config), train_ids)
            _check_box_ckpts(config, smoke=True)
        else:
            # fail on a missing checkpoint before datasets are built (and possibly downloaded)
            check_checkpoint_paths(config.get('models') or dict())
            _check_box_ckpts(config, smoke=False)
            datasets = build_real_datasets(loaded)
        config['datasets'] = datasets
        check_dataset_ids(config, datasets)
        check_loss_keys(config)
        models = config.get('models')
        if not isinstance(models, dict):
            raise RunError(f'{opts.config} has no `models:` mapping')
        student_name, student_config = _student_config(models)
        dst_ckpt = student_config.get('dst_ckpt')
        if not dst_ckpt:
            raise RunError(f'models.{student_name}.dst_ckpt is required (where the best student is saved)')
        dst_ckpt = os.path.expanduser(dst_ckpt)
        teacher_config = models.get('teacher_model')
        teacher = None
        if isinstance(teacher_config, dict):
            teacher = build_model(teacher_config, 'models.teacher_model', config, ctx.distributed)
            load_weights(teacher, teacher_config.get('src_ckpt'), 'models.teacher_model.src_ckpt', opts.smoke, logger,
                         opts.allow_pickle)
            teacher = teacher.to(ctx.device)
        student = build_model(student_config, f'models.{student_name}', config, ctx.distributed)
        load_weights(student, student_config.get('src_ckpt'), f'models.{student_name}.src_ckpt', opts.smoke, logger,
                     opts.allow_pickle)
        student = student.to(ctx.device)
        if opts.log_config:
            logger.info(f'config: {config}')
        train_config = config.get('train')
        state: Dict[str, Any] = {'history': [], 'best': {'epoch': None, 'top1': -1.0, 'top5': None},
                                 'previous_wall_time_s': 0.0, 'wall_time_s': 0.0}
        if not opts.test_only:
            if not isinstance(train_config, dict):
                raise RunError(f'{opts.config} has no `train:` block (use -test_only to only evaluate)')
            if teacher is not None and 'pre_epoch_process' not in train_config and 'stage1' not in train_config:
                logger.warning('train.pre_epoch_process is not set: torchdistill\'s default leaves the teacher in '
                               'train mode; set it to \'eval_teacher_pre_epoch_process\'')
            tracker = setup_tracker(config.get('tracker'), run_config={'config': opts.config}) \
                if config.get('tracker') else None
            lr_factor = ctx.world_size if ctx.distributed and opts.adjust_lr else 1
            box = _setup_box(teacher, student, datasets, train_config, ctx, lr_factor)
            _set_student(box, ensure_ddp(_student_of(box), ctx))
            logger.info('Start training')
            _train(box, unwrap(student), ctx, opts, train_config, dst_ckpt, tracker, state)
            state['planned_epochs'] = box.num_epochs
            box.clean_modules()
        # Test: best student (and teacher) on the test loader.
        student_module = unwrap(student)
        if os.path.isfile(dst_ckpt):
            load_weights(student_module, dst_ckpt, f'models.{student_name}.dst_ckpt', opts.smoke, logger)
        elif opts.test_only and not opts.smoke:
            raise RunError(f'-test_only: no trained student at {dst_ckpt} (models.{student_name}.dst_ckpt)')
        test = _test(config, datasets, ctx, teacher if not opts.student_only else None, student_module)
        if not opts.test_only and ctx.is_main:
            _write_summary(opts, config, state, test, dst_ckpt, ctx.world_size)
        if opts.smoke:
            logger.info(f'Smoke run of {opts.config} passed in {time.time() - wall_start:.1f}s '
                        f'(nothing written outside a temporary folder)')
        return 0
    finally:
        if tracker is not None:
            tracker.finish()
        if smoke_dir is not None and ctx.is_main:
            shutil.rmtree(smoke_dir, ignore_errors=True)
        if file_handler is not None:
            logging.getLogger().removeHandler(file_handler)
            file_handler.close()
        cleanup(ctx)
