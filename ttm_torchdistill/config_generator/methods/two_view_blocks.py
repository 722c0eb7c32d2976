"""MLKD's configs (Jin, Wang & Lin, CVPR 2023): two views of each image, one forward per view, CE on both views.

The training loader wraps the dataset in ``TwoViewDataset`` (its own transform is the weak view; the strong view
adds the authors' ``RandAugment(2, 10)`` with Cutout, ``StrongAugment``, after the crop and flip), ``TwoViewModel``
runs the teacher and the student once per view, and the criterion is ``gamma * (CE(weak) + CE(strong)) + beta *
MLKD`` as in the max-logit code's loop (kei813121/atkd ``helper/loops.py``). What each piece does and how it was
checked against the authors' code: docs/mlkd.md.
"""
from typing import Any, Dict

from .. import cifar100
from ..blocks import import_call, loss, sourced, student_logits_ce
from ..schema import Experiment
from ..yaml_emit import Node
from .model_blocks import Block, ModelBlocks, forward_hook, trained

#: The module paths of ``TwoViewModel`` whose outputs are the two views' logits (``MLKDLoss`` reads them).
VIEWS = ('weak', 'strong')


def _two_view_model(role: str) -> Node:
    return Node({'key': 'TwoViewModel'}, comment=f'runs the {role} once per view (per-view BatchNorm statistics)')


def two_view_dataset(exp: Experiment) -> Node:
    """``TwoViewDataset`` on the training split: the weak view is its transform, the strong view RepDistiller's
    crop and flip, the authors' strong augmentation, ToTensor and the shared normalisation."""
    if exp.dataset != cifar100.DATASET:
        raise ValueError(f'{exp.name}: MLKD configs are written for {cifar100.DATASET} only (the strong view is the '
                         f"authors' CIFAR pipeline), not {exp.dataset}")
    augment = import_call('ttm_torchdistill.views.StrongAugment', {'num_ops': sourced(exp.param('num_ops'))})
    return Node({'key': 'TwoViewDataset', 'kwargs': {'strong_transform': cifar100.train_transform((augment,))}},
                comment="items (weak and strong view, target): the dataset's own transform is the weak view")


def two_view_teacher(exp: Experiment) -> Block:
    """The frozen teacher, once per view."""
    return {'forward_proc': 'forward_batch_only', 'sequential': [],
            'auxiliary_model_wrapper': _two_view_model('teacher'), 'forward_hook': forward_hook([], VIEWS),
            'requires_grad': False}


def two_view_student(exp: Experiment) -> Block:
    """The student, once per view; its checkpoint holds the student alone (the wrapper has no parameters)."""
    return {'forward_proc': 'forward_batch_only', 'adaptations': None, 'sequential': [],
            **trained({'auxiliary_model_wrapper': _two_view_model('student'),
                       'forward_hook': forward_hook([], VIEWS)})}


def mlkd_terms(exp: Experiment) -> Dict[str, Any]:
    """CE on each view (the authors' ``gamma``, on ``CE(weak) + CE(strong)``) plus ``weight`` * MLKDLoss."""
    ce = sourced(exp.param('ce_weight'), as_float=True)
    kwargs = {'temperature': sourced(exp.param('temperature'), as_float=True),
              'standardize': sourced(exp.param('standardize')),
              'code_faithful': sourced(exp.param('code_faithful'))}
    criterion = loss('MLKDLoss', kwargs, comment="reads the 'weak' and 'strong' logits of both models")
    return {'ce_weak': student_logits_ce(ce, 'weak'), 'ce_strong': student_logits_ce(ce, 'strong'),
            'mlkd': {**criterion, 'weight': sourced(exp.param('weight'), as_float=True)}}


TWO_VIEW_BLOCKS = ModelBlocks(two_view_dataset, two_view_teacher, two_view_student)
