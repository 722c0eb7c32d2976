"""my_kd_loss: a distillation loss of one's own, registered in torchdistill's loss registry when imported."""
from torch import nn
from torch.nn import functional as F
from torchdistill.losses.registry import register_mid_level_loss


@register_mid_level_loss
class ReverseKDLoss(nn.Module):
    """Reverse KD: the KL divergence from the student to the teacher at temperature T, times T^2.

    L = T^2 / N * sum_i KL(softmax(z_i / T) || softmax(v_i / T)), with student logits z and teacher logits v.

    :param temperature: T > 0, softening both distributions.
    :param student_module_path: where the student's logits are read ('.': the model's output).
    :param student_module_io: 'input' or 'output' of that module.
    :param teacher_module_path: where the teacher's logits are read.
    :param teacher_module_io: 'input' or 'output' of that module.
    """

    def __init__(self, temperature=4.0, student_module_path='.', student_module_io='output',
                 teacher_module_path='.', teacher_module_io='output'):
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f'temperature must be a positive number, got {temperature!r}')
        self.temperature = float(temperature)
        self.student_module_path, self.student_module_io = student_module_path, student_module_io
        self.teacher_module_path, self.teacher_module_io = teacher_module_path, teacher_module_io

    def forward(self, student_io_dict, teacher_io_dict, targets=None):
        student = student_io_dict[self.student_module_path][self.student_module_io]
        teacher = teacher_io_dict[self.teacher_module_path][self.teacher_module_io].detach()
        log_q = F.log_softmax(student / self.temperature, dim=1)
        log_p = F.log_softmax(teacher / self.temperature, dim=1)
        kl = (log_q.exp() * (log_q - log_p)).sum(dim=1)
        return self.temperature ** 2 * kl.mean()
