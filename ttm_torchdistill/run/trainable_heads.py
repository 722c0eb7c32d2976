"""Trainable parts that must reach the optimizer: checked when the box is built, before the first step.

A module may declare parameters that must be trained (``required_trainable_parameters()``, e.g. the embedding head
of :class:`~ttm_torchdistill.feature_losses.PenultimateEmbedding`). torchdistill builds the optimizer from the
parameters that require gradients when the box is set up; a teacher block with ``requires_grad: False`` freezes its
whole auxiliary wrapper, head included, and then runs the teacher under ``torch.no_grad()``, where no forward-time
check can see the head. So the runner compares the declared parameters with the optimizer's.
"""
from typing import Iterator, Tuple

from torch import nn

from ..errors import RunError
from .distributed import unwrap


def _box_models(box) -> Iterator[Tuple[str, nn.Module]]:
    teacher = getattr(box, 'teacher_model', None)
    if teacher is not None:
        yield 'teacher', unwrap(teacher)
    yield 'student', unwrap(box.student_model if hasattr(box, 'student_model') else box.model)


def _advice(role: str, where: str) -> str:
    if role == 'teacher':
        return (f"set requires_grad: True and frozen_modules: ['model'] in {where}.teacher (the teacher's own weights "
                f'stay frozen, the head is trained)')
    return f'set requires_grad: True in {where}.student and do not list the head in its frozen_modules'


def check_trainable_heads(box, where: str) -> None:
    """Every parameter a module of the box declares trainable requires gradients and is in the box's optimizer.

    :param where: the training stage's config path (``train`` or ``train.stageN``), for the message.
    :raises RunError: naming the wrapper, the parameters left out and the config change that trains them.
    """
    in_optimizer = {id(p) for group in box.optimizer.param_groups for p in group['params']}
    for role, model in _box_models(box):
        for module in model.modules():
            declared = getattr(module, 'required_trainable_parameters', None)
            if not callable(declared):
                continue
            left_out = [name for name, p in declared() if not p.requires_grad or id(p) not in in_optimizer]
            if left_out:
                raise RunError(f'{where}.{role}.auxiliary_model_wrapper ({type(module).__name__}): '
                               f'{", ".join(left_out)} would not be trained (frozen, so not in the optimizer) and '
                               f'would stay at its random initialisation; {_advice(role, where)}; or give the wrapper '
                               f'trainable: False if a fixed head is intended')
