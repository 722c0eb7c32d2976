"""The CIFAR-100 template: datasets block, models block and the header's teacher and launch sections.

Every CIFAR-100 experiment follows RepDistiller's set-up (TTM, DIST and ATKD all reuse it): torchvision's
CIFAR100 with RepDistiller's augmentation and statistics, the test split as validation and test set, teachers
from RepDistiller's checkpoints (``fetch-teachers``) or trained with the ``ce`` configs.
"""
from typing import List

from .schema import Experiment
from .yaml_text import line

DATASET = 'cifar100'
TITLE = 'CIFAR-100'
TRAIN_ID = 'cifar100_train'  # anchors of the datasets below, used by the loaders
EVAL_ID = 'cifar100_test'
NUM_CLASSES = 100

DATASETS = """\
datasets:
  # The CIFAR-100 root is written once, here; torchvision downloads the data into it on first use.
  &cifar100_train cifar100/train: !import_call
    _root: &root_dir './resource/dataset/cifar100'
    key: 'torchvision.datasets.CIFAR100'
    init:
      kwargs:
        root: *root_dir
        train: True
        download: True
        transform: !import_call
          key: 'torchvision.transforms.Compose'
          init:
            kwargs:
              transforms:
                - !import_call
                  key: 'torchvision.transforms.RandomCrop'
                  init:
                    kwargs:
                      size: 32
                      padding: 4
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
                    kwargs: &normalize_kwargs  # CIFAR-100 statistics of RepDistiller's dataset/cifar100.py
                      mean: [0.5071, 0.4867, 0.4408]
                      std: [0.2675, 0.2565, 0.2761]
  # The CIFAR-100 test split; RepDistiller (and so TTM, DIST, ATKD) evaluates on it every epoch and reports it,
  # so it is both the validation and the test set here. There is no held-out validation split.
  &cifar100_test cifar100/test: !import_call
    key: 'torchvision.datasets.CIFAR100'
    init:
      kwargs:
        root: *root_dir
        train: False
        download: True
        transform: !import_call
          key: 'torchvision.transforms.Compose'
          init:
            kwargs:
              transforms:
                - !import_call
                  key: 'torchvision.transforms.ToTensor'
                  init:
                - !import_call
                  key: 'torchvision.transforms.Normalize'
                  init:
                    kwargs: *normalize_kwargs

"""


def teacher_ckpt(name: str) -> str:
    """Where ``fetch-teachers`` puts RepDistiller's checkpoint of ``name`` (its own layout, epoch 240)."""
    return f'./resource/ckpt/cifar100/teachers/{name}_vanilla/ckpt_epoch_240.pth'


def models_block(exp: Experiment) -> str:
    """``models:``: one ``model`` for plain training, else the RepDistiller teacher and the student."""
    dst = line(4, 'dst_ckpt', f'./resource/ckpt/{exp.name}.pt')
    if exp.teacher is None:
        return ('models:\n  model:\n' + line(4, 'key', exp.student.key) + '    kwargs:\n'
                + line(6, 'num_classes', NUM_CLASSES) + line(4, 'src_ckpt') + dst)
    return ('models:\n  teacher_model:\n' + line(4, 'key', exp.teacher.key) + '    kwargs:\n'
            + line(6, 'num_classes', NUM_CLASSES) + line(4, 'src_ckpt', teacher_ckpt(exp.teacher.name))
            + '  student_model:\n' + line(4, 'key', exp.student.key) + '    kwargs:\n'
            + line(6, 'num_classes', NUM_CLASSES) + line(4, 'src_ckpt') + dst)


def recipe_text(exp: Experiment) -> str:
    """The header's recipe sentence."""
    r = exp.recipe
    script = " train_teacher.py" if exp.teacher is None else ''
    return (f"Recipe: {r.summary}{script} ({r.epochs.value} epochs, batch {r.batch_size.value}, SGD lr "
            f"{r.lr.value} momentum {r.momentum} wd 5e-4, x0.1 at {'/'.join(map(str, r.milestones.value))}). "
            'Validation and test use the CIFAR-100 test split, as RepDistiller does.')


def teacher_lines(exp: Experiment) -> List[str]:
    """How to get the teacher: fetch RepDistiller's checkpoint or train it with the ``ce`` config."""
    if exp.teacher is None:
        return []
    t = exp.teacher.name
    return [f'Teacher ({t}, RepDistiller checkpoint, {exp.teacher.top1:.2f} top-1 in the papers): fetch it with',
            f'  python -m ttm_torchdistill fetch-teachers --names {t}',
            'or train it yourself and point src_ckpt at the result:',
            f'  python -m ttm_torchdistill --config configs/cifar100/ce/{t}.yaml',
            f'  ... --set models.teacher_model.src_ckpt=./resource/ckpt/cifar100/ce/{t}.pt']


def as_teacher_lines(exp: Experiment, is_teacher: bool) -> List[str]:
    """For a ``ce`` config of a teacher: how to distil from its result."""
    if exp.teacher is not None or not is_teacher:
        return []
    name = exp.student.name
    return ['Use the result as a teacher with',
            f'  --set models.teacher_model.src_ckpt=./resource/ckpt/cifar100/ce/{name}.pt',
            f"(or fetch RepDistiller's checkpoint: python -m ttm_torchdistill fetch-teachers --names {name})"]


def launch_lines(exp: Experiment, batch_statistics: bool) -> List[str]:
    """How to run it: one GPU, as the papers did; what each multi-GPU variant would change."""
    r = exp.recipe
    batch, lr = r.batch_size.value, r.lr.value
    intra = (" and DIST's intra-class term correlates those 8 samples, not 64: it is computed per process, "
             'with no all-gather' if batch_statistics else '')
    return [
        'One GPU (or CPU):',
        f'  python -m ttm_torchdistill --config {exp.path}',
        'CIFAR-100 runs are single-GPU, for fidelity to the papers (RepDistiller, TTM, DIST and ATKD trained '
        f'on 1 GPU with batch {batch}). To use several GPUs, run several experiments or seeds side by side, one per '
        'GPU (CUDA_VISIBLE_DEVICES=k python -m ttm_torchdistill ...), instead of torchrun.',
        'Eight GPUs on one node change the experiment (batch_size is per process):',
        f'  torchrun --nproc_per_node=8 -m ttm_torchdistill --config {exp.path} --world_size 8',
        f'As is, {batch} per process gives a global batch of {batch * 8} at lr {lr}; with '
        f'--set train.train_data_loader.kwargs.batch_size={batch // 8} the global batch is {batch} again, but '
        f'BatchNorm normalises over {batch // 8} samples per GPU{intra}, unless a model entry says sync_bn: True '
        '(the runner then converts its BatchNorm layers to SyncBatchNorm on GPUs).',
    ]
