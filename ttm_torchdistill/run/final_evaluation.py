"""The test stage: the best student (and the teacher) on the test loader in float32, and the JSON summary of the run."""
import dataclasses
import logging
import os
import time
from typing import Any, Dict, Optional

from torch.backends import cudnn
from torchdistill.datasets.util import build_data_loader

from ..errors import RunError
from .machine.context import DistContext, all_reduce_sum, broadcast_state, on_leaders
from .model_loading.weights import load_weights
from .options import RunOptions
from .prepared import Prepared
from .config.walk import iter_train_stage_configs
from .summary import build_summary, write_summary
from .train.checkpoint import last_ckpt_path, summary_path
from .train.evaluation import evaluate
from .console import format_duration
from .train.run_state import RunState

logger = logging.getLogger('ttm_torchdistill.run')


def _test_loader(prepared: Prepared, ctx: DistContext):
    loader_config = (prepared.config.get('test') or dict()).get('test_data_loader')
    if not isinstance(loader_config, dict):
        return None
    if prepared.build_test_set is not None:  # first read of the test set: training is over
        prepared.datasets.update(prepared.build_test_set())
        prepared.build_test_set = None
    if prepared.device_data is not None:
        return prepared.device_data.loader(loader_config, 'test.test_data_loader')
    return build_data_loader(prepared.datasets[loader_config['dataset_id']], loader_config, ctx.distributed)


def _rank0_has(path: str, ctx: DistContext) -> bool:
    """Whether rank 0 sees ``path``; every rank gets rank 0's answer."""
    found = os.path.isfile(path) if ctx.is_main else False
    if ctx.distributed:
        found = all_reduce_sum([1.0 if found else 0.0], ctx)[0] > 0
    return found


def _load_best(prepared: Prepared, opts: RunOptions, ctx: DistContext) -> None:
    """Put the best student into every rank's model.

    Rank 0 wrote the checkpoint and reads it; the other ranks receive its tensors by broadcast. Reading the file
    on every rank would let ranks on another node without a shared filesystem test their last-epoch weights, and
    the all-reduced accuracy would mix the two.
    """
    where = f'models.{prepared.student_name}.dst_ckpt'
    if not _rank0_has(prepared.dst_ckpt, ctx):
        if opts.test_only and not opts.smoke:
            raise RunError(f'-test_only: no trained student at {prepared.dst_ckpt} ({where})')
        return
    on_leaders(lambda: load_weights(prepared.student, prepared.dst_ckpt, where, logger), ctx, ctx.is_main,
               f'loading the best student from {prepared.dst_ckpt}')
    broadcast_state(prepared.student, ctx)


def test(prepared: Prepared, opts: RunOptions, ctx: DistContext) -> Dict[str, Any]:
    """Top-1/top-5 of the best student (and of the teacher unless ``-student_only``) on the test loader."""
    _load_best(prepared, opts, ctx)
    results: Dict[str, Any] = {'student': None, 'teacher': None}
    test_loader = _test_loader(prepared, ctx)
    if test_loader is None:
        logger.warning('no test.test_data_loader in the config: skipping the test')
        return results
    cudnn.benchmark = False
    cudnn.deterministic = True
    float32 = dataclasses.replace(prepared.runtime, amp='off')  # the reported top-1 as the papers measure it
    models = prepared.config['models']
    teacher = None if opts.student_only else prepared.teacher
    for role, model, entry in (('teacher', teacher, 'teacher_model'),
                               ('student', prepared.student, prepared.student_name)):
        if model is None:
            continue
        top1, top5, _ = evaluate(model, test_loader, ctx, float32)
        results[role] = {'top1': top1, 'top5': top5}
        logger.info(f'[{role.capitalize()}: {models[entry]["key"]}] test top-1 {top1:.2f}  top-5 {top5:.2f}')
    return results


def _format_metrics(metrics: Optional[Dict[str, Any]]) -> str:
    if not metrics or metrics.get('top1') is None:
        return 'n/a'
    return f"top-1 {metrics['top1']:.2f} top-5 {metrics['top5']:.2f}"


def _selected_on(prepared: Prepared) -> Optional[str]:
    """The dataset the best epoch is chosen on: the first training stage's validation loader's."""
    _, first = next(iter_train_stage_configs(prepared.config), (None, dict()))
    return (first.get('val_data_loader') or dict()).get('dataset_id')


def summarise(prepared: Prepared, opts: RunOptions, ctx: DistContext, state: RunState,
              test_results: Dict[str, Any], started: float) -> None:
    """Log the end-of-run summary and write it as JSON next to the best checkpoint.

    :param started: ``time.time()`` when this invocation started (for ``session_time_s``).
    """
    dst_ckpt = prepared.dst_ckpt
    checkpoints = {'best': dst_ckpt, 'last': last_ckpt_path(dst_ckpt)}
    summary = build_summary(opts.config, prepared.config.get('reference'), prepared.identity, ctx.world_size,
                            state.planned_epochs, state.history, state.best, test_results, checkpoints,
                            state.wall_time_s, prepared.runtime.as_dict(), time.time() - started,
                            state.sampler_seed, state.attempts, _selected_on(prepared), prepared.holdout)
    json_path = summary_path(dst_ckpt)
    write_summary(json_path, summary)
    logger.info(f'Summary: student best val {_format_metrics(summary["best"])} (epoch {summary["best"]["epoch"]}); '
                f'last val {_format_metrics(summary["last"])} (epoch {summary["last"]["epoch"]}); '
                f'test {_format_metrics(test_results["student"])}; '
                f'teacher test {_format_metrics(test_results["teacher"])}; '
                f'training time {format_duration(state.wall_time_s)} (this session with start-up and test '
                f'{format_duration(summary["session_time_s"])})')
    logger.info(f'Checkpoints: best {dst_ckpt}  last {checkpoints["last"]}  summary {json_path}')
