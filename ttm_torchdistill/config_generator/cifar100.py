"""The CIFAR-100 template: the datasets and models blocks, and the command that runs a config.

Every CIFAR-100 experiment follows RepDistiller's set-up (TTM, DIST, ATKD, DKD and MLKD all reuse it):
torchvision's CIFAR100 with RepDistiller's augmentation and statistics, the test split as validation and test set,
teachers from RepDistiller's checkpoints (``fetch-teachers``) or trained with the ``ce`` configs.
"""
from typing import Any, Dict, Sequence, Tuple

from .blocks import compose, import_call, model_entry, transform
from .schema import Experiment
from .yaml_emit import Alias, Key, Node

DATASET = 'cifar100'
TITLE = 'CIFAR-100'
TRAIN_ID = 'cifar100_train'  # anchors of the datasets below, used by the loaders
EVAL_ID = 'cifar100_test'
NUM_CLASSES = 100
ROOT = './resource/dataset/cifar100'
NORMALIZE_ID = 'normalize_kwargs'
NORMALIZE = {'mean': [0.5071, 0.4867, 0.4408], 'std': [0.2675, 0.2565, 0.2761]}


def train_transform(middle: Sequence[Node] = (), normalize: Any = Alias(NORMALIZE_ID)) -> Node:
    """RepDistiller's training pipeline (crop 32 with padding 4, flip, ToTensor, Normalize), ``middle`` (e.g. MLKD's
    strong augmentation) after the flip; ``normalize`` is the Normalize kwargs (the shared anchor by default)."""
    return compose([transform('RandomCrop', {'size': 32, 'padding': 4}),
                    transform('RandomHorizontalFlip', {'p': 0.5}),
                    *middle,
                    transform('ToTensor'),
                    transform('Normalize', normalize)])


def _cifar100(train: bool, transforms: Node, above: Tuple[str, ...]) -> Node:
    """torchvision's CIFAR100 split; the training split writes the root once (``&root_dir``)."""
    return import_call('torchvision.datasets.CIFAR100',
                       {'root': Alias('root_dir'), 'train': train, 'download': True, 'transform': transforms},
                       before={'_root': Node(ROOT, anchor='root_dir')} if train else None, above=above)


def datasets() -> Dict[Key, Node]:
    """``datasets:``: the training and test splits, the root and the normalisation written once (anchors)."""
    normalize = Node(NORMALIZE, anchor=NORMALIZE_ID, comment="CIFAR-100 statistics of RepDistiller's "
                                                              'dataset/cifar100.py')
    test = compose([transform('ToTensor'), transform('Normalize', Alias(NORMALIZE_ID))])
    return {
        Key('cifar100/train', TRAIN_ID): _cifar100(True, train_transform(normalize=normalize), above=(
            'The CIFAR-100 root is written once, here; torchvision downloads the data into it on first use.',)),
        Key('cifar100/test', EVAL_ID): _cifar100(False, test, above=(
            'The CIFAR-100 test split; RepDistiller (and so TTM, DIST, ATKD) evaluates on it every epoch and '
            'reports it,', 'so it is both the validation and the test set here. There is no held-out validation '
                           'split.')),
    }


def teacher_ckpt(name: str) -> str:
    """Where ``fetch-teachers`` puts RepDistiller's checkpoint of ``name`` (its own layout, epoch 240)."""
    return f'./resource/ckpt/cifar100/teachers/{name}_vanilla/ckpt_epoch_240.pth'


def _dst_ckpt(exp: Experiment, is_teacher: bool) -> Any:
    path = f'./resource/ckpt/{exp.name}.pt'
    return Node(path, comment='as a teacher: --set models.teacher_model.src_ckpt=<this path>') if is_teacher else path


def models(exp: Experiment, is_teacher: bool) -> Dict[str, Any]:
    """``models:``: one ``model`` for plain training, else the RepDistiller teacher and the student."""
    kwargs = {'num_classes': NUM_CLASSES}
    if exp.teacher is None:
        return {'model': model_entry(exp.student.key, kwargs, None, _dst_ckpt(exp, is_teacher))}
    t = exp.teacher
    where = Node(teacher_ckpt(t.name), above=(
        f"RepDistiller's checkpoint ({t.top1:.2f} top-1 in the papers): python -m ttm_torchdistill fetch-teachers "
        f'--names {t.name}', f'(or train configs/cifar100/ce/{t.name}.yaml and point src_ckpt at its result)'))
    return {'teacher_model': model_entry(t.key, kwargs, where),
            'student_model': model_entry(exp.student.key, dict(kwargs), None, _dst_ckpt(exp, False))}


def command(exp: Experiment) -> str:
    """The command that runs the config as the papers did: one process (one GPU, or the CPU)."""
    return f'python -m ttm_torchdistill --config {exp.path}'
