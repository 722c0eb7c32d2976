"""``python -m ttm_torchdistill --config X.yaml [...]``: train and test a config
(:func:`ttm_torchdistill.run.runner.run`).

Problems with the user's input end with one ``error: ...`` line on stderr and exit code 1 (2 for command-line
syntax), without a traceback.
"""
import argparse
import sys
import textwrap
from typing import List, Optional

import torch

from ..cli import commands_help
from ..errors import error_line
from ..run.config.runtime import AMP_MODES
from ..run.runner import RunOptions, run

RUNTIME_FLAGS = ('device_data', 'amp', 'channels_last', 'compile', 'teacher_cache', 'holdout', 'holdout_seed',
                 'track', 'track_dir', 'track_project', 'track_name')

EPILOG = textwrap.dedent('''\
    examples:
      # train (distil) on one GPU, or on the CPU when no GPU is present
      python -m ttm_torchdistill --config configs/cifar100/wttm/wrn_16_2_from_wrn_40_2.yaml \\
          --run_log log/wrn_16_2_from_wrn_40_2.log --seed 0

      # check a config end to end offline in seconds (synthetic data, temporary checkpoints)
      python -m ttm_torchdistill --config configs/cifar100/wttm/wrn_16_2_from_wrn_40_2.yaml --smoke

      # override values of the YAML before anything is built
      python -m ttm_torchdistill --config X.yaml --set train.num_epochs=1 \\
          --set models.teacher_model.src_ckpt=/data/t.pth --set train.train_data_loader.kwargs.batch_size=32

      # continue a killed run at the epoch after its last-epoch checkpoint
      python -m ttm_torchdistill --config X.yaml --seed 0 --resume

      # watch it in TensorBoard (also wandb, trackio: offline, pip install -e ".[tensorboard]")
      python -m ttm_torchdistill --config X.yaml --track tensorboard --track-dir track
      tensorboard --logdir track/tensorboard

      # test the saved student (and teacher) only
      python -m ttm_torchdistill --config X.yaml -test_only

      # 4 GPUs (NCCL) or 4 CPU processes (gloo, add --device cpu); batch_size in the YAML is per process
      torchrun --nproc_per_node=4 -m ttm_torchdistill --config X.yaml --world_size 4

    ''') + commands_help()


def _default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def build_parser() -> argparse.ArgumentParser:
    """The train/test argument parser (torchdistill's example-runner flags plus --set/--resume/--smoke)."""
    parser = argparse.ArgumentParser(
        prog='python -m ttm_torchdistill',
        description='Train and test a torchdistill image-classification config (knowledge distillation with '
                    'TTM/WTTM, DIST, adaptive temperature, or plain training), on CPU, one GPU or torchrun.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, metavar='YAML',
                        help='experiment YAML, e.g. configs/cifar100/wttm/wrn_16_2_from_wrn_40_2.yaml')
    parser.add_argument('--device', default=None,
                        help='torch device: cuda when available, else cpu (e.g. --device cpu, --device cuda:1)')
    parser.add_argument('--run_log', metavar='FILE',
                        help='also append the log lines to FILE, e.g. --run_log log/run.log (rank 0 only)')
    parser.add_argument('--seed', type=int, help='seed of python/numpy/torch RNGs, e.g. --seed 0 (needed for '
                        'a reproducible --resume)')
    parser.add_argument('--start_epoch', default=0, type=int, metavar='N',
                        help='0-indexed epoch to start from without restoring state (prefer --resume), e.g. 10')
    parser.add_argument('-test_only', action='store_true',
                        help='skip training; test the student saved at dst_ckpt (and the teacher)')
    parser.add_argument('-student_only', action='store_true', help='do not test the teacher at the end')
    parser.add_argument('-log_config', action='store_true', help='log the loaded config')
    parser.add_argument('-disable_cudnn_benchmark', action='store_true',
                        help='turn off torch.backends.cudnn.benchmark during training')
    parser.add_argument('--world_size', default=1, type=int,
                        help='number of distributed processes; launch with torchrun --nproc_per_node=N')
    parser.add_argument('--dist_url', default='env://', help='process-group init URL (default env:// for torchrun)')
    parser.add_argument('--dist-timeout', '--dist_timeout', dest='dist_timeout', type=float, metavar='MINUTES',
                        help='timeout of collectives between ranks (default torch\'s: 10 min with NCCL, 30 with '
                             'gloo); building the datasets has its own 2-hour wait, e.g. --dist-timeout 60')
    parser.add_argument('-adjust_lr', action='store_true',
                        help='multiply the learning rate by the world size in distributed runs')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='override a value of the YAML before it is built; KEY is a dotted path, VALUE is '
                             'YAML (number, string, list or mapping); repeatable, e.g. --set train.num_epochs=1 '
                             '--set "train.scheduler.kwargs.milestones=[150, 180, 210]"')
    parser.add_argument('--resume', action='store_true',
                        help='continue from <dst_ckpt stem>.last<suffix> (written after every epoch) at the next '
                             'epoch, restoring model, optimizer, scheduler, best accuracy and RNG states')
    parser.add_argument('--continue-changed', '--continue_changed', dest='continue_changed', action='store_true',
                        help='with --resume: continue a run whose config (or --set values) changed since it started '
                             '(refused otherwise; more epochs are always allowed); the summary records the change')
    parser.add_argument('--overwrite', action='store_true',
                        help='let a new run replace the checkpoints and summary of another experiment (another '
                             'config) at its dst_ckpt (refused by default: give each config its own dst_ckpt)')
    parser.add_argument('--smoke', action='store_true',
                        help='offline end-to-end check in seconds: synthetic data of the configured size and '
                             'classes, 1 epoch of 2 tiny steps, evaluation, checkpoints in a temporary folder; '
                             'a missing teacher checkpoint is only a warning here')
    parser.add_argument('--allow_pickle', '--allow-pickle', dest='allow_pickle', action='store_true',
                        help='read src_ckpt files with torch.load(weights_only=False), which runs code stored in the '
                             'file: only for checkpoints you trust (default: weights_only=True)')
    parser.add_argument('--data-parallel', '--data_parallel', dest='data_parallel', action='store_true',
                        help='one process over every visible GPU with torch DataParallel (each GPU sees batch/N '
                             'samples); without it one process trains on --device\'s GPU only, and the configs\' '
                             'wrapper entries apply under torchrun only')
    _add_speed_options(parser)
    _add_track_options(parser)
    parser.add_argument('--traceback', action='store_true', help='show the Python traceback of errors')
    return parser


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    """The flags of the config's ``runtime:`` block."""
    speed = parser.add_argument_group('speed (the runtime: block of a config; these flags override it; nothing '
                                      'here changes what is learned)')
    speed.add_argument('--device-data', dest='device_data', action='store_const', const=True,
                       help='keep an in-memory uint8 dataset (CIFAR) on the device and augment batches there')
    speed.add_argument('--amp', choices=AMP_MODES, help='mixed precision: bf16 (CPU and CUDA) or fp16 (CUDA, with a '
                                                        'gradient scaler); off by default')
    speed.add_argument('--channels-last', dest='channels_last', action='store_const', const=True,
                       help='student, teacher and input batches in channels-last memory format')
    speed.add_argument('--compile', action='store_const', const=True, help='torch.compile student and teacher')
    speed.add_argument('--teacher-cache', dest='teacher_cache', metavar='DIR',
                       help='read teacher logits from DIR (written by the cache-teacher subcommand) instead of '
                            'running the teacher; needs --device-data')
    tuning = parser.add_argument_group('validation without the test set (also runtime.holdout, runtime.holdout_seed)')
    tuning.add_argument('--holdout', type=int, metavar='N',
                        help='validate on N training images held out (class-balanced), train on the rest; the test '
                             'set is read only by the final test')
    tuning.add_argument('--holdout-seed', dest='holdout_seed', type=int, metavar='S',
                        help='which N images are held out (default 0; the run seed does not change them)')


def _add_track_options(parser: argparse.ArgumentParser) -> None:
    """The tracking keys of the ``runtime:`` block (docs/tracking.md)."""
    track = parser.add_argument_group('tracking (runtime.track*: off by default; rank 0 writes, offline, nothing '
                                      'here changes what is learned; docs/tracking.md)')
    track.add_argument('--track', action='append', metavar='ENGINE',
                       help='write the run to tensorboard, wandb and/or trackio (repeatable or comma-separated, '
                            'off for none; each is an extra: pip install -e ".[tensorboard]"), e.g. --track '
                            'tensorboard --track wandb')
    track.add_argument('--track-dir', '--track_dir', dest='track_dir', metavar='DIR',
                       help='folder of the trackers\' files (default ./track): DIR/tensorboard/<run name>, '
                            'DIR/wandb (offline runs), DIR/trackio (its database)')
    track.add_argument('--track-project', '--track_project', dest='track_project', metavar='NAME',
                       help='W&B and trackio project (default ttm_torchdistill; a study passes its name)')
    track.add_argument('--track-name', '--track_name', dest='track_name', metavar='NAME',
                       help='the run\'s name in the trackers (default <experiment>/<variant>/seed<S>, variant base '
                            'or the --set values; a study passes its run id); runs group by all but its last part')


def runtime_flags(args: argparse.Namespace) -> dict:
    """The runtime options given as flags (an absent flag leaves the config's value)."""
    flags = {key: getattr(args, key) for key in RUNTIME_FLAGS if getattr(args, key) is not None}
    if 'track' in flags:  # repeated --track: one comma-separated text, checked with the config's values
        flags['track'] = ','.join(flags['track'])
    return flags


def main(argv: Optional[List[str]] = None) -> int:
    """Train and test the config of the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        options = RunOptions(
            config=args.config, device=args.device or _default_device(), run_log=args.run_log, seed=args.seed,
            start_epoch=args.start_epoch, test_only=args.test_only, student_only=args.student_only,
            log_config=args.log_config, disable_cudnn_benchmark=args.disable_cudnn_benchmark,
            world_size=args.world_size, dist_url=args.dist_url, dist_timeout_min=args.dist_timeout,
            adjust_lr=args.adjust_lr,
            overrides=args.overrides, resume=args.resume, continue_changed=args.continue_changed, smoke=args.smoke,
            allow_pickle=args.allow_pickle, overwrite=args.overwrite,
            runtime_flags=runtime_flags(args), data_parallel=args.data_parallel)
        return run(options)
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except Exception as exc:  # UserError: one line; anything else: one line too, unless --traceback is given
        if args.traceback:
            raise
        print(error_line(exc), file=sys.stderr)
        return 1
