"""Checks of the tensors the losses receive (types, dtypes, shapes): metadata only, except where a function says it
reads values back (class-index ranges).

Imports nothing but torch and the standard library.
"""
from typing import Tuple

import torch
from torch import Tensor


def check_logits(student_logits: Tensor, teacher_logits: Tensor,
                  names: Tuple[str, str] = ('student_logits', 'teacher_logits')) -> None:
    """Types, dtypes and shapes of the logits: metadata only, never a read of the values."""
    for name, value in zip(names, (student_logits, teacher_logits)):
        if not isinstance(value, Tensor):
            raise TypeError(f'{name} must be a torch.Tensor of shape (N, C), got {type(value).__name__}')
        if not value.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, got dtype {value.dtype}')
        if value.dim() != 2:
            raise ValueError(f'{name} must be 2-D logits of shape (N, C), got shape {tuple(value.shape)}')
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f'{names[0]} and {names[1]} must have the same shape (N, C), got '
                         f'{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}')
    n, c = student_logits.shape
    if n < 1 or c < 2:
        raise ValueError(f'logits must have at least 1 sample and 2 classes, got shape {(n, c)}')


def check_targets(targets: Tensor, n: int, c: int) -> None:
    """Type, dtype and shape of DKD's targets: metadata only (see the two range checks below)."""
    if not isinstance(targets, Tensor) or targets.dtype not in (torch.int64, torch.int32):
        raise TypeError('targets must be an integer tensor of class indices, got '
                        f'{getattr(targets, "dtype", type(targets).__name__)}')
    if targets.shape != (n,):
        raise ValueError(f'targets must have shape ({n},) to match the logits, got {tuple(targets.shape)}')


def check_target_range(targets: Tensor, c: int) -> None:
    """Raise ``ValueError`` naming the offending range; reads the minimum and maximum back in one copy."""
    low, high = torch.stack(torch.aminmax(targets)).tolist()
    if low < 0 or high >= c:
        raise ValueError(f'targets must be class indices in [0, {c - 1}], got values in [{low}, {high}]')


def assert_target_range_on_device(targets: Tensor, c: int) -> None:
    """The range check of the hot path: asserted by the device, without reading a value back.

    ``torch._assert_async`` raises ``RuntimeError`` at once on the CPU; on CUDA it queues a device-side
    assert, so a bad target surfaces as "device-side assert triggered" at a later CUDA call and leaves
    that process's CUDA context unusable: the same failure as ``F.cross_entropy`` (and DKD's own gather)
    with an out-of-range target, and the run stops either way.
    """
    _assert_async(((targets >= 0) & (targets < c)).all(), f'targets must be class indices in [0, {c - 1}]')


def _assert_async(condition: Tensor, message: str) -> None:
    # torch._assert_async has existed since torch 1.9; without it, gather's own bounds check still stops a run
    if hasattr(torch, '_assert_async'):
        torch._assert_async(condition, message)


def check_two_views(student_weak: Tensor, teacher_weak: Tensor, student_strong: Tensor,
                      teacher_strong: Tensor) -> None:
    """Types, dtypes and shapes of MLKD's four logits (metadata only): each view a pair of (N, C), both views alike."""
    check_logits(student_weak, teacher_weak, ('student_weak', 'teacher_weak'))
    check_logits(student_strong, teacher_strong, ('student_strong', 'teacher_strong'))
    if student_weak.shape != student_strong.shape:
        raise ValueError('the weak and strong views must have the same shape (N, C) (two views of the same images), '
                         f'got {tuple(student_weak.shape)} and {tuple(student_strong.shape)}')


def check_features(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f'{name} must be a tensor, got {type(x).__name__}')
    if x.dim() != 2:
        raise ValueError(f'{name} must have shape (N, D) (flattened penultimate features), got {tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'{name} must be a floating-point tensor, got {x.dtype}')


def check_feature_pair(student: Tensor, teacher: Tensor, same_width: bool) -> None:
    check_features(student, 'student features')
    check_features(teacher, 'teacher features')
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f'student and teacher features must have the same batch size, got {student.shape[0]} '
                         f'and {teacher.shape[0]}')
    if student.shape[0] < 2:
        raise ValueError(f'ITRD needs at least 2 samples per batch (batch statistics), got {student.shape[0]}')
    if same_width and student.shape[1] != teacher.shape[1]:
        raise ValueError(f'the embedded student features must have the teacher feature width: got '
                         f'{tuple(student.shape)} and {tuple(teacher.shape)} (set the embedding head\'s '
                         f'out_features to the teacher width {teacher.shape[1]})')
