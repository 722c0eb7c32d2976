"""torchdistill's training box as the runner uses it: built, its student wrapped, its stages, its trainable heads.

Trainable parts must reach the optimizer, checked when the box is built, before the first step. A module may declare
parameters that must be trained (``required_trainable_parameters()``, e.g. the embedding head of
:class:`~ttm_torchdistill.feature_losses.PenultimateEmbedding`). torchdistill builds the optimizer from the parameters
that require gradients when the box is set up; a teacher block with ``requires_grad: False`` freezes its whole
auxiliary wrapper, head included, and then runs the teacher under ``torch.no_grad()``, where no forward-time check can
see the head. So :func:`check_trainable_heads` compares the declared parameters with the optimizer's.
"""
import logging
from typing import Any, Dict, Iterator, Tuple

import torch
from torch import nn
from torchdistill.core.distillation import get_distillation_box
from torchdistill.core.training import get_training_box

from ...errors import RunError
from ..config.component_errors import explain_box_failure
from ..config.runtime import Runtime, compile_wrapper
from ..machine.context import DistContext, ensure_ddp, unwrap
from ..prepared import Prepared

logger = logging.getLogger('ttm_torchdistill.run')


def setup_box(prepared: Prepared, ctx: DistContext, lr_factor: float, teacher):
    """torchdistill's Distillation- (or Training-) Box for ``train:``; a failure is explained by config path."""
    student, datasets, train_config = prepared.student, prepared.datasets, prepared.train_config
    # The wrappers of the config copy were fitted to the run (machine.fit); these ids go with them.
    device_ids = prepared.device_ids if prepared.device_ids is not None else ctx.device_ids
    try:
        if teacher is None:
            return get_training_box(student, datasets, train_config, ctx.device, device_ids,
                                    ctx.distributed, lr_factor)
        return get_distillation_box(teacher, student, datasets, train_config, ctx.device, device_ids,
                                    ctx.distributed, lr_factor)
    except RunError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise explain_box_failure(exc, prepared.config) from None


def student_of(box) -> torch.nn.Module:
    """The (possibly wrapped or redesigned) student module the box trains."""
    return box.model if hasattr(box, 'model') else box.student_model


def set_student(box, model) -> None:
    if hasattr(box, 'model'):
        box.model = model
    else:
        box.student_model = model


def wrap_student(box, ctx: DistContext, runtime: Runtime) -> None:
    """DistributedDataParallel around the box's student when distributed (any device), then compiled as a whole."""
    student = ensure_ddp(student_of(box), ctx)
    if ctx.distributed:
        compile_wrapper(student, runtime)
    set_student(box, student)


def fast_forward_stages(box, epochs_done: int) -> None:
    """Advance a multi-stage box (torchdistill's ``MultiStages*Box``) as its post-epoch process would have."""
    if not hasattr(box, 'stage_end_epoch'):
        return
    box.current_epoch = epochs_done
    while box.stage_end_epoch <= epochs_done < box.num_epochs:
        box.advance_to_next_stage()


def stage_config(train_config: Dict[str, Any], box) -> Dict[str, Any]:
    """The config of the stage the box is in (the whole ``train:`` block for single-stage configs)."""
    stage = getattr(box, 'stage_number', None)
    return train_config[f'stage{stage}'] if stage is not None else train_config


def stage_where(box) -> str:
    """The config path of the stage the box is in (``train`` or ``train.stageN``)."""
    stage = getattr(box, 'stage_number', None)
    return f'train.stage{stage}' if stage is not None else 'train'


def warn_teacher_mode(prepared: Prepared) -> None:
    """torchdistill's default pre-epoch process leaves a freshly built teacher in train mode."""
    train_config = prepared.train_config
    if prepared.teacher is not None and 'pre_epoch_process' not in train_config and 'stage1' not in train_config:
        logger.warning('train.pre_epoch_process is not set: torchdistill\'s default leaves the teacher in train '
                       'mode; set it to \'eval_teacher_and_set_loss_epoch\'')


def _box_models(box) -> Iterator[Tuple[str, nn.Module]]:
    teacher = getattr(box, 'teacher_model', None)
    if teacher is not None:
        yield 'teacher', unwrap(teacher)
    yield 'student', unwrap(student_of(box))


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
