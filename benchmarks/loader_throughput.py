"""Training-loader throughput: torch DataLoader + PIL transforms vs the device-resident loader, on the CPU.

Writes a CIFAR-100 look-alike in torchvision's on-disk format (random pixels; the writer of the runner tests,
``tests/runner_support.write_tiny_cifar100``), opens it as a real ``torchvision.datasets.CIFAR100`` with the
shipped CIFAR-100 training transform (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize),
and times one full epoch (shuffled, batch 64, last partial batch kept) of:

* the stock path as torchdistill builds it: ``DataLoader(BaseDatasetWrapper(dataset), sampler=RandomSampler)``
  with ``num_workers`` 0 and 2 (workers start per epoch, as with the configs' ``persistent_workers`` unset);
* the same loaders as the runner rebuilds them (``run/data/sample_streams.py``: every sample's augmentation drawn
  from generators seeded by (seed, epoch, index), the main process's generators put back after each batch), to
  measure what the per-sample seeding costs;
* ``DeviceLoader`` over ``DeviceDataset.from_torchvision(dataset, device='cpu')``.

Runs alternate within each repeat so that load from other processes affects all of them alike; the table
gives medians over repeats. Only the loaders run (no model), so this is the ceiling each puts on training.

    python benchmarks/loader_throughput.py --num_train 10000 --repeats 5

torchvision verifies the real CIFAR files by md5; this script alone switches that check off for its own files.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)  # as in configs/cifar100/*


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--num_train', type=int, default=10000, help='training images to generate')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2], help='num_workers of the stock loader')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads of the main process (the device loader runs there)')
    parser.add_argument('--workdir', default=None, help='where to write the data (default: a temporary folder)')
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / 'tests'))
    import torch
    import torchvision
    import torchvision.datasets.cifar as cifar
    from torch.utils.data import DataLoader, RandomSampler
    from torchdistill.datasets.wrapper import BaseDatasetWrapper
    from torchvision import transforms as T

    from runner_support import write_tiny_cifar100
    from ttm_torchdistill.run.data.device_dataset import DeviceDataset
    from ttm_torchdistill.run.data.device_loader import DeviceLoader
    from ttm_torchdistill.run.data.sample_streams import seeded_loader

    torch.set_num_threads(args.threads)
    cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)  # generated files: no md5 to match
    workdir = args.workdir or tempfile.mkdtemp(prefix='loader_throughput_')
    write_tiny_cifar100(workdir, num_train=args.num_train, num_test=10)
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(p=0.5), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    dataset = torchvision.datasets.CIFAR100(workdir, train=True, download=False, transform=transform)

    def stock(workers):
        def epoch():
            loader = DataLoader(BaseDatasetWrapper(dataset), batch_size=args.batch_size,
                                sampler=RandomSampler(dataset), num_workers=workers, drop_last=False)
            return sum(images.shape[0] for images, _, _ in loader)
        return epoch

    def per_sample(workers):
        epochs = iter(range(1_000_000))

        def epoch():
            loader = seeded_loader(DataLoader(BaseDatasetWrapper(dataset), batch_size=args.batch_size,
                                              sampler=RandomSampler(dataset), num_workers=workers, drop_last=False),
                                   run_seed=0)
            loader.batch_sampler.set_epoch(next(epochs))
            return sum(images.shape[0] for images, _, _ in loader)
        return epoch

    device_data = DeviceDataset.from_torchvision(dataset, device='cpu', seed=0)
    device_loader = DeviceLoader(device_data, args.batch_size, shuffle=True)

    def device_epoch():
        return sum(images.shape[0] for images, _, _ in device_loader)  # each iteration is the next epoch

    runs = {f'torch DataLoader + PIL transforms, num_workers={w}': stock(w) for w in args.workers}
    runs.update({f'the same, per-sample streams (the runner), num_workers={w}': per_sample(w) for w in args.workers})
    runs['DeviceLoader (device=cpu)'] = device_epoch
    rates = {name: [] for name in runs}
    for fn in runs.values():  # warm-up: imports, page cache, first worker start
        fn()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            count = fn()
            rates[name].append(count / (time.perf_counter() - start))

    stock_names = [name for name in runs if name.startswith('torch DataLoader')]
    baseline = statistics.median(rates[stock_names[0]])
    best_stock = max(statistics.median(rates[name]) for name in stock_names)
    print(f'\n{args.num_train} CIFAR-100-format training images, batch {args.batch_size}, one shuffled epoch per '
          f'run, median of {args.repeats} interleaved runs; torch {torch.__version__}, torchvision '
          f'{torchvision.__version__}, {os.cpu_count()} CPUs, main-process torch threads {args.threads}\n')
    print('| loader | images/s (median) | min | max | vs num_workers=0 | vs best stock |')
    print('|---|---:|---:|---:|---:|---:|')
    for name, values in rates.items():
        median = statistics.median(values)
        print(f'| {name} | {median:,.0f} | {min(values):,.0f} | {max(values):,.0f} | {median / baseline:.1f}x '
              f'| {median / best_stock:.1f}x |')
    print('\ncommand: python benchmarks/loader_throughput.py ' + ' '.join(sys.argv[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
