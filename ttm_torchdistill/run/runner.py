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

from torch.backends import cudnn

from .machine.context import cleanup, init_distributed
from .final_evaluation import summarise, test
from .console import run_logging
from .options import RunOptions
from .prepare import prepare
from .train.loop import train
from .train.state import RunState

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
            state = RunState() if opts.test_only else train(prepared, opts, ctx)
            test_results = test(prepared, opts, ctx)
            if not opts.test_only and ctx.is_main:
                summarise(prepared, opts, ctx, state, test_results, wall_start)
            if opts.smoke:
                logger.info(f'Smoke run of {opts.config} passed in {time.time() - wall_start:.1f}s '
                            f'(nothing written outside a temporary folder)')
            return 0
    finally:
        if prepared is not None and prepared.smoke_dir is not None and ctx.is_main:
            shutil.rmtree(prepared.smoke_dir, ignore_errors=True)
        cleanup(ctx)
