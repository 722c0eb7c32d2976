"""Registered torchdistill pre-epoch process: distil from a teacher in eval mode and hand the epoch to the losses.

torchdistill 1.1.5's default ``pre_epoch_process`` puts the student in train mode but never touches the teacher, so
a freshly built teacher distils in train mode: BatchNorm normalises with batch statistics and updates its running
statistics, dropout is active. The authors' code of every method in this package (TTM/WTTM, DIST, DKD, ATKD)
distils from a teacher in eval mode.
"""
from torchdistill.core.interfaces.pre_epoch_proc import default_pre_epoch_process_with_teacher

from ._registry import pre_epoch_process
from ._core.criterion_walk import iter_loss_modules


@pre_epoch_process('eval_teacher_and_set_loss_epoch')
def eval_teacher_and_set_loss_epoch(self, epoch=None, **kwargs):
    """torchdistill's default pre-epoch work, then its two jobs: ``teacher.eval()``, and ``set_epoch(epoch + 1)``
    on every loss that has one (DKD's warm-up).

    Also registered under its first name, ``eval_teacher_pre_epoch_process``, which configs written for earlier
    versions use.

    ``epoch`` is torchdistill's 0-indexed epoch; losses receive the 1-indexed epoch as in the authors' code
    (DKD's warm-up ``min(epoch / warmup, 1)``).

    :param self: the :class:`torchdistill.core.distillation.DistillationBox`.
    :param epoch: 0-indexed epoch (also used by ``DistributedSampler.set_epoch``).
    :raises ValueError: if a loss needs the epoch and none was given.

    .. code-block:: yaml

        train:
          pre_epoch_process: 'eval_teacher_and_set_loss_epoch'
    """
    if not hasattr(self, 'teacher_model'):
        raise ValueError('eval_teacher_and_set_loss_epoch needs a teacher (DistillationBox); a teacher-less config '
                         'should leave train.pre_epoch_process unset')
    default_pre_epoch_process_with_teacher(self, epoch=epoch, **kwargs)
    self.teacher_model.eval()
    for module in iter_loss_modules(self.criterion):
        set_epoch = getattr(module, 'set_epoch', None)
        if callable(set_epoch):
            if epoch is None:
                raise ValueError(f'{type(module).__name__} needs the epoch (set_epoch), but the pre-epoch process '
                                 f'was called with epoch=None')
            set_epoch(epoch + 1)


#: The first name of :func:`eval_teacher_and_set_loss_epoch` (it did not say that the epoch reaches the losses).
eval_teacher_pre_epoch_process = pre_epoch_process('eval_teacher_pre_epoch_process')(eval_teacher_and_set_loss_epoch)
