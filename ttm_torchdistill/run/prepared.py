"""What the first stage of a run hands to the others: one :class:`Prepared` object.

The type lives apart from :mod:`.prepare`, which builds it, so that the stages using it (:mod:`.train`,
:mod:`.final_evaluation`) import the type and nothing of how it is built.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence

from torch import nn

from .config.runtime import Runtime
from .data.fast_path import CachedTeacher, DeviceData
from .machine.seeding import RunSeed
from .track import TrackPlan


@dataclass
class Prepared:
    """What the training, test and summary stages work on.

    :param config: the constructed config (a smoke-run copy under ``--smoke``), datasets not included.
    :param datasets: dataset id -> dataset.
    :param teacher: the teacher on the device (None without ``models.teacher_model``).
    :param student: the student as built from ``models:`` on the device (never wrapped).
    :param student_name: ``'student_model'`` or ``'model'``.
    :param dst_ckpt: where the best student is saved (user paths expanded).
    :param identity: seed, config digests, overrides and code version of the run (``checkpoint.run_identity``).
    :param config_tree: the composed config after ``--set`` as JSON data (:mod:`.config.identity`).
    :param seed: the run's seed, the same on every rank (:mod:`.seeding`).
    :param resume_checkpoint: the last-epoch checkpoint ``--resume`` continues from, as rank 0 read it (every rank
        holds the same content), else None.
    :param runtime: the speed options of the run (``runtime:`` block, ``--set runtime.*``, flags).
    :param device_data: the device-resident datasets (``runtime.device_data``), else None.
    :param cached_teacher: the stand-in teacher reading ``runtime.teacher_cache`` (checked against this run), else
        None.
    :param smoke_dir: the temporary folder of a smoke run (removed at the end), else None.
    :param device_ids: the ``device_ids`` torchdistill's box hands to model wrappers
        (:func:`~ttm_torchdistill.run.machine.fit_to_machine.box_device_ids`).
    :param build_test_set: builds the datasets only the test loader reads, for the final test (None when there are
        none): a run that validates on a held-out split never reads the test set before training ends.
    :param holdout: the held-out split's record for the summary (:func:`.config.holdout.holdout_record`), else None.
    :param track_plan: the trackers the run writes to (config ``tracker:`` and ``runtime.track``; none under
        ``--smoke`` and ``-test_only``), else None.
    """
    config: Dict[str, Any]
    datasets: Dict[str, Any]
    teacher: Optional[nn.Module]
    student: nn.Module
    student_name: str
    dst_ckpt: str
    identity: Dict[str, Any]
    config_tree: Any = None
    seed: RunSeed = RunSeed(0, drawn=False)
    resume_checkpoint: Optional[Dict[str, Any]] = None
    runtime: Runtime = Runtime()
    device_data: Optional[DeviceData] = None
    cached_teacher: Optional[CachedTeacher] = None
    smoke_dir: Optional[str] = None
    device_ids: Optional[Sequence[int]] = None
    build_test_set: Optional[Callable[[], Dict[str, Any]]] = None
    holdout: Optional[Dict[str, Any]] = None
    track_plan: Optional[TrackPlan] = None

    @property
    def train_config(self) -> Dict[str, Any]:
        return self.config['train']
