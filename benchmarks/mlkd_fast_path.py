"""MLKD's training steps on the CPU, stock path vs the device path with both views, and the strong view alone.

Writes a CIFAR-100 look-alike in torchvision's on-disk format (random pixels, ``--num_train`` images; the writer of
the runner tests) and a randomly initialised resnet32x4 teacher checkpoint, builds a per-seed teacher cache of the
weak view for one epoch with the real subcommand (``cache-teacher --seed 0 --epochs 1`` on the MLKD config), then
builds each configuration of the shipped ``configs/cifar100/mlkd/resnet8x4_from_resnet32x4.yaml`` (batch 64, CE 0.1
on each view + 0.9 MLKD, T 4) once in this process through the runner's own code (``prepare``, the session of
``run.train.loop.open_session``, ``Session.start_epoch``) and times its steps as ``run.train.epoch.train_one_epoch``
runs them (next batch, ``TrainStep``, ``StepMeter.add``, one ``StepMeter.read`` per chunk; no validation).
Configurations alternate every ``--chunk`` steps for ``--rounds`` rounds, the order reversed every other round; the
table gives medians over rounds. In-process and interleaved because the machine is shared (see
``benchmarks/throughput.py``).

Configurations:

* stock, fp32: torchdistill's DataLoader over ``TwoViewDataset`` (PIL crop, flip, StrongAugment, ToTensor, Normalize
  on ``--workers`` loader processes), the teacher live on both views;
* device, fp32: ``--device-data`` (both views made on the device), the teacher live on both views;
* device + cache, fp32: ``--device-data --teacher-cache`` (the weak view's logits from the cache, the teacher live
  on the strong view);
* stock and device + cache again with ``--amp bf16 --channels-last``.

Beside them, in the same rounds, the **student-only step** (the limit a fast path approaches): resnet8x4 forward on
both views of one fixed batch, CE on both + 0.9 MLKD on given teacher logits (``ttm_torchdistill.functional``),
backward, SGD; no data path, no teacher, no box. And the teacher's forward on one view (eval, no_grad): what the
cache cannot remove. Then the strong view alone, alternating: the config's strong pipeline on PIL images in this
process (what each loader worker does per image) against the device path's strong view on batches of 64 (on the
CPU), and StrongAugment alone on both.

    python benchmarks/mlkd_fast_path.py --workdir /tmp/mlkd_bench --num_train 1024 --rounds 6 --chunk 2 --threads 1
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
CONFIG = REPO / 'configs' / 'cifar100' / 'mlkd' / 'resnet8x4_from_resnet32x4.yaml'
LOADERS = ('train.train_data_loader', 'train.val_data_loader', 'test.test_data_loader')
#: CIFAR-100's training set, for the epoch times (782 steps of 64)
CIFAR100_TRAIN = 50000


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', default='mlkd_bench', help='data, teacher checkpoint and cache go here')
    parser.add_argument('--num_train', type=int, default=1024, help='training images to generate')
    parser.add_argument('--rounds', type=int, default=6, help='interleaved rounds (the tables give medians)')
    parser.add_argument('--chunk', type=int, default=2, help='timed steps of each configuration per round')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps of each configuration first')
    parser.add_argument('--workers', type=int, default=2, help='loader processes of the stock configurations')
    parser.add_argument('--augment_rounds', type=int, default=10, help='rounds of the strong view alone')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (1 is steadier when shared)')
    parser.add_argument('--skip', nargs='*', default=[], help='names of configurations to leave out')
    parser.add_argument('--reuse_cache', action='store_true', help='keep a cache already in the workdir')
    return parser.parse_args()


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _overrides(work, args):
    from cifar_workdir import random_teacher
    common = [f'datasets.cifar100/{split}.init.kwargs.root=./data' for split in ('train', 'test')]
    common += [f'models.teacher_model.src_ckpt={random_teacher(work)}', 'models.student_model.dst_ckpt=./ckpt/s.pt',
               'train.num_epochs=1', 'train.scheduler.kwargs.milestones=[1]']
    common += [f'{loader}.kwargs.pin_memory=false' for loader in LOADERS]

    def workers(n):
        extra = [f'{loader}.kwargs.num_workers={n}' for loader in LOADERS]
        return extra + [f'{loader}.kwargs.persistent_workers={n > 0}' for loader in LOADERS]
    return common, workers


def _build_cache(cache_dir, common, workers, reuse):
    """The weak view's per-seed cache for epoch 0 (cache-teacher on the MLKD config); returns its seconds or None."""
    from ttm_torchdistill import cli
    if reuse and (cache_dir / 'metadata.json').is_file():
        return None
    argv = ['cache-teacher', '--config', str(CONFIG), '--seed', '0', '--out', str(cache_dir), '--epochs', '1',
            '--device', 'cpu']
    for override in common + workers(0):
        argv += ['--set', override]
    start = time.perf_counter()
    if cli.main(argv) != 0:
        raise SystemExit('cache-teacher failed')
    return time.perf_counter() - start


class RunnerSteps:
    """One configuration built through the runner, its training iterator open at epoch 0."""

    def __init__(self, name, overrides, flags):
        from torchdistill.common.main_util import set_seed
        from ttm_torchdistill.run.machine.context import init_distributed
        from ttm_torchdistill.run.options import RunOptions
        from ttm_torchdistill.run.prepare import prepare
        from ttm_torchdistill.run.train import loop
        self.name = name
        opts = RunOptions(config=str(CONFIG), device='cpu', seed=0, overrides=overrides, runtime_flags=flags)
        self.ctx = init_distributed('cpu', 1, 'env://')
        set_seed(0)
        prepared = prepare(opts, self.ctx)
        session = loop.open_session(prepared, opts, self.ctx)
        session.start_epoch(prepared, 0)
        self.session, self.runtime = session, prepared.runtime
        self.batches = iter(session.box.train_data_loader)
        self.seconds = []

    def run(self, steps):
        """``steps`` steps as ``train_one_epoch`` runs them; returns seconds per step."""
        from ttm_torchdistill.run.train.meter import temperature_stats
        session = self.session
        start = time.perf_counter()
        for _ in range(steps):
            sample_batch, targets, supp_dict = next(self.batches)
            loss = session.step_fn(sample_batch, targets, supp_dict)
            session.meter.add(loss, session.recorder.pop(), temperature_stats(session.box.criterion))
        window = session.meter.read(self.ctx)
        if window.nonfinite_steps:
            raise SystemExit(f'{self.name}: non-finite loss')
        return (time.perf_counter() - start) / steps


class StudentOnly:
    """The student's MLKD step alone on one fixed batch of two views, and the teacher's forward on one view."""

    def __init__(self, name, bf16):
        import torch
        from ttm_torchdistill import functional
        from ttm_torchdistill.models import cifar_resnet
        self.name, self.torch, self.functional = name, torch, functional
        torch.manual_seed(0)
        memory_format = torch.channels_last if bf16 else torch.contiguous_format
        self.student = cifar_resnet.resnet8x4(num_classes=100).to(memory_format=memory_format).train()
        self.teacher = cifar_resnet.resnet32x4(num_classes=100).to(memory_format=memory_format).eval()
        self.views = [torch.randn(64, 3, 32, 32).contiguous(memory_format=memory_format) for _ in range(2)]
        self.targets = torch.randint(0, 100, (64,))
        self.teacher_logits = [torch.randn(64, 100) * 4 for _ in range(2)]
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        self.autocast = torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16)
        self.seconds, self.teacher_seconds = [], []

    def run(self, steps):
        torch, F = self.torch, self.torch.nn.functional
        start = time.perf_counter()
        for _ in range(steps):
            with self.autocast:
                weak, strong = (self.student(view) for view in self.views)
                loss = 0.1 * F.cross_entropy(weak, self.targets) + 0.1 * F.cross_entropy(strong, self.targets)
                loss = loss + 0.9 * self.functional.mlkd_loss(weak.float(), self.teacher_logits[0], strong.float(),
                                                              self.teacher_logits[1], temperature=4.0)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        step = (time.perf_counter() - start) / steps
        start = time.perf_counter()
        with torch.no_grad(), self.autocast:
            self.teacher(self.views[1]).sum().item()
        self.teacher_seconds.append(time.perf_counter() - start)
        return step


def _configurations(args, common, workers, cache_dir):
    cache = {'device_data': True, 'teacher_cache': str(cache_dir)}
    fast = {'amp': 'bf16', 'channels_last': True}
    runs = [('stock, fp32', workers(args.workers), {}), ('device, fp32', workers(0), {'device_data': True}),
            ('device + cache, fp32', workers(0), cache),
            ('stock, bf16 + channels-last', workers(args.workers), dict(fast)),
            ('device + cache, bf16 + channels-last', workers(0), dict(cache, **fast))]
    built = [RunnerSteps(name, common + extra, flags) for name, extra, flags in runs if name not in args.skip]
    limits = [('student only (limit), fp32', False), ('student only (limit), bf16 + channels-last', True)]
    return built + [StudentOnly(name, bf16) for name, bf16 in limits if name not in args.skip]


def _interleave(benches, rounds, chunk, warmup):
    for bench in benches:
        bench.run(warmup)
        print(f'warmed up {bench.name}', flush=True)
    for index in range(rounds):
        for bench in (benches if index % 2 == 0 else benches[::-1]):
            bench.seconds.append(bench.run(chunk))
        print(f'round {index + 1}/{rounds}: ' + ', '.join(f'{b.name} {b.seconds[-1]:.2f}s' for b in benches),
              flush=True)


def _strong_view_alone(rounds):
    """images/s of the strong pipeline (PIL, per image, this process) and of the device strong view (batches of 64),
    and of StrongAugment alone on each, alternating rounds."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import ToTensor
    from ttm_torchdistill.run.config.loading import load_config
    from ttm_torchdistill.run.data.device_dataset import DeviceDataset, DeviceView
    from ttm_torchdistill.run.data.device_transforms import translate_transform
    from ttm_torchdistill.views.augment import StrongAugment
    from ttm_torchdistill.views.device_augment import draw_plans, strong_augment
    config = load_config(str(CONFIG), []).config
    strong = config['train']['train_data_loader']['dataset_wrapper']['kwargs']['strong_transform']
    images = np.random.default_rng(0).integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    pil = [Image.fromarray(image) for image in images]
    data = DeviceDataset(images, [0] * len(images), translate_transform(ToTensor()), seed=0)
    view = DeviceView(data, translate_transform(strong), 'strong')
    view.augment(0, torch.arange(64))  # the epoch's draws, once
    plans = draw_plans(64, 2, (32, 32), torch.Generator().manual_seed(0))
    batch = torch.from_numpy(images[:64])
    augment = StrongAugment(2)

    def timed(function, count):
        start = time.perf_counter()
        function()
        return count / (time.perf_counter() - start)

    cases = {'strong pipeline, PIL per image (crop, flip, StrongAugment, ToTensor, Normalize)':
             lambda: timed(lambda: [strong(img) for img in pil[:128]], 128),
             'strong pipeline, device path (batches of 64, CPU)':
             lambda: timed(lambda: [view.augment(0, torch.arange(i, i + 64)) for i in range(0, 512, 64)], 512),
             'StrongAugment alone, PIL per image': lambda: timed(lambda: [augment(img) for img in pil[:128]], 128),
             'StrongAugment alone, device (batch of 64, CPU)':
             lambda: timed(lambda: [strong_augment(batch, plans) for _ in range(4)], 256)}
    rates = {name: [] for name in cases}
    for index in range(rounds):
        for name in (list(cases) if index % 2 == 0 else list(cases)[::-1]):
            rates[name].append(cases[name]())
    return rates


def _report(benches, args, cache_seconds, rates):
    import torch
    import torchvision
    medians = {b.name: statistics.median(b.seconds) for b in benches}
    stock = medians.get('stock, fp32')
    print(f'\nCPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}), torch threads '
          f'{torch.get_num_threads()}, torch {torch.__version__}, torchvision {torchvision.__version__}, Python '
          f'{platform.python_version()}; {args.num_train} training images of random pixels, resnet32x4 (random) -> '
          f'resnet8x4 MLKD, batch 64; {args.chunk} steps per configuration per round, {args.rounds} rounds\n')
    print('| configuration | s per step (median) | min | max | CIFAR-100 epoch (782 steps) | vs stock fp32 |')
    print('|---|---:|---:|---:|---:|---:|')
    for bench in benches:
        m = medians[bench.name]
        epoch = m * CIFAR100_TRAIN / 64
        ratio = f'{stock / m:.2f}x' if stock else '-'
        print(f'| {bench.name} | {m:.2f} | {min(bench.seconds):.2f} | {max(bench.seconds):.2f} | '
              f'{epoch / 60:.0f} min | {ratio} |')
    for precision, fast in (('fp32', 'device + cache, fp32'), ('bf16 + channels-last',
                                                               'device + cache, bf16 + channels-last')):
        limit = next((b for b in benches if b.name == f'student only (limit), {precision}'), None)
        if fast in medians and limit is not None:
            teacher = statistics.median(limit.teacher_seconds)
            print(f'\n{precision}: the fast path reaches {medians[limit.name] / medians[fast]:.2f} of the student-only '
                  f'step ({medians[limit.name]:.2f} s against {medians[fast]:.2f} s); the teacher\'s forward on one '
                  f'view (what the cache cannot remove) is {teacher:.2f} s')
    print('\n| strong view alone | images/s (median) | min | max |')
    print('|---|---:|---:|---:|')
    for name, values in rates.items():
        print(f'| {name} | {statistics.median(values):,.0f} | {min(values):,.0f} | {max(values):,.0f} |')
    if cache_seconds is not None:
        print(f'\nteacher cache of the weak view (cache-teacher, 1 epoch of {args.num_train} images): '
              f'{cache_seconds:.1f}s')
    print('\ncommand: python benchmarks/mlkd_fast_path.py ' + ' '.join(sys.argv[1:]))


def main() -> int:
    args = _arguments()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / 'tests'))
    from cifar_workdir import cifar_workdir
    from ttm_torchdistill.run.console import run_logging
    steps_per_epoch = -(-args.num_train // 64)
    needed = args.warmup + args.rounds * args.chunk
    if needed > steps_per_epoch:
        raise SystemExit(f'{needed} steps needed but one epoch has {steps_per_epoch}: the cache holds one epoch')
    work = cifar_workdir(args.workdir, args.num_train, 100, args.threads)
    common, workers = _overrides(work, args)
    with run_logging(True, None):
        cache_seconds = _build_cache(work / 'cache_seed0', common, workers, args.reuse_cache)
        benches = _configurations(args, common, workers, work / 'cache_seed0')
        _interleave(benches, args.rounds, args.chunk, args.warmup)
    rates = _strong_view_alone(args.augment_rounds)
    _report(benches, args, cache_seconds, rates)
    return 0


if __name__ == '__main__':
    sys.exit(main())
