"""How far the runner's fast path is from the student's own step, and where the difference goes.

The limit of a distillation step once the teacher's logits are cached is the student's step alone: forward,
cross-entropy plus the distillation loss on given teacher logits, backward, SGD. This script times, interleaved in one
process:

* ``limit``: exactly that on one fixed batch already on the device (no data path, no cache lookup, no torchdistill
  box, no hooks, no progress meter): resnet8x4, CE + 3 * WTTM (T = 10) through ``ttm_torchdistill.functional``,
  SGD(lr 0.05, momentum 0.9, weight decay 5e-4);
* ``fast path``: the same student, loss and optimizer built by the runner from the shipped
  ``configs/cifar100/wttm/resnet8x4_from_resnet32x4.yaml`` with ``--device-data --teacher-cache`` (a complete cache,
  ``cache-teacher --views all``), stepping as the runner's epoch does (``run.train.epoch.train_one_epoch``: the
  device loader's next batch, ``TrainStep``, ``StepMeter.add`` with the sub-terms and temperatures, one read per
  window).

Both in float32, and both again with ``--amp bf16 --channels-last`` (``--amp`` only where the CPU has bf16 kernels
worth measuring: on a CPU without AVX-512 BF16 or AMX, bf16 is emulated and slower than float32, which the table then
shows). The fast path's step is also split into its phases by timing the runner's own callables (the next batch,
the cached teacher's lookup, the box's forward process without it, the post-forward process with backward and SGD,
the meter), so the difference to the limit is attributed, not guessed.

    python benchmarks/fast_path_gap.py --workdir /tmp/fast_path_gap --num_train 2048 --rounds 8 --chunk 4 --threads 1

The complete cache is built by the real subcommand once (``--reuse_cache`` keeps it between invocations). Its teacher
is the config's with its key replaced by a small one (``--teacher``, resnet8 by default): the teacher only fills the
cache, which the timed steps read the same whatever network wrote it, and resnet32x4 on every one of the 162 views
of each image would take most of an hour on a CPU.
torchvision verifies the real CIFAR files by md5; this script alone reads its generated files without that check.
"""
import argparse
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'cifar100' / 'wttm' / 'resnet8x4_from_resnet32x4.yaml'
PHASES = ('epoch set-up', 'next batch', 'cache lookup', 'forward + loss', 'backward + SGD', 'meter')
LIMIT_PHASES = ('limit: forward + loss', 'limit: backward + SGD')
#: CIFAR-100's epoch: 50,000 training images in batches of 64, 10,000 validation images in batches of 32
CIFAR_TRAIN_STEPS, CIFAR_VAL_BATCHES = 782, 313


def validation_costs(evaluate, model, ctx, runtime, batch, rounds):
    """Median seconds of the runner's ``evaluate`` on one validation batch, under ``runtime`` and in float32."""
    import dataclasses
    runtimes = {'as trained': runtime, 'float32': dataclasses.replace(runtime, amp='off')}
    seconds = {name: [] for name in runtimes}
    for round_index in range(rounds + 1):  # the first round warms up
        for name, chosen in (runtimes.items() if round_index % 2 == 0 else reversed(runtimes.items())):
            start = time.perf_counter()
            evaluate(model, [batch], ctx, chosen)
            if round_index:
                seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


class PhaseClock:
    """Wall time per phase, accumulated by wrapping callables (CPU work is synchronous, so wall time is compute)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.paused = False

    def wrap(self, phase, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start
        return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', default='fast_path_gap', help='data, teacher checkpoint and cache go here')
    parser.add_argument('--num_train', type=int, default=2048, help='training images to generate')
    parser.add_argument('--rounds', type=int, default=8, help='interleaved rounds (the table gives medians)')
    parser.add_argument('--chunk', type=int, default=4, help='timed steps of each configuration per round')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps of each configuration first')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s)')
    parser.add_argument('--precisions', nargs='+', default=['float32', 'bf16'], choices=('float32', 'bf16'))
    parser.add_argument('--teacher', default='resnet8', help='CIFAR model that fills the cache (not timed)')
    parser.add_argument('--reuse_cache', action='store_true', help='keep a complete cache already in the workdir')
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / 'tests'))
    import torch
    from torchdistill.common.main_util import set_seed

    from cifar_workdir import cifar_workdir, random_teacher
    from ttm_torchdistill import cli, functional
    from ttm_torchdistill.models.cifar_resnet import resnet8x4
    from ttm_torchdistill.run.console import run_logging
    from ttm_torchdistill.run.machine.context import init_distributed
    from ttm_torchdistill.run.options import RunOptions
    from ttm_torchdistill.run.prepare import prepare
    from ttm_torchdistill.run.train import loop
    from ttm_torchdistill.run.train.evaluation import evaluate
    from ttm_torchdistill.run.train.meter import temperature_stats

    work = cifar_workdir(args.workdir, args.num_train, 64, args.threads)
    teacher_ckpt = random_teacher(work, args.teacher)
    common = ['datasets.*.init.kwargs.root=./data', f'models.teacher_model.key=cifar_{args.teacher}',
              f'models.teacher_model.src_ckpt={teacher_ckpt}',
              'models.student_model.dst_ckpt=./ckpt/student.pt', 'train.num_epochs=1',
              'train.scheduler.kwargs.milestones=[1]']
    cache_dir = work / 'cache_views'
    if not (args.reuse_cache and (cache_dir / 'metadata.json').is_file()):
        argv = ['cache-teacher', '--config', str(CONFIG), '--views', 'all', '--out', str(cache_dir), '--device', 'cpu']
        for override in common:
            argv += ['--set', override]
        if cli.main(argv) != 0:
            raise SystemExit('cache-teacher failed')

    clock = PhaseClock()

    class FastPath:
        """The runner's session on the shipped config, with the cached teacher and the device data path."""

        def __init__(self, flags):
            opts = RunOptions(config=str(CONFIG), device='cpu', seed=0, overrides=list(common),
                              runtime_flags=dict(flags, device_data=True, teacher_cache=str(cache_dir)))
            self.ctx = ctx = init_distributed('cpu', 1, 'env://')
            set_seed(0)
            self.prepared = prepare(opts, ctx)
            self.session = loop.open_session(self.prepared, opts, ctx)
            self.session.start_epoch(self.prepared, 0)
            self.new_epoch = lambda epoch: self.session.start_epoch(self.prepared, epoch)
            self.batches = self.epochs()

        def epochs(self):
            """Batches without end: a new epoch set up (permutation, views, the cache's gather) when one is over."""
            epoch = 0
            while True:
                yield from self.session.box.train_data_loader
                epoch += 1
                self.new_epoch(epoch)

        def instrument(self):
            box, step_fn = self.session.box, self.session.step_fn
            cached = step_fn.cached_teacher
            cached.forward = clock.wrap('cache lookup', cached.forward)
            box.forward_process = clock.wrap('forward + loss', box.forward_process)
            box.post_forward_process = clock.wrap('backward + SGD', box.post_forward_process)
            self.new_epoch = clock.wrap('epoch set-up', self.new_epoch)
            self.next = clock.wrap('next batch', lambda: next(self.batches))
            self.add = clock.wrap('meter', lambda loss: self.session.meter.add(
                loss, self.session.recorder.pop(), temperature_stats(box.criterion)))

        def step(self):
            sample_batch, targets, supp_dict = self.next()
            self.add(self.session.step_fn(sample_batch, targets, supp_dict))

        def window_end(self):
            self.session.meter.read(self.ctx)

    class Limit:
        """The student's step alone on one batch: what the fast path would cost with nothing around it."""

        def __init__(self, flags, example):
            torch.manual_seed(0)
            self.memory_format = torch.channels_last if flags.get('channels_last') else torch.contiguous_format
            self.student = resnet8x4(num_classes=100).to(memory_format=self.memory_format).train()
            self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
            images, targets, teacher = example
            self.images = images.contiguous(memory_format=self.memory_format)
            self.targets, self.teacher = targets, teacher
            self.amp = flags.get('amp') == 'bf16'

        def forward(self):
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=self.amp):
                logits = self.student(self.images)
            return torch.nn.functional.cross_entropy(logits.float(), self.targets) + \
                3.0 * functional.wttm_loss(logits, self.teacher, temperature=10.0)

        def backward(self, loss):
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

        def instrument(self):
            self.forward = clock.wrap('limit: forward + loss', self.forward)
            self.backward = clock.wrap('limit: backward + SGD', self.backward)

        def step(self):
            self.backward(self.forward())

        def window_end(self):
            pass

    precisions = {'float32': {}, 'bf16': {'amp': 'bf16', 'channels_last': True}}
    results = []
    with run_logging(True, None):
        for precision in args.precisions:
            flags = precisions[precision]
            fast = FastPath(flags)
            steps_per_epoch = len(fast.session.box.train_data_loader)
            images, targets, supp = next(fast.batches)
            example = (images, targets, fast.session.step_fn.cached_teacher.cache.lookup(0, supp['indices']))
            limit = Limit(flags, example)
            fast.instrument()
            limit.instrument()
            for bench in (fast, limit):
                for _ in range(args.warmup):
                    bench.step()
                bench.window_end()
            clock.seconds.clear()
            times = {'limit': [], 'fast path': []}
            for round_index in range(args.rounds):
                pairs = [('fast path', fast), ('limit', limit)]
                for name, bench in (pairs if round_index % 2 == 0 else pairs[::-1]):
                    start = time.perf_counter()
                    for _ in range(args.chunk):
                        bench.step()
                    bench.window_end()
                    times[name].append((time.perf_counter() - start) / args.chunk)
            steps = args.rounds * args.chunk
            phases = {phase: clock.seconds[phase] / steps for phase in PHASES}
            phases['forward + loss'] -= phases['cache lookup']  # the lookup runs inside the forward process
            phases['next batch'] -= phases['epoch set-up']  # a new epoch is set up inside the call for its 1st batch
            phases.update({phase: clock.seconds[phase] / steps for phase in LIMIT_PHASES})
            val_batch = next(iter(fast.session.box.val_data_loader))[:2]
            validation = validation_costs(evaluate, fast.prepared.student, fast.ctx, fast.prepared.runtime, val_batch,
                                          args.rounds)
            results.append((precision, statistics.median(times['limit']), statistics.median(times['fast path']),
                            phases, sum(times['fast path']) / len(times['fast path']), validation))
            print(f'{precision}: limit {results[-1][1] * 1e3:.1f} ms, fast path {results[-1][2] * 1e3:.1f} ms per step',
                  flush=True)

    print(f'\nresnet8x4 student, batch 64, CPU {platform.processor() or platform.machine()} '
          f'({os.cpu_count()} cores, torch threads {torch.get_num_threads()}), torch {torch.__version__}; '
          f'{args.chunk} steps per configuration per round, {args.rounds} interleaved rounds, medians\n')
    print('| precision | limit: student step (ms) | fast path step (ms) | fast path / limit |')
    print('|---|---:|---:|---:|')
    for precision, limit_s, fast_s, _, _, _ in results:
        print(f'| {precision} | {limit_s * 1e3:.1f} | {fast_s * 1e3:.1f} | {fast_s / limit_s:.3f} |')
    print('\nwhere a fast-path step goes (mean ms per step over the timed steps; the rest is the loop itself; the epoch '
          f'set-up is spread over {steps_per_epoch} steps per epoch here, over 781 on CIFAR-100):\n')
    print('| precision | ' + ' | '.join(PHASES) + ' | sum | step (mean) |')
    print('|---|' + '---:|' * (len(PHASES) + 2))
    for precision, _, _, phases, mean, _ in results:
        cells = ' | '.join(f'{phases[p] * 1e3:.2f}' for p in PHASES)
        print(f'| {precision} | {cells} | {sum(phases[p] for p in PHASES) * 1e3:.1f} | {mean * 1e3:.1f} |')
    print('\nthe limit\'s step split the same way (mean ms per step), to set beside the two middle columns above:\n')
    print('| precision | ' + ' | '.join(LIMIT_PHASES) + ' |')
    print('|---|' + '---:|' * len(LIMIT_PHASES))
    for precision, _, _, phases, _, _ in results:
        print(f'| {precision} | ' + ' | '.join(f'{phases[p] * 1e3:.2f}' for p in LIMIT_PHASES) + ' |')
    print(f'\nvalidation, which an epoch adds to its steps: one batch of {val_batch[1].shape[0]} images '
          f'through the runner\'s evaluate (median of {args.rounds}), and its share of a CIFAR-100 epoch '
          f'({CIFAR_VAL_BATCHES} such batches beside {CIFAR_TRAIN_STEPS} fast-path steps):\n')
    print('| precision | validation batch, as trained (ms) | in float32 (ms) | share of an epoch, as trained | '
          'in float32 |')
    print('|---|---:|---:|---:|---:|')
    for precision, _, fast_s, _, _, validation in results:
        shares = {name: CIFAR_VAL_BATCHES * t / (CIFAR_TRAIN_STEPS * fast_s + CIFAR_VAL_BATCHES * t)
                  for name, t in validation.items()}
        print(f'| {precision} | {validation["as trained"] * 1e3:.1f} | {validation["float32"] * 1e3:.1f} | '
              f'{shares["as trained"]:.1%} | {shares["float32"]:.1%} |')
    print('\ncommand: python benchmarks/fast_path_gap.py ' + ' '.join(sys.argv[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
