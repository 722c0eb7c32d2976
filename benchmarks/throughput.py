"""Training-step throughput of resnet32x4 -> resnet8x4 WTTM on the CPU: stock path vs the runner's fast path.

Writes a CIFAR-100 look-alike in torchvision's on-disk format (random pixels, ``--num_train`` training images; the
writer of the runner tests, ``tests/runner_support.write_tiny_cifar100``) and a randomly initialised resnet32x4
teacher checkpoint, builds a one-epoch teacher cache with the real subcommand
(``python -m ttm_torchdistill cache-teacher``, timed: that is the teacher-forward throughput), then builds each
configuration of the shipped ``configs/cifar100/wttm/resnet8x4_from_resnet32x4.yaml`` (batch 64) once in this process
through the runner's own code:

* ``prepare(opts, ctx)`` (config, ``--set`` overrides, runtime flags, datasets, models, channels-last, compile),
* the runner's own session (``run.train.loop.open_session``: box, wrapped student, ``TrainStep``, meter) and epoch
  start (``Session.start_epoch``: pre-epoch process, device loaders installed, ``set_epoch(0)``),

and then times that configuration's training steps exactly as ``run.train.epoch.train_one_epoch`` runs them: the next
batch from the box's training loader, ``TrainStep`` (forward, backward, SGD step), ``StepMeter.add`` with the
per-term losses, and one ``StepMeter.read`` at the end of each timed chunk (on the CPU every operation is
synchronous, so a chunk's wall time is its compute). Validation is not run.

Why in-process rather than ``python -m ttm_torchdistill ... --set train.num_epochs=1`` subprocesses: the machine is
shared, so configurations must be measured interleaved. Here every configuration's iterator stays open and the
script times ``--chunk`` steps of each in turn, ``--rounds`` times; the table gives the median images/s over rounds
(and min/max), all within the first epoch (the cache holds epoch 0 only). Subprocesses would each pay the epoch's
start-up and validation and could only alternate whole runs.

Configurations (each adds to the one before, except the stock ones):

* stock, num_workers=0 / num_workers=2: torchdistill's DataLoader + PIL transforms (``persistent_workers`` as in
  the config), the live teacher, float32;
* device_data: ``--device-data`` (uint8 dataset in memory, batched crop/flip/normalise), live teacher;
* + teacher_cache: ``--teacher-cache DIR`` (teacher logits read from the cache; the teacher is not run);
* + bf16 + channels_last: ``--amp bf16 --channels-last``;
* + compile: ``--compile`` (torch.compile of the student; the first steps compile and are excluded as warm-up).

    python benchmarks/throughput.py --workdir /tmp/throughput --num_train 10000 --rounds 8 --chunk 8

torchvision verifies the real CIFAR files by md5; this script alone switches that check off for its own files.
"""
import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'cifar100' / 'wttm' / 'resnet8x4_from_resnet32x4.yaml'
LOADERS = ('train.train_data_loader', 'train.val_data_loader', 'test.test_data_loader')


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', default='throughput_bench', help='data, teacher checkpoint and cache go here')
    parser.add_argument('--num_train', type=int, default=10000, help='training images to generate (>= 10,000)')
    parser.add_argument('--rounds', type=int, default=8, help='interleaved rounds (the table gives medians)')
    parser.add_argument('--chunk', type=int, default=8, help='timed steps of each configuration per round')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps of each configuration first')
    parser.add_argument('--compile_warmup', type=int, default=6, help='untimed steps of the compiled configuration')
    parser.add_argument('--skip', nargs='*', default=[], help='names of configurations to leave out')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s, one per core); on a shared machine 1 '
                             'thread is steadier: a 2-thread step waits for whichever thread lost its core')
    parser.add_argument('--reuse_cache', action='store_true',
                        help='keep a complete teacher cache already in the workdir instead of rebuilding (and '
                             'timing) it; the runs check it against their config either way')
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / 'tests'))
    import torch
    import torchvision
    from torchdistill.common.main_util import set_seed

    from cifar_workdir import cifar_workdir, random_teacher
    from ttm_torchdistill import cli
    from ttm_torchdistill.run.train import loop
    from ttm_torchdistill.run.machine.context import init_distributed
    from ttm_torchdistill.run.console import run_logging
    from ttm_torchdistill.run.options import RunOptions
    from ttm_torchdistill.run.prepare import prepare
    from ttm_torchdistill.run.train.meter import temperature_stats

    steps_per_epoch = -(-args.num_train // 64)
    needed = max(args.warmup, args.compile_warmup) + args.rounds * args.chunk
    if needed > steps_per_epoch:
        raise SystemExit(f'{needed} steps needed but one epoch has {steps_per_epoch}: the cache holds one epoch')
    work = cifar_workdir(args.workdir, args.num_train, 100, args.threads)
    teacher_ckpt = random_teacher(work)

    common = [f'datasets.cifar100/{split}.init.kwargs.root=./data' for split in ('train', 'test')]
    common += [f'models.teacher_model.src_ckpt={teacher_ckpt}', 'models.student_model.dst_ckpt=./ckpt/student.pt',
               'train.num_epochs=1', 'train.scheduler.kwargs.milestones=[1]']
    for loader in LOADERS:
        common += [f'{loader}.kwargs.pin_memory=false']

    def workers(n):
        extra = [f'{loader}.kwargs.num_workers={n}' for loader in LOADERS]
        return extra + [f'{loader}.kwargs.persistent_workers={n > 0}' for loader in LOADERS]

    # The cache, built by the real subcommand (timed: one epoch of teacher forwards, batch 500, float32, eval mode).
    cache_dir = work / f'cache_seed{args.seed}'
    messages = _Messages()
    logging.getLogger('ttm_torchdistill.run').addHandler(messages)
    cache_argv = ['cache-teacher', '--config', str(CONFIG), '--seed', str(args.seed), '--out', str(cache_dir),
                  '--epochs', '1', '--device', 'cpu']
    for override in common + workers(0):
        cache_argv += ['--set', override]
    start = time.perf_counter()
    reused = args.reuse_cache and (cache_dir / 'metadata.json').is_file()
    if not reused and cli.main(cache_argv) != 0:
        raise SystemExit('cache-teacher failed')
    cache_seconds = time.perf_counter() - start
    logging.getLogger('ttm_torchdistill.run').removeHandler(messages)
    forward_lines = [m for m in messages.messages if 'teacher cache: epoch 1/1 written' in m]

    configurations = [
        ('stock, num_workers=0', workers(0), {}),
        ('stock, num_workers=2', workers(2), {}),
        ('device_data', workers(0), {'device_data': True}),
        ('device_data + teacher_cache', workers(0), {'device_data': True, 'teacher_cache': str(cache_dir)}),
        ('+ bf16 + channels_last', workers(0), {'device_data': True, 'teacher_cache': str(cache_dir),
                                                'amp': 'bf16', 'channels_last': True}),
        ('+ compile', workers(0), {'device_data': True, 'teacher_cache': str(cache_dir), 'amp': 'bf16',
                                   'channels_last': True, 'compile': True}),
    ]
    configurations = [c for c in configurations if c[0] not in args.skip]

    class Bench:
        """One configuration built through the runner, with its training iterator open at epoch 0."""

        def __init__(self, name, overrides, flags):
            self.name = name
            opts = RunOptions(config=str(CONFIG), device='cpu', seed=args.seed, overrides=common + overrides,
                              runtime_flags=flags)
            ctx = init_distributed('cpu', 1, 'env://')
            set_seed(args.seed)
            prepared = prepare(opts, ctx)
            session = loop.open_session(prepared, opts, ctx)  # the runner's box, wrapped student, step and meter
            session.start_epoch(prepared, 0)
            box = session.box
            self.step_fn, self.recorder, self.meter = session.step_fn, session.recorder, session.meter
            self.box, self.ctx, self.runtime = box, ctx, prepared.runtime
            self.batches = iter(box.train_data_loader)
            self.loader_name = type(box.train_data_loader).__name__
            self.rates, self.steps = [], 0

        def run(self, steps):
            """``steps`` training steps as ``train_one_epoch`` runs them; returns (images, seconds)."""
            images = 0
            start = time.perf_counter()
            for _ in range(steps):
                sample_batch, targets, supp_dict = next(self.batches)
                loss = self.step_fn(sample_batch, targets, supp_dict)
                self.meter.add(loss, self.recorder.pop(), temperature_stats(self.box.criterion))
                images += sample_batch.shape[0]
            window = self.meter.read(self.ctx)  # the runner reads the device once per log_freq steps
            seconds = time.perf_counter() - start
            self.steps += steps
            if window.nonfinite_steps:
                raise SystemExit(f'{self.name}: non-finite loss')
            self.last_loss = window.loss_sum / window.steps
            return images, seconds

    benches = []
    with run_logging(True, None):
        for name, overrides, flags in configurations:
            bench = Bench(name, overrides, flags)
            warmup = args.compile_warmup if flags.get('compile') else args.warmup
            images, seconds = bench.run(warmup)
            print(f'built {name} ({bench.runtime.describe()}, loader {bench.loader_name}); warm-up {warmup} steps '
                  f'{seconds:.1f}s', flush=True)
            benches.append(bench)
        for round_index in range(args.rounds):
            order = benches if round_index % 2 == 0 else benches[::-1]  # alternate the order too
            for bench in order:
                images, seconds = bench.run(args.chunk)
                bench.rates.append(images / seconds)
            print(f'round {round_index + 1}/{args.rounds}: ' +
                  ', '.join(f'{b.name} {b.rates[-1]:.0f}' for b in benches), flush=True)

    stock = {b.name: statistics.median(b.rates) for b in benches if b.name.startswith('stock')}
    base_name = 'stock, num_workers=0' if 'stock, num_workers=0' in stock else next(iter(stock), None)
    best_stock = max(stock.values()) if stock else None
    print(f'\n{args.num_train} CIFAR-100-format training images (random pixels), resnet32x4 (random weights) -> '
          f'resnet8x4 WTTM, batch 64, CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}), torch '
          f'{torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}; '
          f'{args.chunk} steps per configuration per round, {args.rounds} interleaved rounds, after warm-up\n')
    print('| configuration | images/s (median) | min | max | vs stock num_workers=0 | vs best stock |')
    print('|---|---:|---:|---:|---:|---:|')
    for bench in benches:
        median = statistics.median(bench.rates)
        ratio0 = f'{median / stock[base_name]:.2f}x' if base_name else '-'
        ratio_best = f'{median / best_stock:.2f}x' if best_stock else '-'
        print(f'| {bench.name} | {median:,.0f} | {min(bench.rates):,.0f} | {max(bench.rates):,.0f} | {ratio0} '
              f'| {ratio_best} |')
    forward = forward_lines[0] if forward_lines else '(no epoch line logged)'
    if reused:
        print(f'\nteacher cache: reused {cache_dir} (not rebuilt, not timed)')
    else:
        print(f'\nteacher cache of {args.num_train} images (cache-teacher, 1 epoch, float32, batch 500): '
              f'{cache_seconds:.1f}s for the whole command, {args.num_train / cache_seconds:.0f} img/s; its epoch line: '
              f'{forward}')
    print('\ncommand: python benchmarks/throughput.py ' + ' '.join(sys.argv[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
