"""The ``train.teacher`` / ``train.student`` blocks, and what a method that needs its own gives instead.

A logit method only adds a criterion; a method with heads, hooks or a dataset wrapper (WTTM+CRD, WTTM+ITRD, MLKD)
gives :class:`ModelBlocks`, which :mod:`..render` writes where a logit method has the plain blocks below.
"""
import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

from ..schema import Experiment

Block = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ModelBlocks:
    """The parts of ``train:`` a method writes instead of the logit methods' defaults.

    :param dataset_wrapper: the train loader's ``dataset_wrapper:`` value, or None for none.
    :param teacher: the whole ``teacher:`` block.
    :param student: the whole ``student:`` block.
    """
    dataset_wrapper: Callable[[Experiment], Optional[Block]]
    teacher: Callable[[Experiment], Block]
    student: Callable[[Experiment], Block]


def forward_hook(inputs: Sequence[Any], outputs: Sequence[Any]) -> Block:
    """``forward_hook:``: the module paths whose inputs and outputs torchdistill records for the losses."""
    return {'input': list(inputs), 'output': list(outputs)}


def trained(middle: Optional[Block] = None) -> Block:
    """``middle`` (e.g. an auxiliary wrapper and hooks), then the end of a trained model's block: the DDP wrapper
    (the runner wraps the student whenever it runs distributed), ``requires_grad``, ``frozen_modules``."""
    return {**(middle or {}), 'wrapper': 'DistributedDataParallel', 'requires_grad': True, 'frozen_modules': []}


def plain_teacher() -> Block:
    """A frozen teacher read from its outputs (every logit method)."""
    return {'forward_proc': 'forward_batch_only', 'sequential': [], 'wrapper': 'DataParallel',
            'requires_grad': False}


def plain_student() -> Block:
    """A student (or a model trained alone) read from its outputs."""
    return {'forward_proc': 'forward_batch_only', 'adaptations': None, 'sequential': [], **trained()}
