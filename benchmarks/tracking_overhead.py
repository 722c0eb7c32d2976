"""Step time with and without each tracker (TensorBoard, W&B offline, trackio), in one process.

Builds the shipped ``configs/cifar100/wttm/resnet8x4_from_resnet32x4.yaml`` once through the runner's own code
(``prepare``, ``open_session``, ``Session.start_epoch``; ``--device-data`` so that PIL workers add no noise) on
generated CIFAR-100 files, with small ``--teacher`` and ``--student`` architectures (default resnet20 -> resnet8,
random teacher: a short step makes a tracker's share of it large, the stringent case), then times windows of ``log_freq`` training steps
exactly as ``run.train.epoch.train_one_epoch`` runs them: the steps, the one ``StepMeter.read`` of the window, the progress line,
and, for a tracked configuration, ``Tracking.train_point`` of that window (the only per-window work a tracker adds).
Every configuration shares the one session (same model, same batches stream), so a difference is the tracker's
calls alone. Configurations alternate within each round (the order reversed every other round) and each one's time is
divided by the untracked baseline's of the same round; the table gives the median ratio and its spread over rounds,
next to the baseline's spread against itself (two baseline slots per round: ``none`` and ``none (again)``), which is
the noise. The tracker's own call is also timed alone (median per window, and as a share of the baseline's steps),
and ``Tracking.epoch_point`` (once per epoch: a flush of each tracker's files) apart.

    python benchmarks/tracking_overhead.py --workdir /tmp/track_bench --num_train 30000 --rounds 8 --windows 2 \
        --log_freq 10

The shipped configs read the device every 100 steps (``log_freq``); ``--log_freq 10`` makes the tracker's share ten
times larger than in a real run.
"""
import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'cifar100' / 'wttm' / 'resnet8x4_from_resnet32x4.yaml'


def _args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workdir', required=True, help='working folder (generated data, teacher, tracker files)')
    parser.add_argument('--num_train', type=int, default=2000, help='generated training images')
    parser.add_argument('--batch_size', type=int, default=32)
    parser.add_argument('--teacher', default='resnet20', help='teacher architecture (random weights)')
    parser.add_argument('--student', default='resnet8', help='student architecture')
    parser.add_argument('--log_freq', type=int, default=10, help='steps per window (the shipped configs: 100)')
    parser.add_argument('--windows', type=int, default=2, help='windows per configuration per round')
    parser.add_argument('--rounds', type=int, default=8)
    parser.add_argument('--threads', type=int, default=1, help='torch threads (the machine is shared)')
    parser.add_argument('--engines', default='tensorboard,wandb,trackio', help='trackers to compare (installed ones)')
    return parser.parse_args()


def _session(args, work):
    from torchdistill.common.main_util import set_seed

    from cifar_workdir import random_teacher
    from ttm_torchdistill.run.machine.context import init_distributed
    from ttm_torchdistill.run.options import RunOptions
    from ttm_torchdistill.run.prepare import prepare
    from ttm_torchdistill.run.train import loop

    teacher = random_teacher(work, args.teacher)
    overrides = [f'models.teacher_model.src_ckpt={teacher}', f'models.teacher_model.key=cifar_{args.teacher}',
                 f'models.student_model.key=cifar_{args.student}',
                 "datasets.*.init.kwargs.root=data",
                 f'train.train_data_loader.kwargs.batch_size={args.batch_size}']
    opts = RunOptions(config=str(CONFIG), device='cpu', seed=0, overrides=overrides,
                      runtime_flags={'device_data': True}, overwrite=True)
    ctx = init_distributed('cpu', 1, 'env://')
    set_seed(0)
    prepared = prepare(opts, ctx)
    session = loop.open_session(prepared, opts, ctx)
    session.start_epoch(prepared, 0)
    return prepared, session, ctx


def _tracking(engine, work, prepared, ctx, steps):
    from ttm_torchdistill.run.config.runtime import Runtime
    from ttm_torchdistill.run.track import Tracking, plan_tracking, run_config

    plan = plan_tracking(None, Runtime(track=(engine,), track_dir=str(work / 'track'), track_name=f'bench/{engine}'),
                         'bench', 0, [])
    tracking = Tracking(plan, run_config(prepared.identity, prepared.config_tree, prepared.runtime.as_dict(), 1,
                                         plan, ctx.device), None, ctx.device)
    tracking.start(0, steps, [])
    return tracking


class Window:
    """Windows of ``log_freq`` steps as ``train_one_epoch`` runs them, the tracker's call included."""

    def __init__(self, session, ctx, log_freq):
        from ttm_torchdistill.run.train.meter import temperature_stats
        from ttm_torchdistill.run.train.progress import EpochProgress
        self.session, self.ctx, self.log_freq, self.temperature_stats = session, ctx, log_freq, temperature_stats
        self.batches = iter(session.box.train_data_loader)
        self.steps = len(session.box.train_data_loader)
        self.progress = EpochProgress(1, 1, self.steps)
        self.step = 0
        self.calls = {}  # tracking's id -> seconds of each train_point call

    def run(self, tracking):
        """One window; returns its seconds."""
        box, step_fn, meter = self.session.box, self.session.step_fn, self.session.meter
        start = time.perf_counter()
        for _ in range(self.log_freq):
            sample_batch, targets, supp_dict = next(self.batches)
            loss = step_fn(sample_batch, targets, supp_dict)
            meter.add(loss, self.session.recorder.pop(), self.temperature_stats(box.criterion), step_fn.last_skipped)
            self.progress.count_images(sample_batch.shape[0])
            self.step += 1
        window = meter.read(self.ctx)
        self.progress.add_window(window)
        lr = box.optimizer.param_groups[0]['lr']
        self.progress.line(self.step, lr, 1)
        if tracking is not None:
            called = time.perf_counter()
            tracking.train_point(0, self.step, self.steps, window, lr, self.progress.images_per_s)
            self.calls.setdefault(id(tracking), []).append(time.perf_counter() - called)
        return time.perf_counter() - start


def main():
    args = _args()
    sys.path[:0] = [str(REPO), str(REPO / 'tests'), str(REPO / 'benchmarks')]
    from cifar_workdir import cifar_workdir
    import torch
    from ttm_torchdistill.run.console import run_logging
    from ttm_torchdistill.run.track.tracker_plan import MODULES, is_installed

    work = cifar_workdir(args.workdir, args.num_train, 100, args.threads)
    shutil.rmtree(work / 'track', ignore_errors=True)
    engines = [e for e in args.engines.split(',') if is_installed(MODULES[e][0])]
    with run_logging(True, None):
        prepared, session, ctx = _session(args, work)
        windows = Window(session, ctx, args.log_freq)
        trackers = {'none': None, 'none (again)': None}
        trackers.update({engine: _tracking(engine, work, prepared, ctx, windows.steps) for engine in engines})
        windows.run(None)  # warm-up
        needed = (args.rounds * len(trackers) * args.windows + 1) * args.log_freq
        if needed > windows.steps:
            raise SystemExit(f'{needed} steps needed, the epoch has {windows.steps}: raise --num_train')
        times = {name: [] for name in trackers}
        for round_index in range(args.rounds):
            names = list(trackers) if round_index % 2 == 0 else list(trackers)[::-1]
            for name in names:
                times[name].append(sum(windows.run(trackers[name]) for _ in range(args.windows)))
        epoch = {name: _epoch_point_ms(tracking) for name, tracking in trackers.items() if tracking is not None}
        call = {name: statistics.median(windows.calls[id(tracking)]) * 1000 for name, tracking in trackers.items()
                if tracking is not None}
        for tracking in trackers.values():
            if tracking is not None:
                tracking.close(None)
    _table(args, times, epoch, call, torch)


def _epoch_point_ms(tracking):
    record = {'epoch': 1, 'val_top1': 1.0, 'val_top5': 5.0, 'epoch_time_s': 1.0, 'train_time_s': 1.0,
              'train_loss': 1.0, 'lr': 0.05}
    start = time.perf_counter()
    tracking.epoch_point(record)
    return (time.perf_counter() - start) * 1000


def _table(args, times, epoch, call, torch):
    step_ms = statistics.median(times['none']) / (args.windows * args.log_freq) * 1000
    print(f'\n{args.teacher} (random) -> {args.student} WTTM, batch {args.batch_size}, --device-data, CPU ({os.cpu_count()} '
          f'cores, torch threads {torch.get_num_threads()}), torch {torch.__version__}, Python '
          f'{platform.python_version()}; log_freq {args.log_freq}, {args.windows} windows per configuration per round, '
          f'{args.rounds} alternating rounds; baseline step {step_ms:.1f} ms\n')
    print('| tracker | step time vs untracked (median) | min | max | train_point per window | per step | '
          'epoch point (flush) |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, values in times.items():
        if name == 'none':
            continue
        ratios = [value / base for value, base in zip(values, times['none'])]
        version = '' if name.startswith('none') else f' {_version(name)}'
        flush = f'{epoch[name]:.2f} ms' if name in epoch else '-'
        per_window = f'{call[name]:.2f} ms' if name in call else '-'
        per_step = f'{call[name] / args.log_freq / step_ms * 100:.3f} %' if name in call else '-'
        print(f'| {name}{version} | {statistics.median(ratios):.3f} | {min(ratios):.3f} | {max(ratios):.3f} | '
              f'{per_window} | {per_step} | {flush} |')


def _version(name):
    from importlib import metadata
    return metadata.version(name)


if __name__ == '__main__':
    main()
