"""torchdistill mid-level losses: thin adapters over :mod:`ttm_torchdistill.functional`.

Each adapter reads the student and teacher logits from torchdistill's io dicts, checks its
hyperparameters once at construction, and returns only its distillation term (batch mean). Cross-entropy
and the loss weights are combined in YAML with torchdistill's ``WeightedSumLoss``.

Per batch an adapter checks only what can be checked without reading a tensor's values (types, dtypes,
shapes), then runs the same computation as the public function of :mod:`ttm_torchdistill.functional`,
without repeating that function's hyperparameter checks. Nothing is read back to the host during a
training step: the ``'max_logit'`` temperature is kept as a device tensor in ``last_temperature``, and
``DKDLoss`` asserts the range of its targets on the device.

Registered keys: ``TTMLoss``, ``WTTMLoss``, ``ATDISTLoss``, ``ATKDLoss``, ``DKDLoss``, ``MLKDLoss``.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ._core import kernels
from ._core import mlkd as _mlkd
from ._core.io_dict import read_io
from ._registry import mid_level_loss
from .checks.tensors import assert_target_range_on_device, check_logits, check_targets, check_two_views
from .checks.values import (
    MAX_LOGIT, Temperature, check_epoch, check_flag, check_non_negative, check_teacher_only_max, check_temperature,
    check_view_temperature, check_warmup_epochs,
)

__all__ = ['TTMLoss', 'WTTMLoss', 'ATDISTLoss', 'ATKDLoss', 'DKDLoss', 'MLKDLoss']


class _LogitDistillationLoss(nn.Module):
    """Base of the adapters: where the logits come from, and the temperature they share.

    Adapters forward their ``**paths`` here, so the four path arguments are declared once; a misspelt argument
    of any adapter ends up here and raises ``TypeError``.

    With ``temperature='max_logit'``, :attr:`last_temperature` holds the last batch's per-sample
    temperatures (:func:`ttm_torchdistill.functional.resolve_temperature` of its logits): shape :math:`(N,)`,
    detached, on the logits' device.

    :param temperature: a positive number or ``'max_logit'``.
    :param teacher_only_max: with ``'max_logit'``, take the maximum logit of the teacher only.
    :param student_module_path: module path of the student's logits (``'.'``: the model output).
    :param student_module_io: ``'input'`` or ``'output'`` of that module.
    :param teacher_module_path: module path of the teacher's logits.
    :param teacher_module_io: ``'input'`` or ``'output'`` of that module.
    """

    def __init__(self, temperature: Temperature, teacher_only_max: bool, *, student_module_path: str = '.',
                 student_module_io: str = 'output', teacher_module_path: str = '.', teacher_module_io: str = 'output'):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.teacher_only_max = check_teacher_only_max(teacher_only_max, self.temperature)
        for name, value in (('student_module_path', student_module_path), ('student_module_io', student_module_io),
                            ('teacher_module_path', teacher_module_path), ('teacher_module_io', teacher_module_io)):
            if not isinstance(value, str):
                raise TypeError(f'{name} must be a string, got {value!r}')
        self.student_module_path, self.student_module_io = student_module_path, student_module_io
        self.teacher_module_path, self.teacher_module_io = teacher_module_path, teacher_module_io
        #: Per-sample temperatures of the last batch when temperature is 'max_logit': shape (N,), detached, on
        #: the logits' device. Never read back here; the progress line summarises it.
        self.last_temperature: Optional[Tensor] = None

    @staticmethod
    def _read(io_dict: dict, path: str, io: str, model: str) -> Tensor:
        return read_io(io_dict, path, io, model, f'{model}_module_path/_io and the forward hooks of the {model}')

    def _logits(self, student_io_dict: dict, teacher_io_dict: dict) -> Tuple[Tensor, Tensor]:
        """The logits of this batch, their types and shapes checked (metadata only: nothing is read back)."""
        student = self._read(student_io_dict, self.student_module_path, self.student_module_io, 'student')
        teacher = self._read(teacher_io_dict, self.teacher_module_path, self.teacher_module_io, 'teacher')
        check_logits(student, teacher)
        return student, teacher.detach()

    def _evaluate(self, kernel, student: Tensor, teacher: Tensor, standardize: bool = False,
                  **hyperparameters) -> Tensor:
        """Run a loss kernel with the hyperparameters checked at construction, resolving the temperature once.

        The same core as the public functions, without their per-call hyperparameter checks. With
        ``'max_logit'`` the per-sample temperature the kernel used is kept, as a device tensor, in
        :attr:`last_temperature`.
        """
        loss, temperature = kernels.evaluate(kernel, student, teacher, self.temperature, self.teacher_only_max,
                                        standardize, **hyperparameters)
        if isinstance(self.temperature, str):  # 'max_logit'
            self.last_temperature = temperature.reshape(-1)  # computed under no_grad: already detached
        return loss

    def extra_repr(self) -> str:
        names = [n for n in self._hyperparameters if n != 'teacher_only_max' or self.teacher_only_max]
        return ', '.join(f'{n}={getattr(self, n)!r}' for n in names)

    _hyperparameters = ('temperature', 'teacher_only_max')


@mid_level_loss()
class TTMLoss(_LogitDistillationLoss):
    r"""Transformed Teacher Matching (TTM): KL from the temperature-scaled teacher to the plain student.

    .. math::
        \mathcal{L}_{TTM} = \frac{1}{N}\sum_i D_{KL}\left(\sigma(v_i / T) \,\|\, \sigma(z_i)\right), \qquad T = 1/\gamma

    Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching", ICLR 2024.
    Authors' code: https://github.com/zkxufo/TTM. Math: :func:`ttm_torchdistill.functional.ttm_loss`.

    :param temperature: :math:`T = 1/\gamma` of the teacher-side power transform (the paper's tables list
        :math:`\gamma`), or ``'max_logit'`` for a per-sample :math:`T_i` (Matsuyama et al., 2025).
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher's logits only.
    :param paths: ``student_module_path``, ``student_module_io``, ``teacher_module_path``,
        ``teacher_module_io``: where the :math:`(N, C)` logits are read (default: each model's output).

    The weight :math:`\beta` of the paper goes on the sub-term; there is no :math:`T^2` factor.

    .. code-block:: yaml

        ttm:
          criterion:
            key: 'TTMLoss'
            kwargs:
              temperature: 10.0  # gamma = 0.1
          weight: 45.0  # beta, vgg13 -> vgg8 (TTM Table 8)
    """

    def __init__(self, temperature: Temperature, teacher_only_max: bool = False, **paths: str):
        super().__init__(temperature, teacher_only_max, **paths)

    _weighted = False

    def forward(self, student_io_dict: dict, teacher_io_dict: dict, targets: Optional[Tensor] = None) -> Tensor:
        return self._evaluate(kernels.ttm, *self._logits(student_io_dict, teacher_io_dict), weighted=self._weighted)


@mid_level_loss()
class WTTMLoss(TTMLoss):
    r"""Weighted TTM (WTTM): TTM with each sample weighted by the teacher's power sum :math:`U_\gamma(p^t)`.

    .. math::
        \mathcal{L}_{WTTM} = \frac{1}{N}\sum_i U_\gamma(p^t_i)\,
        D_{KL}\left(\sigma(\gamma v_i) \,\|\, \sigma(z_i)\right),
        \qquad U_\gamma(p) = \sum_j p_j^\gamma,\ p^t_i = \sigma(v_i),\ \gamma = 1/T

    Zheng & Yang, ICLR 2024 (Eq. 23). Authors' code: https://github.com/zkxufo/TTM.
    Math: :func:`ttm_torchdistill.functional.wttm_loss`.

    :param temperature: :math:`T = 1/\gamma`, or ``'max_logit'`` (per-sample :math:`T_i`, also the exponent of U).
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher's logits only.
    :param paths: ``student_module_path``, ``student_module_io``, ``teacher_module_path``,
        ``teacher_module_io``: where the :math:`(N, C)` logits are read (default: each model's output).

    .. code-block:: yaml

        wttm:
          criterion:
            key: 'WTTMLoss'
            kwargs:
              temperature: 1.25  # gamma = 0.8
          weight: 1.6  # beta, ResNet-34 -> ResNet-18 on ImageNet (TTM Table 10)
    """

    _weighted = True


@mid_level_loss()
class ATDISTLoss(_LogitDistillationLoss):
    r"""DIST relation loss with the authors' eps, and optionally the max-logit adaptive temperature.

    .. math::
        \mathcal{L}_{DIST} = \tau^2\left(\beta\,\big(1 - \overline{\rho}_{inter}\big)
        + \gamma\,\big(1 - \overline{\rho}_{intra}\big)\right)

    with Pearson correlations of :math:`\sigma(Z/\tau)` between student and teacher per sample (inter-class)
    and per class across the batch (intra-class). Registered as ``ATDISTLoss`` because torchdistill already
    registers ``DISTLoss``; unlike that one it adds eps to the product of the norms, as the authors do, and
    accepts ``temperature: 'max_logit'``.

    Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022. Authors' code:
    https://github.com/hunto/image_classification_sota. Math: :func:`ttm_torchdistill.functional.dist_loss`.

    :param beta: :math:`\beta`, inter-class weight.
    :param gamma: :math:`\gamma`, intra-class weight.
    :param temperature: :math:`\tau` (the loss includes :math:`\tau^2`), or ``'max_logit'``.
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher's logits only.
    :param paths: ``student_module_path``, ``student_module_io``, ``teacher_module_path``,
        ``teacher_module_io``: where the :math:`(N, C)` logits are read (default: each model's output).

    .. warning::
        The intra-class term sees the per-process batch (torchdistill's ``batch_size`` is per process).
        A batch of one sample has no intra-class relation: that term is then left out with a warning.

    .. code-block:: yaml

        dist:
          criterion:
            key: 'ATDISTLoss'
            kwargs:
              beta: 1.0
              gamma: 1.0
              temperature: 4.0  # tau on CIFAR-100 (authors' dist_cifar.yaml)
          weight: 2.0
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: Temperature = 1.0,
                 teacher_only_max: bool = False, **paths: str):
        super().__init__(temperature, teacher_only_max, **paths)
        self.beta, self.gamma = check_non_negative(beta, 'beta'), check_non_negative(gamma, 'gamma')

    _hyperparameters = ('beta', 'gamma', 'temperature', 'teacher_only_max')

    def forward(self, student_io_dict: dict, teacher_io_dict: dict, targets: Optional[Tensor] = None) -> Tensor:
        return self._evaluate(kernels.dist, *self._logits(student_io_dict, teacher_io_dict), beta=self.beta,
                              gamma=self.gamma, eps=kernels.DIST_EPS)


@mid_level_loss()
class ATKDLoss(_LogitDistillationLoss):
    r"""KD with the max-logit adaptive temperature on standardised logits (Matsuyama et al., 2025).

    .. math::
        \mathcal{L} = \frac{1}{N}\sum_i T_i^2\,
        D_{KL}\left(\sigma(\hat z^t_i / T_i) \,\|\, \sigma(\hat z^s_i / T_i)\right),
        \qquad T_i = \frac{1+\sqrt{3}}{2}\max_j \max(|\hat z^s_{ij}|, |\hat z^t_{ij}|)

    where :math:`\hat z` are the z-scored logits. The defaults are the paper's method; ``temperature: 4.0,
    standardize: False`` is Hinton KD with the :math:`T^2` factor, and a number with ``standardize: True``
    is logit-standardised KD (Sun et al., CVPR 2024).

    Matsuyama et al., "Adaptive Temperature Based on Logits Correlation in Knowledge Distillation",
    arXiv:2503.09030. Authors' code: https://github.com/kei813121/atkd. Math:
    :func:`ttm_torchdistill.functional.kd_loss`.

    :param temperature: ``'max_logit'`` or a positive number :math:`T`.
    :param standardize: z-score both logits over the classes first.
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher's logits only.
    :param paths: ``student_module_path``, ``student_module_io``, ``teacher_module_path``,
        ``teacher_module_io``: where the :math:`(N, C)` logits are read (default: each model's output).

    .. warning::
        The abstract says the temperature comes from the teacher's maximum logit only; the authors' code
        uses the maximum over both models. The default follows the code; ``teacher_only_max: True`` follows
        the abstract.

    .. code-block:: yaml

        atkd:
          criterion:
            key: 'ATKDLoss'
            kwargs:
              temperature: 'max_logit'
              standardize: True
          weight: 9.0  # with CE weight 0.1 (authors' README, resnet32x4 -> resnet8x4)
    """

    def __init__(self, temperature: Temperature = MAX_LOGIT, standardize: bool = True,
                 teacher_only_max: bool = False, **paths: str):
        super().__init__(temperature, teacher_only_max, **paths)
        self.standardize = check_flag(standardize, 'standardize')

    _hyperparameters = ('temperature', 'standardize', 'teacher_only_max')

    def forward(self, student_io_dict: dict, teacher_io_dict: dict, targets: Optional[Tensor] = None) -> Tensor:
        return self._evaluate(kernels.kd, *self._logits(student_io_dict, teacher_io_dict), self.standardize)


@mid_level_loss()
class DKDLoss(_LogitDistillationLoss):
    r"""Decoupled KD (target and non-target terms), optionally standardised with the max-logit temperature.

    .. math::
        \mathcal{L}_{DKD} = \min(e / E_w, 1)\,
        \frac{1}{N}\sum_i T_i^2\left(\alpha\,\mathrm{TCKD}_i + \beta\,\mathrm{NCKD}_i\right)

    Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022 (https://github.com/megvii-research/mdistiller);
    the adaptive temperature inside DKD as in https://github.com/kei813121/atkd. Math:
    :func:`ttm_torchdistill.functional.dkd_loss`.

    The warm-up needs the epoch, which torchdistill does not pass to losses: the plugin's
    ``eval_teacher_and_set_loss_epoch`` calls :meth:`set_epoch` before every epoch. With ``warmup_epochs > 0``
    and no epoch set, :meth:`forward` raises instead of silently skipping the warm-up.

    :meth:`forward` checks the targets' dtype and shape, and asserts their range on the device
    (``torch._assert_async``) rather than reading it back every step: on the CPU an out-of-range target
    raises ``RuntimeError`` at once; on CUDA it triggers a device-side assert, the same failure as
    cross-entropy with that target.

    :param alpha: :math:`\alpha`, weight of the target-class term.
    :param beta: :math:`\beta`, weight of the non-target-class term.
    :param temperature: :math:`T` or ``'max_logit'``.
    :param standardize: z-score both logits over the classes first.
    :param warmup_epochs: :math:`E_w`, epochs of linear warm-up (0: none).
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher's logits only.
    :param paths: ``student_module_path``, ``student_module_io``, ``teacher_module_path``,
        ``teacher_module_io``: where the :math:`(N, C)` logits are read (default: each model's output).

    .. code-block:: yaml

        dkd:
          criterion:
            key: 'DKDLoss'
            kwargs:
              alpha: 1.0
              beta: 8.0
              temperature: 4.0
              warmup_epochs: 20
          weight: 1.0
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: Temperature = 4.0,
                 standardize: bool = False, warmup_epochs: int = 20, teacher_only_max: bool = False, **paths: str):
        super().__init__(temperature, teacher_only_max, **paths)
        self.alpha, self.beta = check_non_negative(alpha, 'alpha'), check_non_negative(beta, 'beta')
        self.standardize = check_flag(standardize, 'standardize')
        self.warmup_epochs = check_warmup_epochs(warmup_epochs)
        self.epoch: Optional[int] = None

    _hyperparameters = ('alpha', 'beta', 'temperature', 'standardize', 'warmup_epochs', 'teacher_only_max')

    def set_epoch(self, epoch: int) -> None:
        """Set the current epoch, counted from 1 as in the authors' code (warm-up factor epoch / warmup_epochs)."""
        self.epoch = check_epoch(epoch)

    def forward(self, student_io_dict: dict, teacher_io_dict: dict, targets: Optional[Tensor] = None) -> Tensor:
        if targets is None:
            raise ValueError('DKDLoss needs the class targets; torchdistill passes them to criteria, got None')
        if self.warmup_epochs > 0 and self.epoch is None:
            raise RuntimeError(
                f'DKDLoss(warmup_epochs={self.warmup_epochs}) needs the current epoch: set '
                "train.pre_epoch_process: 'eval_teacher_and_set_loss_epoch' (it calls set_epoch), call set_epoch() "
                'yourself, or set warmup_epochs: 0')
        student, teacher = self._logits(student_io_dict, teacher_io_dict)
        n, c = student.shape
        check_targets(targets, n, c)
        assert_target_range_on_device(targets, c)
        return self._evaluate(kernels.dkd, student, teacher, self.standardize, targets=targets, alpha=self.alpha,
                              beta=self.beta, factor=kernels.warmup_factor(self.epoch, self.warmup_epochs))


#: Where :class:`MLKDLoss` reads each view by default: the identity taps of ``TwoViewModel`` (``two_view.py``).
_WEAK_VIEW_PATHS = {'student_module_path': 'weak', 'teacher_module_path': 'weak'}


@mid_level_loss()
class MLKDLoss(_LogitDistillationLoss):
    r"""Multi-Level Logit Distillation (MLKD) on a weak and a strong view of each image.

    .. math::
        \mathcal{L}_{MLKD} = \sum_{T \in (T_w, 3, 5, 2, 6)} \Big(f_s\,\mathrm{KD}_T(w) + f_s\,\mathrm{BC}_T(w)
        + f_c\,\mathrm{CC}_T(w)\Big) + \sum_{T \in (T_s, 3, 5)} \mathrm{KD}_T(s) + \sum_{T \in (2, 6)} \mathrm{KD}_T(w)

    Instance-level KD on both views, batch-level (:math:`N \times N`) and class-level (:math:`C \times C`)
    consistency on the weak view, at the configured temperature and MLKD's fixed 2, 3, 5 and 6; :math:`f_s` and
    :math:`f_c` are the fractions of samples and classes whose teacher confidence is at most the median.

    Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023; with logit standardisation and the max-logit
    temperature as in https://github.com/kei813121/atkd (``distiller_zoo/mlkd.py``). Authors' code:
    https://github.com/Jin-Ying/Multi-Level-Logit-Distillation. Math, and the quirks of the authors' code
    reproduced by default: :func:`ttm_torchdistill.functional.mlkd_loss`.

    The two views come from ``TwoViewDataset`` (a batch of ``(weak, strong)`` pairs) and ``TwoViewModel`` on the
    student and the teacher (one forward per view; hook their ``weak`` and ``strong`` outputs):
    :mod:`ttm_torchdistill.views.two_view`. Cross-entropy on both views is two ``SimpleLossWrapper`` sub-terms reading
    ``weak`` and ``strong``.

    :param temperature: :math:`T_v`: a positive number (the authors' ``--kd_T``) or ``'max_logit'`` (per sample,
        each view from its own logits; with ``standardize: True`` the authors' ``--logit_stand --mlogit_temp``).
    :param standardize: z-score all logits over the classes first (logit standardisation).
    :param teacher_only_max: with ``'max_logit'``, take the maximum over the teacher's logits only.
    :param code_faithful: the authors' value, quirks included (default); ``False``: masks select samples and
        classes, and the strong-view KD sum reads the strong view at every temperature.
    :param student_strong_module_path: module path of the student's strong-view logits (default ``'strong'``).
    :param student_strong_module_io: ``'input'`` or ``'output'`` of that module.
    :param teacher_strong_module_path: module path of the teacher's strong-view logits (default ``'strong'``).
    :param teacher_strong_module_io: ``'input'`` or ``'output'`` of that module.
    :param paths: ``student_module_path``, ``student_module_io``, ``teacher_module_path``, ``teacher_module_io``:
        where the weak view's :math:`(N, C)` logits are read (default: ``'weak'``, ``'output'``).

    With ``'max_logit'``, :attr:`last_temperature` has shape :math:`(2, N)`: the weak view's temperatures, then
    the strong view's.

    .. warning::
        The default reproduces the authors' code, whose masks scale the weak-view terms by the fraction of
        samples (classes) below the median instead of selecting them, and whose strong-view KD sum reads the weak
        view at :math:`T = 2` and :math:`6`; ``code_faithful: False`` gives the reading without these quirks.

    .. code-block:: yaml

        mlkd:
          criterion:
            key: 'MLKDLoss'
            kwargs:
              temperature: 'max_logit'
              standardize: True
          weight: 9.0  # beta, with 0.1 on each view's CE (logit-standardisation default)
    """

    def __init__(self, temperature: Temperature = 4.0, standardize: bool = False, teacher_only_max: bool = False,
                 code_faithful: bool = True, *, student_strong_module_path: str = 'strong',
                 student_strong_module_io: str = 'output', teacher_strong_module_path: str = 'strong',
                 teacher_strong_module_io: str = 'output', **paths: str):
        super().__init__(temperature, teacher_only_max, **{**_WEAK_VIEW_PATHS, **paths})
        if isinstance(self.temperature, Tensor):
            check_view_temperature(self.temperature, self.teacher_only_max)
        self.standardize = check_flag(standardize, 'standardize')
        self.code_faithful = check_flag(code_faithful, 'code_faithful')
        for name, value in (('student_strong_module_path', student_strong_module_path),
                            ('student_strong_module_io', student_strong_module_io),
                            ('teacher_strong_module_path', teacher_strong_module_path),
                            ('teacher_strong_module_io', teacher_strong_module_io)):
            if not isinstance(value, str):
                raise TypeError(f'{name} must be a string, got {value!r}')
        self.student_strong_module_path, self.student_strong_module_io = \
            student_strong_module_path, student_strong_module_io
        self.teacher_strong_module_path, self.teacher_strong_module_io = \
            teacher_strong_module_path, teacher_strong_module_io

    _hyperparameters = ('temperature', 'standardize', 'teacher_only_max', 'code_faithful')

    def forward(self, student_io_dict: dict, teacher_io_dict: dict, targets: Optional[Tensor] = None) -> Tensor:
        student_weak = self._read(student_io_dict, self.student_module_path, self.student_module_io, 'student')
        teacher_weak = self._read(teacher_io_dict, self.teacher_module_path, self.teacher_module_io, 'teacher')
        student_strong = self._read(student_io_dict, self.student_strong_module_path, self.student_strong_module_io,
                                    'student')
        teacher_strong = self._read(teacher_io_dict, self.teacher_strong_module_path, self.teacher_strong_module_io,
                                    'teacher')
        check_two_views(student_weak, teacher_weak, student_strong, teacher_strong)
        loss, (t_weak, t_strong) = _mlkd.evaluate(student_weak, teacher_weak, student_strong, teacher_strong,
                                                    self.temperature, self.teacher_only_max, self.standardize,
                                                    self.code_faithful)
        if isinstance(self.temperature, str):  # 'max_logit': (N, 1) each, computed under no_grad
            self.last_temperature = torch.stack([t_weak.reshape(-1), t_strong.reshape(-1)])
        return loss
