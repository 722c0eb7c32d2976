"""The ILSVRC 2012 (ImageNet) template: datasets block, models block and the header's teacher and launch sections.

torchdistill's standard ImageNet set-up: ImageFolder trees, RandomResizedCrop/flip for training and
Resize(256)/CenterCrop(224) for evaluation; pretrained torchvision teachers; 32 per process on 8 processes.
"""
from typing import List

from .schema import Experiment
from .yaml_text import line

DATASET = 'ilsvrc2012'
TITLE = 'ILSVRC 2012 (ImageNet)'
TRAIN_ID = 'imagenet_train'
EVAL_ID = 'imagenet_val'
NUM_CLASSES = 1000
PROCESSES = 8  # the recipe's total batch is batch_size x PROCESSES

DATASETS = """\
datasets:
  # The ILSVRC 2012 root is written once, here: it must hold ImageFolder trees train/ and val/
  # (one sub-folder per class). ImageNet cannot be downloaded automatically.
  &imagenet_train ilsvrc2012/train: !import_call
    _root: &root_dir './resource/dataset/ilsvrc2012'
    key: 'torchvision.datasets.ImageFolder'
    init:
      kwargs:
        root: !join [*root_dir, '/train']
        transform: !import_call
          key: 'torchvision.transforms.Compose'
          init:
            kwargs:
              transforms:
                - !import_call
                  key: 'torchvision.transforms.RandomResizedCrop'
                  init:
                    kwargs:
                      size: &input_size [224, 224]
                - !import_call
                  key: 'torchvision.transforms.RandomHorizontalFlip'
                  init:
                    kwargs:
                      p: 0.5
                - !import_call
                  key: 'torchvision.transforms.ToTensor'
                  init:
                - !import_call
                  key: 'torchvision.transforms.Normalize'
                  init:
                    kwargs: &normalize_kwargs
                      mean: [0.485, 0.456, 0.406]
                      std: [0.229, 0.224, 0.225]
  &imagenet_val ilsvrc2012/val: !import_call
    key: 'torchvision.datasets.ImageFolder'
    init:
      kwargs:
        root: !join [*root_dir, '/val']
        transform: !import_call
          key: 'torchvision.transforms.Compose'
          init:
            kwargs:
              transforms:
                - !import_call
                  key: 'torchvision.transforms.Resize'
                  init:
                    kwargs:
                      size: 256
                - !import_call
                  key: 'torchvision.transforms.CenterCrop'
                  init:
                    kwargs:
                      size: *input_size
                - !import_call
                  key: 'torchvision.transforms.ToTensor'
                  init:
                - !import_call
                  key: 'torchvision.transforms.Normalize'
                  init:
                    kwargs: *normalize_kwargs

"""


def models_block(exp: Experiment) -> str:
    """``models:``: the torchvision teacher with its pretrained weights, and the student."""
    weights_enum, member = exp.teacher.weights
    return ('models:\n  teacher_model:\n' + line(4, 'key', exp.teacher.key)
            + '    _weights: &teacher_weights !import_get\n' + line(6, 'key', weights_enum)
            + '    kwargs:\n' + line(6, 'num_classes', NUM_CLASSES)
            + f"      weights: !getattr [*teacher_weights, '{member}']\n" + line(4, 'src_ckpt')
            + '  student_model:\n' + line(4, 'key', exp.student.key) + '    kwargs:\n'
            + line(6, 'num_classes', NUM_CLASSES) + line(4, 'src_ckpt')
            + line(4, 'dst_ckpt', f'./resource/ckpt/{exp.name}.pt'))


def recipe_text(exp: Experiment) -> str:
    """The header's recipe sentence."""
    r = exp.recipe
    batch = r.batch_size.value
    return (f"Recipe: {r.summary} ({r.epochs.value} epochs, SGD lr {r.lr.value} momentum {r.momentum} wd 1e-4, "
            f"x0.1 at {'/'.join(map(str, r.milestones.value))}, RandomResizedCrop(224)+flip / "
            f'Resize(256)+CenterCrop(224)), total batch {batch * PROCESSES} = {batch} per process x '
            f'{PROCESSES} processes.')


def teacher_lines(exp: Experiment) -> List[str]:
    """The teacher is torchvision's pretrained model: nothing to fetch or train."""
    t = exp.teacher
    return [f"Teacher: torchvision's {t.name} with weights {t.weights[1]} ({t.top1:.2f} top-1 in the papers); "
            'torchvision downloads them on first use, there is nothing to fetch or train.']


def as_teacher_lines(exp: Experiment, is_teacher: bool) -> List[str]:
    return []


def launch_lines(exp: Experiment, batch_statistics: bool) -> List[str]:
    """How to run it: 8 processes give the recipe's batch; what one GPU changes."""
    batch = exp.recipe.batch_size.value
    total = batch * PROCESSES
    eight = (f'batch_size {batch} is per process: {PROCESSES} processes give the recipe\'s total batch {total}')
    one = (f'On one GPU the batch is {batch}, not {total}: for the recipe\'s setting use {PROCESSES} processes, or '
           f'--set train.train_data_loader.kwargs.batch_size={total}')
    if batch_statistics:
        eight += (f", and DIST's intra-class term sees {batch} samples per process as in the official DIST runs "
                  f'({batch} per GPU on {PROCESSES} GPUs).')
        one += f" (DIST's intra-class term then sees {total} samples, not the official {batch})."
    else:
        eight += '.'
        one += '.'
    return ['One GPU (or CPU):',
            f'  python -m ttm_torchdistill --config {exp.path}',
            'Eight GPUs on one node:',
            f'  torchrun --nproc_per_node={PROCESSES} -m ttm_torchdistill --config {exp.path} '
            f'--world_size {PROCESSES}',
            eight, one]
