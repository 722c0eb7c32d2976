"""The ILSVRC 2012 (ImageNet) template: the datasets and models blocks, and the command that runs a config.

torchdistill's standard ImageNet set-up: ImageFolder trees, RandomResizedCrop/flip for training and
Resize(256)/CenterCrop(224) for evaluation; pretrained torchvision teachers; 32 per process on 8 processes.
"""
from typing import Any, Dict, Tuple

from .blocks import compose, import_call, import_get, model_entry, transform
from .schema import Experiment
from .yaml_emit import Alias, Key, Node

DATASET = 'ilsvrc2012'
TITLE = 'ILSVRC 2012 (ImageNet)'
TRAIN_ID = 'imagenet_train'
EVAL_ID = 'imagenet_val'
NUM_CLASSES = 1000
PROCESSES = 8  # the recipe's total batch is batch_size x PROCESSES
ROOT = './resource/dataset/ilsvrc2012'
NORMALIZE_ID = 'normalize_kwargs'


def _image_folder(split: str, transforms: Node, above: Tuple[str, ...] = ()) -> Node:
    """An ImageFolder tree below the root (``!join``); the training split writes the root once (``&root_dir``)."""
    return import_call('torchvision.datasets.ImageFolder',
                       {'root': Node([Alias('root_dir'), f'/{split}'], tag='!join'), 'transform': transforms},
                       before={'_root': Node(ROOT, anchor='root_dir')} if split == 'train' else None, above=above)


def datasets() -> Dict[Key, Node]:
    """``datasets:``: ImageFolder train and val trees below one root, the input size and normalisation shared."""
    normalize = Node({'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}, anchor=NORMALIZE_ID)
    train = compose([transform('RandomResizedCrop', {'size': Node([224, 224], anchor='input_size')}),
                     transform('RandomHorizontalFlip', {'p': 0.5}),
                     transform('ToTensor'),
                     transform('Normalize', normalize)])
    val = compose([transform('Resize', {'size': 256}),
                   transform('CenterCrop', {'size': Alias('input_size')}),
                   transform('ToTensor'),
                   transform('Normalize', Alias(NORMALIZE_ID))])
    return {
        Key('ilsvrc2012/train', TRAIN_ID): _image_folder('train', train, above=(
            'The ILSVRC 2012 root is written once, here: it must hold ImageFolder trees train/ and val/',
            '(one sub-folder per class). ImageNet cannot be downloaded automatically.')),
        Key('ilsvrc2012/val', EVAL_ID): _image_folder('val', val),
    }


def models(exp: Experiment, is_teacher: bool) -> Dict[str, Any]:
    """``models:``: the torchvision teacher with its pretrained weights, and the student."""
    t = exp.teacher
    weights_enum, member = t.weights
    weights = import_get(weights_enum, anchor='teacher_weights', comment=f"torchvision's {member} ({t.top1:.2f} top-1 "
                         'in the papers), downloaded on first use')
    return {'teacher_model': model_entry(t.key, {'num_classes': NUM_CLASSES,
                                                 'weights': Node([Alias('teacher_weights'), member], tag='!getattr')},
                                         extra={'_weights': weights}),
            'student_model': model_entry(exp.student.key, {'num_classes': NUM_CLASSES}, None,
                                         f'./resource/ckpt/{exp.name}.pt')}


def command(exp: Experiment) -> str:
    """The command that runs the config with the recipe's total batch: one process per GPU, eight GPUs."""
    return f'torchrun --nproc_per_node={PROCESSES} -m ttm_torchdistill --config {exp.path} --world_size {PROCESSES}'
