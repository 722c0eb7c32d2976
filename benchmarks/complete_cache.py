"""The complete teacher cache on the CPU: build time, disk size, lookup cost, and its effect on a training step.

Three parts (``--parts``):

* ``build``: writes ``--num_train`` images in CIFAR-100's on-disk format (random pixels; the writer of the runner
  tests) and a randomly initialised resnet32x4 teacher checkpoint, then runs the real subcommand for both kinds of
  cache of the shipped ``configs/cifar100/wttm/resnet8x4_from_resnet32x4.yaml``: ``cache-teacher --views all`` and
  ``cache-teacher --seed 0 --epochs 240`` (what one 240-epoch run needs), both float32 at the same ``--batch-size``,
  timed one after the other (whole commands: they cannot be interleaved), with their teacher-forward counts and
  disk sizes.
* ``lookup``: a complete cache of CIFAR-100's full size (50,000 x 162 x 100 float16, 1.62 GB; random values written
  by this script, as only the reading is timed) read the way a run reads it: one gather of the epoch's N rows into
  an N x C table (with the file in the page cache, and after evicting it with ``posix_fadvise(DONTNEED)``), then
  per step an index of that table with 64 sample indices; for comparison a per-step gather of 64 rows straight
  from the file, and a per-seed cache's epoch load (50,000 x 100 float32).
* ``steps``: training steps of resnet32x4 -> resnet8x4 WTTM built through the runner's own code (as
  ``benchmarks/throughput.py`` does: ``prepare``, ``open_session`` and ``Session.start_epoch``), on the
  ``build`` part's data and caches: device data with the live teacher, with the per-seed cache, with the complete
  cache, and both caches again with ``--amp bf16 --channels-last``. Configurations alternate every ``--chunk``
  steps for ``--rounds`` rounds (the order reversed every other round); a step that ends an epoch starts the next
  one as the runner does (pre-epoch process, ``set_epoch``, a new iterator), and that time is counted, so the
  caches' per-epoch work (an epoch file load, or the complete cache's gather) is in the figures. With
  ``--num_train`` equal to the batch size (64) every step is a whole epoch: the per-epoch work is paid every step,
  the worst case. Validation is not run.

    python benchmarks/complete_cache.py --workdir /tmp/view_cache_bench --num_train 64 --threads 1

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
CIFAR100 = (50_000, 162, 100)  # N, V, C
STEPS_PER_EPOCH = 782  # CIFAR-100 at batch 64


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def common_overrides(work: Path, teacher_ckpt: Path):
    overrides = [f'datasets.cifar100/{split}.init.kwargs.root={work / "data"}' for split in ('train', 'test')]
    overrides += [f'models.teacher_model.src_ckpt={teacher_ckpt}',
                  f'models.student_model.dst_ckpt={work / "ckpt" / "student.pt"}']
    for loader in LOADERS:
        overrides += [f'{loader}.kwargs.num_workers=0', f'{loader}.kwargs.persistent_workers=false',
                      f'{loader}.kwargs.pin_memory=false']
    return overrides


def part_build(args, work: Path, overrides):
    from ttm_torchdistill import cli

    rows = []
    for name, extra, forwards in (
            ('complete (--views all)', ['--views', 'all'], args.num_train * 162),
            ('per-seed, 240 epochs (--seed 0)', ['--seed', '0', '--epochs', '240'], args.num_train * 240)):
        out = work / ('cache_views' if 'all' in extra else 'cache_seed0')
        if (out / 'metadata.json').is_file():
            print(f'{name}: {out} exists, not rebuilt (delete it to time the build)', flush=True)
            rows.append((name, forwards, None, folder_bytes(out)))
            continue
        argv = ['cache-teacher', '--config', str(CONFIG), '--out', str(out), '--device', 'cpu', '--dtype', 'float32',
                '--batch-size', str(args.build_batch)] + extra
        for override in overrides:
            argv += ['--set', override]
        start = time.perf_counter()
        if cli.main(argv) != 0:
            raise SystemExit(f'cache-teacher failed: {name}')
        seconds = time.perf_counter() - start
        rows.append((name, forwards, seconds, folder_bytes(out)))
        print(f'{name}: {seconds:.0f} s', flush=True)
    print(f'\n{args.num_train} images, resnet32x4 (random weights), float32, batch {args.build_batch}, CPU, torch '
          f'threads {args.threads or "default"}\n')
    print('| cache | teacher forwards (per image) | build time (whole command) | img/s | disk |')
    print('|---|---:|---:|---:|---:|')
    for name, forwards, seconds, size in rows:
        time_text = f'{seconds:,.0f} s' if seconds is not None else 'not rebuilt'
        rate = f'{forwards / seconds:,.1f}' if seconds else '-'
        print(f'| {name} | {forwards:,} ({forwards // args.num_train}) | {time_text} | {rate} | {size / 1e6:,.2f} MB |')


def part_lookup(args, work: Path):
    import numpy as np
    import torch

    from ttm_torchdistill.run.data.per_seed_cache import CacheWriter, TeacherCache
    from ttm_torchdistill.run.data.complete_cache import LOGITS_FILE, EpochViewLogits, ViewCache, write_json

    n, v, c = CIFAR100
    folder = work / 'synthetic_complete_cifar100'
    folder.mkdir(parents=True, exist_ok=True)
    logits_path = folder / LOGITS_FILE
    if not (folder / 'metadata.json').is_file():
        print(f'writing a synthetic {n} x {v} x {c} float16 cache ({n * v * c * 2 / 1e9:.2f} GB)', flush=True)
        array = np.lib.format.open_memmap(logits_path, mode='w+', dtype=np.float16, shape=(n, v, c))
        rng = np.random.default_rng(0)
        for begin in range(0, n, 1000):
            array[begin:begin + 1000] = rng.normal(0, 3, size=(min(1000, n - begin), v, c)).astype(np.float16)
        array.flush()
        del array
        write_json(str(folder / 'metadata.json'), {'kind': 'views', 'format_version': 1, 'dataset_size': n,
                                                   'num_views': v, 'num_classes': c, 'dtype': 'float16',
                                                   'synthetic': 'random values, for timing reads only'})
    seed_folder = work / 'synthetic_seed_cifar100'
    if not (seed_folder / 'metadata.json').is_file():
        writer = CacheWriter(str(seed_folder), {}, n, c, 'float32')
        writer.write_epoch(0, np.random.default_rng(1).normal(0, 3, size=(n, c)).astype(np.float32))
        writer.finish()

    def evict(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    class Draws:
        """Stands for the run's training data: a uniformly random view per sample and epoch."""

        def __len__(self):
            return n

        def view_indices(self, epoch):
            return torch.randint(v, (n,), generator=torch.Generator().manual_seed(epoch))

    def median_ms(fn, repeats, before=None):
        times = []
        for r in range(repeats):
            if before is not None:
                before()
            start = time.perf_counter()
            fn(r)
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times), min(times), max(times)

    seed_cache = TeacherCache(str(seed_folder))
    seed_file = str(seed_folder / 'logits_epoch0000.npy')
    results = []
    opened = {}

    def reopen_cold():
        # pages mapped by a process are not evicted: unmap (drop the reader), evict, then map the file again
        opened.clear()
        evict(str(logits_path))
        opened['lookup'] = EpochViewLogits(ViewCache(str(folder), read_through=False), Draws(), 'cpu')
    results.append(('complete: epoch gather of N rows, file not in page cache (read_through=False)',
                    median_ms(lambda r: opened['lookup'].epoch_logits(1000 + r), args.lookup_repeats,
                              before=reopen_cold), True))
    opened.clear()

    def open_cold(_):
        opened['cache'] = ViewCache(str(folder))
    results.append(('complete: opening, file not in page cache (reads the 1.62 GB file through, once per run)',
                    median_ms(open_cold, args.lookup_repeats, before=lambda: opened.clear() or evict(str(logits_path))),
                    None))
    results.append(('complete: opening, file in page cache', median_ms(open_cold, args.lookup_repeats), None))
    opened.clear()
    cache = ViewCache(str(folder))
    lookup = EpochViewLogits(cache, Draws(), 'cpu')
    np.asarray(cache.logits).sum(dtype=np.float64)  # read the whole file once: into the page cache
    results.append(('complete: epoch gather of N rows, file in page cache',
                    median_ms(lambda r: lookup.epoch_logits(r), args.lookup_repeats), True))

    def seed_epoch(_):
        seed_cache._current = None  # as when the run moves on to the next epoch's file
        seed_cache.epoch_logits(0)
    results.append(('per-seed: epoch load of N x C, file not in page cache',
                    median_ms(seed_epoch, args.lookup_repeats, before=lambda: evict(seed_file)), True))
    results.append(('per-seed: epoch load of N x C, file in page cache',
                    median_ms(seed_epoch, args.lookup_repeats), True))
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(n, (64,), generator=generator) for _ in range(1000)]
    lookup.epoch_logits(0)
    results.append(('per step: index the epoch table with 64 sample indices (+ cast to float32)',
                    median_ms(lambda r: lookup.lookup(0, batches[r]), 1000), False))
    views = [torch.randint(v, (64,), generator=generator) for _ in range(1000)]
    results.append(('per step, alternative: gather 64 (sample, view) rows straight from the file (in page cache)',
                    median_ms(lambda r: torch.from_numpy(cache.rows(batches[r], views[r])).float(), 1000), False))
    print(f'\nCIFAR-100-sized caches ({n:,} images, {v} views, {c} classes), CPU, torch threads '
          f'{args.threads or "default"}; median (min-max) over {args.lookup_repeats} epochs or 1,000 steps\n')
    print(f'| operation | median ms | min-max ms | per step of a {STEPS_PER_EPOCH}-step epoch |')
    print('|---|---:|---:|---:|')
    for name, (median, low, high), per_epoch in results:
        if per_epoch is None:
            per_step = 'once per run'
        else:
            per_step = f'{median / STEPS_PER_EPOCH * 1e3:,.0f} µs' if per_epoch else f'{median * 1e3:,.0f} µs'
        print(f'| {name} | {median:,.2f} | {low:,.2f}-{high:,.2f} | {per_step} |')


def part_steps(args, work: Path, overrides):
    import torch
    from torchdistill.common.main_util import set_seed

    from ttm_torchdistill.run.train import loop
    from ttm_torchdistill.run.machine.context import init_distributed
    from ttm_torchdistill.run.console import run_logging
    from ttm_torchdistill.run.options import RunOptions
    from ttm_torchdistill.run.prepare import prepare
    from ttm_torchdistill.run.train.meter import temperature_stats

    views, seeded = str(work / 'cache_views'), str(work / 'cache_seed0')
    for path in (views, seeded):
        if not os.path.isfile(os.path.join(path, 'metadata.json')):
            raise SystemExit(f'{path} is missing: run the build part first')
    fast = {'amp': 'bf16', 'channels_last': True}
    configurations = [
        ('device_data, live teacher', {'device_data': True}),
        ('device_data + per-seed cache', {'device_data': True, 'teacher_cache': seeded}),
        ('device_data + complete cache', {'device_data': True, 'teacher_cache': views}),
        ('per-seed cache + bf16 + channels_last', {'device_data': True, 'teacher_cache': seeded, **fast}),
        ('complete cache + bf16 + channels_last', {'device_data': True, 'teacher_cache': views, **fast}),
    ]
    configurations = [c for c in configurations if c[0] not in args.skip]

    class Bench:
        """One configuration built through the runner, stepping through epochs as the runner's loop does."""

        def __init__(self, name, flags):
            self.name = name
            opts = RunOptions(config=str(CONFIG), device='cpu', seed=0, overrides=overrides, runtime_flags=flags)
            ctx = init_distributed('cpu', 1, 'env://')
            set_seed(0)
            self.prepared = prepared = prepare(opts, ctx)
            self.session = session = loop.open_session(prepared, opts, ctx)  # box, wrapped student, step, meter
            self.box, self.ctx = session.box, ctx
            self.step_fn, self.recorder, self.meter = session.step_fn, session.recorder, session.meter
            self.epoch = -1
            self.batches = iter(())
            self.rates, self.step_ms = [], []

        def start_epoch(self):
            self.epoch += 1
            self.session.start_epoch(self.prepared, self.epoch)
            self.batches = iter(self.box.train_data_loader)

        def run(self, steps):
            images = 0
            start = time.perf_counter()
            for _ in range(steps):
                batch = next(self.batches, None)
                if batch is None:
                    self.start_epoch()
                    batch = next(self.batches)
                sample_batch, targets, supp_dict = batch
                loss = self.step_fn(sample_batch, targets, supp_dict)
                self.meter.add(loss, self.recorder.pop(), temperature_stats(self.box.criterion))
                images += sample_batch.shape[0]
            window = self.meter.read(self.ctx)
            seconds = time.perf_counter() - start
            if window.nonfinite_steps:
                raise SystemExit(f'{self.name}: non-finite loss')
            return images, seconds

    benches = []
    with run_logging(True, None):
        for name, flags in configurations:
            bench = Bench(name, flags)
            images, seconds = bench.run(args.warmup)
            print(f'built {name}; warm-up {args.warmup} steps {seconds:.1f}s', flush=True)
            benches.append(bench)
        for round_index in range(args.rounds):
            order = benches if round_index % 2 == 0 else benches[::-1]
            for bench in order:
                images, seconds = bench.run(args.chunk)
                bench.rates.append(images / seconds)
                bench.step_ms.append(seconds / args.chunk * 1e3)
            print(f'round {round_index + 1}/{args.rounds}: ' +
                  ', '.join(f'{b.name} {b.rates[-1]:.1f}' for b in benches), flush=True)
    live = statistics.median(benches[0].rates)
    print(f'\n{args.num_train} training images (random pixels), resnet32x4 (random weights) -> resnet8x4 WTTM, '
          f'batch 64, CPU, torch threads {torch.get_num_threads()}; {args.chunk} steps per configuration per round, '
          f'{args.rounds} interleaved rounds after {args.warmup} warm-up steps; epochs reached: '
          f'{max(b.epoch for b in benches) + 1}\n')
    print('| configuration | images/s (median) | min | max | ms per step (median) | vs live teacher (ratio of '
          'medians) | vs live teacher (median of per-round ratios) |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for bench in benches:
        median = statistics.median(bench.rates)
        per_round = statistics.median(r / base for r, base in zip(bench.rates, benches[0].rates))
        print(f'| {bench.name} | {median:,.1f} | {min(bench.rates):,.1f} | {max(bench.rates):,.1f} | '
              f'{statistics.median(bench.step_ms):,.0f} | {median / live:.2f}x | {per_round:.2f}x |')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', default='view_cache_bench', help='data, teacher checkpoint and caches go here')
    parser.add_argument('--parts', nargs='+', default=['build', 'lookup', 'steps'],
                        choices=('build', 'lookup', 'steps'))
    parser.add_argument('--num_train', type=int, default=64, help='training images of the build and steps parts')
    parser.add_argument('--build_batch', type=int, default=64, help='--batch-size of both cache-teacher commands')
    parser.add_argument('--lookup_repeats', type=int, default=7, help='epochs timed per lookup row')
    parser.add_argument('--rounds', type=int, default=10, help='interleaved rounds of the steps part')
    parser.add_argument('--chunk', type=int, default=5, help='timed steps of each configuration per round')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps of each configuration first')
    parser.add_argument('--skip', nargs='*', default=[], help='names of step configurations to leave out')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s); 1 is steadier on a shared machine')
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / 'tests'))
    import torch
    import torchvision

    from cifar_workdir import cifar_workdir, random_teacher

    logging.getLogger('ttm_torchdistill.run').setLevel(logging.INFO)
    work = cifar_workdir(args.workdir, args.num_train, 100, args.threads)
    print(f'torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}, '
          f'{os.cpu_count()} cores', flush=True)
    if 'build' in args.parts or 'steps' in args.parts:
        overrides = common_overrides(work, random_teacher(work))
    if 'build' in args.parts:
        part_build(args, work, overrides)
    if 'lookup' in args.parts:
        part_lookup(args, work)
    if 'steps' in args.parts:
        part_steps(args, work, overrides)
    print('\ncommand: python benchmarks/complete_cache.py ' + ' '.join(sys.argv[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
