"""Train, evaluate and resume a torchdistill image-classification config (the body of ``python -m ttm_torchdistill``).

A run is four stages, read top to bottom in :func:`run`:

1. :func:`~ttm_torchdistill.run.prepare.prepare`: config (with ``--set`` and ``--smoke``), checks, the
   ``--resume`` checkpoint, the seed, datasets, teacher and student;
2. :func:`~ttm_torchdistill.run.train.loop.train`: epochs, validation, best/last checkpoints, ``--resume``;
3. :func:`~ttm_torchdistill.run.final_evaluation.test`: the best student (and the teacher) on the test loader;
4. :func:`~ttm_torchdistill.run.final_evaluation.summarise`: the JSON run summary.

The order follows torchdistill's example runner and reuses its boxes, loaders, losses and processes; what differs
is listed in the README section "Running".
"""
import logging
import shutil
import time
from datetime import timedelta

from typing import Optional

from torch.backends import cudnn

from ..errors import error_line
from .attempts import last_track
from .machine.context import DistContext, cleanup, init_distributed
from .final_evaluation import summarise, test
from .console import run_logging
from .options import RunOptions
from .prepare import prepare
from .prepared import Prepared
from .track import Tracking, run_config
from .train.loop import train
from .train.run_state import RunState

logger = logging.getLogger('ttm_torchdistill.run')

__all__ = ['RunOptions', 'run']


def run(opts: RunOptions) -> int:
    """Run one config; returns the process exit code (problems with the input are raised as ``RunError``)."""
    opts.check()
    wall_start = time.time()
    timeout = timedelta(minutes=opts.dist_timeout_min) if opts.dist_timeout_min is not None else None
    ctx = init_distributed(opts.device, opts.world_size, opts.dist_url, timeout)
    prepared = None
    try:
        with run_logging(ctx.is_main, opts.run_log):
            cudnn.benchmark = not opts.disable_cudnn_benchmark
            prepared = prepare(opts, ctx)
            tracking = _tracking(prepared, ctx)
            try:
                state = RunState() if opts.test_only else train(prepared, opts, ctx, tracking)
                test_results = test(prepared, opts, ctx)
                if tracking is not None:
                    tracking.test_point(test_results)
                if not opts.test_only and ctx.is_main:
                    summarise(prepared, opts, ctx, state, test_results, wall_start)
            except BaseException as exc:
                _close_tracking(tracking, 'interrupted' if isinstance(exc, KeyboardInterrupt) else error_line(exc))
                raise
            if tracking is not None:
                tracking.close(None)
            if opts.smoke:
                logger.info(f'Smoke run of {opts.config} passed in {time.time() - wall_start:.1f}s '
                            f'(nothing written outside a temporary folder)')
            return 0
    finally:
        if prepared is not None and prepared.smoke_dir is not None and ctx.is_main:
            shutil.rmtree(prepared.smoke_dir, ignore_errors=True)
        cleanup(ctx)


def _tracking(prepared: Prepared, ctx: DistContext) -> Optional[Tracking]:
    """Rank 0's trackers of this session (None on other ranks and without trackers); a resumed run continues the
    tracker run its last tracked attempt wrote to."""
    plan = prepared.track_plan
    if plan is None or not ctx.is_main:
        return None
    config = run_config(prepared.identity, prepared.config_tree, prepared.runtime.as_dict(), ctx.world_size, plan,
                        ctx.device)
    previous = last_track((prepared.resume_checkpoint or dict()).get('attempts') or [])
    return Tracking(plan, config, previous, ctx.device)


def _close_tracking(tracking: Optional[Tracking], failure: str) -> None:
    """Mark the tracker runs failed; a tracker that cannot be closed is reported, and the run's own error stays
    the one the command ends with."""
    if tracking is None:
        return
    try:
        tracking.close(failure)
    except Exception as exc:  # the run's error matters more than the tracker's
        logger.warning(f'tracking: could not mark the tracker runs failed: {error_line(exc)}')
