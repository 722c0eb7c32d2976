"""End-to-end check on a learnable synthetic CIFAR-100, offline: does each method actually distil?

Writes a CIFAR-100 look-alike in torchvision's on-disk format (100 classes, 50 training and 10 test images per
class; each class is a blocky 32x32 template under heavy Gaussian noise), trains a ``cifar_resnet20`` teacher
with cross-entropy, then ``cifar_resnet8`` students for a few epochs with CE only and with each shipped CIFAR
method (the shipped ``resnet20_from_resnet56`` configs, models and epochs overridden), and prints the report.
This says nothing about the papers' numbers; it shows the pipeline trains and transfers the teacher's knowledge.

    python benchmarks/synthetic_cifar100.py --workdir /tmp/synthetic_cifar100 --seeds 0 1

The student runs can go through the runner's fast path (the teacher is always trained the stock way, so every
variant distils from the same teacher): ``--runtime KEY=VALUE`` (repeatable) passes ``--set runtime.KEY=VALUE`` to
them, e.g. ``--runtime device_data=true``; ``--teacher-cache`` also builds, per seed, a teacher cache of the
student epochs with ``python -m ttm_torchdistill cache-teacher`` and has the distillation runs read it (it implies
``device_data=true``; the CE-only run has no teacher and runs without it). Use a separate ``--workdir`` per variant.
WTTM+CRD, WTTM+ITRD, MLKD and MLKD+AT run on the stock path only: their teacher hooks, CRD's dataset wrapper and
MLKD's two views are served by neither the teacher cache nor device data. ``--methods`` picks the student runs (the
teacher is always trained; ``ce`` is the CE-only student), e.g. only the MLKD rows:

    python benchmarks/synthetic_cifar100.py --workdir /tmp/synth_mlkd --seeds 0 1 --methods mlkd mlkd_at

    python benchmarks/synthetic_cifar100.py --workdir /tmp/synth_dev --seeds 0 1 --runtime device_data=true
    python benchmarks/synthetic_cifar100.py --workdir /tmp/synth_cache --seeds 0 1 --teacher-cache

torchvision verifies the real CIFAR-100 files by md5; this script alone switches that check off for its
synthetic files.
"""
import argparse
import os
import pickle
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ('kd', 'dist', 'ttm', 'wttm', 'atkd')
# Feature methods (teacher hooks, CRD's dataset wrapper) and MLKD (two views, the strong augmentation on PIL images):
# served by neither the teacher cache nor device data.
STOCK_ONLY_METHODS = ('wttm_crd', 'wttm_itrd', 'mlkd', 'mlkd_at')
STUDENT_RUNS = ('ce',) + METHODS + STOCK_ONLY_METHODS
SYNTHETIC_TRAIN_SIZE = 100 * 50  # classes x training images per class (write_dataset)
# CRD's memory bank and noise term follow the training-set size; 4096 negatives (of the 4950 other-class samples)
# in both the dataset wrapper and the loss. ITRD: an 8-epoch synthetic teacher has dead ReLU channels, whose
# constant columns the authors' eps 0 would turn into NaN; eps 1e-6 (the loss refuses them otherwise).
FEATURE_OVERRIDES = {
    'wttm_crd': [f'train.criterion.kwargs.sub_terms.crd.criterion.kwargs.{key}={value}'
                 for key, value in (('output_size', SYNTHETIC_TRAIN_SIZE), ('num_samples', SYNTHETIC_TRAIN_SIZE),
                                    ('num_negative_samples', 4096))]
    + ['train.train_data_loader.dataset_wrapper.kwargs.num_negative_samples=4096'],
    'wttm_itrd': ['train.criterion.kwargs.sub_terms.itrd.criterion.kwargs.eps=1e-6'],
}


def write_dataset(root: Path, signal: float = 0.3, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder = root / 'cifar-100-python'
    folder.mkdir(parents=True, exist_ok=True)
    templates = rng.normal(0, 1, (100, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)
    for split, per_class in (('train', 50), ('test', 10)):
        images = [np.clip((templates[c] * signal + rng.normal(0, 1, (per_class, 3, 32, 32))) * 50 + 128, 0, 255)
                  for c in range(100)]
        labels = [c for c in range(100) for _ in range(per_class)]
        data = np.concatenate(images).astype(np.uint8).reshape(len(labels), -1)
        with open(folder / split, 'wb') as fp:
            pickle.dump({'data': data, 'fine_labels': labels, 'coarse_labels': [0] * len(labels)}, fp)
    with open(folder / 'meta', 'wb') as fp:
        pickle.dump({'fine_label_names': [f'class{i}' for i in range(100)], 'coarse_label_names': ['x'] * 20}, fp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', default='synthetic_cifar100')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--teacher_epochs', type=int, default=8)
    parser.add_argument('--student_epochs', type=int, default=4)
    parser.add_argument('--runtime', action='append', default=[], metavar='KEY=VALUE',
                        help='runtime option of the student runs, passed as --set runtime.KEY=VALUE (repeatable)')
    parser.add_argument('--teacher-cache', dest='teacher_cache', action='store_true',
                        help='distillation runs read teacher logits from a cache built per seed (implies '
                             'device_data=true)')
    parser.add_argument('--methods', nargs='+', choices=STUDENT_RUNS, metavar='METHOD',
                        help=f'student runs to make, of {", ".join(STUDENT_RUNS)} (ce: the CE-only student; the '
                             'teacher is always trained); default: all, without the stock-only ones under '
                             '--runtime or --teacher-cache')
    args = parser.parse_args()
    runtime = [f'runtime.{assignment}' for assignment in args.runtime]
    if args.teacher_cache and 'runtime.device_data=true' not in runtime:
        runtime.append('runtime.device_data=true')
    if args.methods is None:
        selected = [m for m in STUDENT_RUNS if not (runtime and m in STOCK_ONLY_METHODS)]
    elif runtime and set(args.methods) & set(STOCK_ONLY_METHODS):
        parser.error(f'{sorted(set(args.methods) & set(STOCK_ONLY_METHODS))} run on the stock path only: drop them '
                     'or --runtime/--teacher-cache')
    else:
        selected = [m for m in STUDENT_RUNS if m in args.methods]
    import torchvision.datasets.cifar as cifar
    cifar.check_integrity = lambda *a, **k: True  # synthetic files: no md5 to match
    from ttm_torchdistill import cli, report

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    write_dataset(work / 'data')
    io = []
    for split in ('train', 'test'):
        io += ['--set', f'datasets.cifar100/{split}.init.kwargs.root=./data']
    for loader in ('train.train_data_loader', 'train.val_data_loader', 'test.test_data_loader'):
        io += ['--set', f'{loader}.kwargs.num_workers=0', '--set', f'{loader}.kwargs.pin_memory=false',
               '--set', f'{loader}.kwargs.persistent_workers=false']  # the configs keep workers; none here
    configs = REPO / 'configs' / 'cifar100'

    def epoch_overrides(epochs):
        return ['--set', f'train.num_epochs={epochs}', '--set', f'train.scheduler.kwargs.milestones=[{epochs - 1}]']

    def run(config, seed, epochs, *overrides):
        argv = ['--config', str(config), '--device', 'cpu', '--seed', str(seed), *io, *epoch_overrides(epochs)]
        for override in overrides:
            argv += ['--set', override]
        if cli.main(argv) != 0:
            raise SystemExit(f'run failed: {config}')

    teacher = './ckpt/teacher_resnet20.pt'
    run(configs / 'ce' / 'resnet56.yaml', 0, args.teacher_epochs, 'models.model.key=cifar_resnet20',
        f'models.model.dst_ckpt={teacher}')
    teacher_models = ['models.teacher_model.key=cifar_resnet20', f'models.teacher_model.src_ckpt={teacher}']
    summaries = []
    for seed in args.seeds:
        if 'ce' in selected:
            run(configs / 'ce' / 'resnet20.yaml', seed, args.student_epochs, 'models.model.key=cifar_resnet8',
                f'models.model.dst_ckpt=./ckpt/ce/resnet8_seed{seed}.pt',
                *[r for r in runtime if not r.startswith('runtime.teacher_cache=')])
            summaries.append(f'./ckpt/ce/resnet8_seed{seed}.json')
        cache = []
        if args.teacher_cache and set(selected) & set(METHODS):
            # One cache per seed serves every method: its metadata (teacher checkpoint, data, transforms, seed,
            # epochs) does not depend on the loss, and each run checks it against its own config.
            out = f'./cache/seed{seed}'
            argv = ['cache-teacher', '--config', str(configs / METHODS[0] / 'resnet20_from_resnet56.yaml'),
                    '--seed', str(seed), '--out', out, '--device', 'cpu', *io, *epoch_overrides(args.student_epochs)]
            for override in teacher_models:
                argv += ['--set', override]
            if cli.main(argv) != 0:
                raise SystemExit(f'cache-teacher failed for seed {seed}')
            cache = [f'runtime.teacher_cache={out}']
        for method in [m for m in selected if m != 'ce']:
            run(configs / method / 'resnet20_from_resnet56.yaml', seed, args.student_epochs, *teacher_models,
                'models.student_model.key=cifar_resnet8',
                f'models.student_model.dst_ckpt=./ckpt/{method}/resnet8_seed{seed}.pt',
                *FEATURE_OVERRIDES.get(method, ()), *runtime, *cache)
            summaries.append(f'./ckpt/{method}/resnet8_seed{seed}.json')
    print('\nteacher (cifar_resnet20, CE):')
    report.main(['./ckpt/teacher_resnet20.json'])
    print('students (cifar_resnet8):')
    return report.main(summaries)


if __name__ == '__main__':
    sys.exit(main())
