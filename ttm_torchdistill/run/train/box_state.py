"""What a box trains or updates beyond the student built from ``models:``, for an exact ``--resume``.

A config may wrap the student in an auxiliary module with trainable heads (CRD's and ITRD's embeddings), give the
teacher a trainable part (CRD's teacher embedding), or use losses with state (CRD's memory bank and normaliser,
kept as buffers). None of that is in the student's checkpoint: the best checkpoint holds the student alone
(loadable by itself for evaluation), and the last-epoch checkpoint also holds this box state so that a resumed run
continues exactly.
"""
from typing import Any, Dict, Optional

from torch import nn

from ..._core.criterion_walk import named_term_roots
from ..machine.context import unwrap


def _box_modules(box, student: nn.Module) -> Dict[str, nn.Module]:
    """The modules whose state a resume needs, by a stable name."""
    modules: Dict[str, nn.Module] = dict()
    box_student = unwrap(box.student_model if hasattr(box, 'student_model') else box.model)
    if box_student is not student:
        modules['student_module'] = box_student
    teacher = getattr(box, 'teacher_model', None)
    if teacher is not None and any(p.requires_grad for p in unwrap(teacher).parameters()):
        modules['teacher_module'] = unwrap(teacher)
    for name, module in named_term_roots(box.criterion).items():
        if module.state_dict():
            modules[f'criterion{"." + name if name else ""}'] = module
    return modules


def capture_box_state(box, student: nn.Module) -> Dict[str, Any]:
    """State dicts of the box's auxiliary modules, trainable teacher parts and stateful losses (may be empty)."""
    return {name: module.state_dict() for name, module in _box_modules(box, student).items()}


def restore_box_state(box, student: nn.Module, saved: Optional[Dict[str, Any]]) -> list:
    """Load what :func:`capture_box_state` saved; returns notes on what could not be matched (a changed config)."""
    notes = []
    saved = dict(saved or dict())
    for name, module in _box_modules(box, student).items():
        if name not in saved:
            notes.append(f'the checkpoint holds no state for {name}; it starts afresh')
            continue
        module.load_state_dict(saved.pop(name))
    for name in saved:
        notes.append(f'the checkpoint holds state for {name}, which this run does not have; ignored')
    return notes
