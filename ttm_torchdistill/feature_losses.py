r"""Feature distillation combined with WTTM: trainable embedding heads, and ITRD as a torchdistill loss.

TTM's Appendix A.5 adds a feature-level loss to WTTM,
:math:`\mathcal{L} = H(y,q) + \beta\,U\,D + \mu\,\mathcal{L}_{dist}`, with CRD (:math:`\mu = 0.8`) or ITRD
(:math:`\mu = 1`). Both losses read the penultimate features (the pooled, flattened input of the classifier) through
small trainable heads. torchdistill never gives a loss module's
parameters to the optimizer, so the heads live in an auxiliary model wrapper around the model:

* ``PenultimateEmbedding`` (auxiliary model wrapper): the wrapped model plus a linear head (optionally
  L2-normalised) on its penultimate features. On the student it is trained with the student; on the teacher
  (CRD's ``embed_t``) the teacher block needs ``requires_grad: True`` and ``frozen_modules: ['model']``.
* ``ITRDLoss`` (mid-level loss): ITRD's correlation and mutual-information terms.
* CRD: torchdistill's own ``CRDLoss`` and ``CRDDatasetWrapper``, which compute what RepDistiller computes;
  ``docs/crd_itrd.md`` lists what was compared and the configuration they need.

Registered keys: ``PenultimateEmbedding`` (auxiliary model wrapper), ``ITRDLoss`` (mid-level loss).
"""
from typing import Optional

import torch
from torch import Tensor, nn
from torchdistill.models.wrapper import AuxiliaryModelWrapper

from . import feature_functional
from ._core.io_dict import read_io
from ._registry import auxiliary_model_wrapper, mid_level_loss
from .checks.values import check_alpha_it, check_flag, check_io, check_non_negative, check_positive_int, check_string

__all__ = ['EmbeddingHead', 'PenultimateEmbedding', 'ITRDLoss']


class EmbeddingHead(nn.Module):
    r"""Linear map of flattened features, optionally followed by row-wise L2 normalisation.

    With ``normalize=True`` this is CRD's ``Embed`` (Tian et al., ICLR 2020; ``crd/criterion.py`` of
    https://github.com/HobbitLong/RepDistiller): :math:`e = Wx + b,\ e \leftarrow e / \|e\|_2`. With
    ``normalize=False`` it is ITRD's ``Embed(n=1)`` (https://github.com/roymiles/ITRD, ``distiller_zoo/IT.py``).

    :param in_features: width of the flattened input features.
    :param out_features: width of the embedding (128 for CRD; the teacher's feature width for ITRD).
    :param normalize: L2-normalise each row (CRD).
    :param bias: whether the linear layer has a bias (True in both authors' codes).
    """

    def __init__(self, in_features: int, out_features: int, normalize: bool = True, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(check_positive_int(in_features, 'in_features'),
                                check_positive_int(out_features, 'out_features'),
                                bias=check_flag(bias, 'bias'))
        self.normalize = check_flag(normalize, 'normalize')

    def forward(self, x: Tensor) -> Tensor:
        x = self.linear(x.flatten(1))
        return feature_functional.l2_normalize(x) if self.normalize else x

    def extra_repr(self) -> str:
        return f'normalize={self.normalize}'


def _linear_in_features(module: nn.Module) -> Optional[int]:
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.Sequential) and len(module) > 0:
        return _linear_in_features(module[0])
    return None


@auxiliary_model_wrapper('PenultimateEmbedding')
class PenultimateEmbedding(AuxiliaryModelWrapper):
    r"""A model with a trainable embedding head on its penultimate features, for CRD and ITRD.

    ``forward(x, supp_dict=None)`` runs the wrapped model (under ``torch.no_grad()`` when it wraps the teacher),
    takes the features at ``input_module_path`` (flattened), and computes

    * ``features``: an identity module whose output is those flattened features (hook it to read them);
    * ``embed``: the :class:`EmbeddingHead` applied to them (hook its output);
    * ``supp``: an identity module called with ``supp_dict`` when one is given (hook its input: CRD's
      ``pos_idx`` and ``contrast_idx`` from torchdistill's ``CRDDatasetWrapper``);

    and returns the model's output (the logits), so logit losses read ``'.'`` as usual. The heads are CRD's
    ``embed_s``/``embed_t`` (Tian et al., "Contrastive Representation Distillation", ICLR 2020,
    https://github.com/HobbitLong/RepDistiller) and ITRD's student ``embed`` (Miles et al., BMVC 2022,
    https://github.com/roymiles/ITRD). In both authors' codes every head is in the optimizer's trainable list.

    The penultimate features of the plugin's CIFAR models are the input of the classifier:
    ``fc`` (``cifar_resnet*``, ``cifar_wrn_*``), ``linear`` (``cifar_ResNet50``, ``cifar_ShuffleV1/V2``),
    ``classifier`` (``cifar_vgg*``, ``cifar_MobileNetV2``), with ``input_module_io: 'input'``. That is the last
    feature (``feat[-1]``) the authors' loops hand to CRD and ITRD, also for ITRD's ``preact=True``.

    .. warning::
        On the teacher, torchdistill freezes every parameter of the wrapper when the teacher block says
        ``requires_grad: False``: CRD's ``embed_t`` would stay at its random initialisation, whereas RepDistiller
        trains it. Use ``requires_grad: True`` with ``frozen_modules: ['model']`` (the teacher's own weights stay
        frozen; the optimizer then sees the head). With ``trainable: True`` (default) the runner refuses, when it
        builds the training box, a head that does not reach the optimizer (:meth:`required_trainable_parameters`);
        :meth:`forward` also raises when it sees a frozen head with gradients enabled.

    :param input_module_path: path, inside the wrapped model, of the module whose input/output are the features.
    :param out_features: embedding width (CRD: 128; ITRD: the teacher's feature width).
    :param in_features: feature width; default: ``in_features`` of the ``nn.Linear`` at ``input_module_path``.
    :param input_module_io: ``'input'`` or ``'output'`` of that module.
    :param normalize: L2-normalise the embedding (CRD: True, ITRD: False).
    :param bias: bias of the linear layer.
    :param trainable: the head must be trained: the runner checks that it reaches the optimizer, and :meth:`forward`
        raises if it sees the head frozen with gradients enabled.
    :param teacher_model: the teacher (given by torchdistill for a teacher-side wrapper).
    :param student_model: the student (given by torchdistill for a student-side wrapper).
    :param device: given by torchdistill; unused (the box moves the modules).
    :param device_ids: given by torchdistill; unused.
    :param distributed: given by torchdistill; unused (the box wraps the whole wrapper).
    :param find_unused_parameters: given by torchdistill; unused.

    .. code-block:: yaml

        student:
          forward_proc: 'forward_batch_supp_dict'
          auxiliary_model_wrapper:
            key: 'PenultimateEmbedding'
            kwargs:
              input_module_path: 'fc'
              input_module_io: 'input'
              out_features: 128
              normalize: True
          forward_hook:
            input: ['supp']
            output: ['embed']
          requires_grad: True
    """

    def __init__(self, input_module_path: str, out_features: int, in_features: Optional[int] = None,
                 input_module_io: str = 'input', normalize: bool = True, bias: bool = True, trainable: bool = True,
                 teacher_model: Optional[nn.Module] = None, student_model: Optional[nn.Module] = None,
                 device=None, device_ids=None, distributed: bool = False, find_unused_parameters=None):
        super().__init__()
        if (teacher_model is None) == (student_model is None):
            raise ValueError('PenultimateEmbedding wraps exactly one model: give teacher_model or student_model '
                             '(torchdistill passes the one of the block the wrapper is configured in)')
        model = teacher_model if teacher_model is not None else student_model
        if not isinstance(model, nn.Module):
            raise TypeError(f'the wrapped model must be an nn.Module, got {type(model).__name__}')
        self.is_teacher = teacher_model is not None
        self.input_module_path = check_string(input_module_path, 'input_module_path')
        self.input_module_io = check_io(input_module_io, 'input_module_io')
        self.trainable = check_flag(trainable, 'trainable')
        modules = dict(model.named_modules())
        if input_module_path not in modules:
            children = [name for name, _ in model.named_children()]
            raise ValueError(f'input_module_path {input_module_path!r} is not a module of the wrapped '
                             f'{type(model).__name__}; its top-level modules are {children}')
        target = modules[input_module_path]
        if in_features is None:
            in_features = _linear_in_features(target) if input_module_io == 'input' else None
            if in_features is None:
                raise ValueError(f'in_features is required: {input_module_path!r} ({type(target).__name__}, '
                                 f'{input_module_io}) does not tell the feature width')
        self.model = model
        self.features = nn.Identity()
        self.embed = EmbeddingHead(in_features, out_features, normalize=normalize, bias=bias)
        self.supp = nn.Identity()
        self._captured: Optional[Tensor] = None
        self._capturing = False
        if input_module_io == 'input':
            target.register_forward_pre_hook(self._capture_input)
        else:
            target.register_forward_hook(self._capture_output)

    # The hooks sit on the wrapped model, which may also be called on its own (validation): keep nothing then.
    def _capture_input(self, module, args):
        if self._capturing:
            self._captured = args[0]

    def _capture_output(self, module, args, output):
        if self._capturing:
            self._captured = output

    def required_trainable_parameters(self):
        """``(name, parameter)`` of the head when ``trainable`` (the runner checks they reach the optimizer)."""
        if not self.trainable:
            return []
        return [(f'embed.{name}', p) for name, p in self.embed.named_parameters()]

    def forward(self, x: Tensor, supp_dict: Optional[dict] = None) -> Tensor:
        if supp_dict is not None:
            self.supp(supp_dict)
        self._captured, self._capturing = None, True
        try:
            if self.is_teacher:
                with torch.no_grad():
                    output = self.model(x)
            else:
                output = self.model(x)
        finally:
            self._capturing = False
        features, self._captured = self._captured, None
        if not isinstance(features, Tensor):
            raise RuntimeError(f'{self.input_module_path!r} was not called with a tensor {self.input_module_io} '
                               f'during the forward pass of the wrapped {type(self.model).__name__}')
        if self.trainable and torch.is_grad_enabled() and not all(p.requires_grad for p in self.embed.parameters()):
            raise RuntimeError(
                'the embedding head of PenultimateEmbedding is frozen, so it would stay at its random initialisation; '
                "on the teacher set requires_grad: True and frozen_modules: ['model'] in the train.teacher block "
                '(or trainable: False if a frozen head is intended)')
        self.embed(self.features(features.flatten(1)))
        return output

    def extra_repr(self) -> str:
        return (f"input_module_path={self.input_module_path!r}, input_module_io={self.input_module_io!r}, "
                f"is_teacher={self.is_teacher}")


def _read(io_dict: dict, path: str, io: str, model: str, what: str) -> Tensor:
    return read_io(io_dict, path, io, model, f'the forward_hook entries of the {model} ({what})')


@mid_level_loss()
class ITRDLoss(nn.Module):
    r"""Information Theoretic Representation Distillation: correlation and mutual-information terms.

    .. math::
        \mathcal{L}_{ITRD} = \lambda_{corr}\,\log_2 \sum_k |1 - c_k|^{2\alpha}
            + \lambda_{MI}\left(\left\|\frac{G^s}{\mathrm{tr}\,G^s}\right\|_F^2
            - \left\|\frac{G^s\odot G^t}{\mathrm{tr}(G^s\odot G^t)}\right\|_F^2\right)

    with :math:`c_k` the batch correlation of feature :math:`k` between the embedded student features
    :math:`W f^s + b` and the teacher features :math:`f^t`, and :math:`G` the Gram matrices of the L2-normalised
    features (:func:`ttm_torchdistill.feature_functional.itrd_correlation_loss`,
    :func:`~ttm_torchdistill.feature_functional.itrd_mutual_information_loss`).

    Miles, Lopez-Rodriguez & Mikolajczyk, "Information Theoretic Representation Distillation", BMVC 2022.
    Authors' code: https://github.com/roymiles/ITRD (the TTM authors' ``distiller_zoo/itrd.py`` is the same file).
    With WTTM: TTM (Zheng & Yang, ICLR 2024) Appendix A.5, weight :math:`\mu = 1` on this loss.

    The student's head :math:`W, b` (``nn.Linear(D_s, D_t)``, no normalisation) lives in a
    :class:`PenultimateEmbedding` wrapper on the student (``normalize: False``, ``out_features`` = teacher width),
    so the optimizer trains it. The teacher needs no head: read its features from a hook on the input of its
    classifier.

    .. warning::
        The authors' code embeds the student features for the mutual-information term only when the student and
        teacher widths differ; with equal widths (most same-architecture pairs: resnet32x4/resnet8x4,
        wrn_40_2/wrn_16_2, vgg13/vgg8, ...) that term sees the raw student features, while the correlation term
        always uses the embedding. ``mutual_uses_embedding: None`` (default) follows the code; ``True`` always
        uses the embedding, ``False`` never does (the widths must then be equal). The paper text could not be read
        to say which it intends.

    :param lambda_corr: :math:`\lambda_{corr}` (``--lambda_corr``; 2 in all TTM runs).
    :param lambda_mutual: :math:`\lambda_{MI}` (``--lambda_mutual``; 1, or 0 for ResNet50→MobileNetV2,
        ResNet50→vgg8 and WRN-40-2→ShuffleV1 in the TTM runs).
    :param alpha_it: :math:`\alpha`, Renyi's order in the correlation term (1.01 same-architecture, 1.5
        different-architecture pairs in the TTM runs; the authors' default 1.5).
    :param mutual_uses_embedding: see the warning.
    :param eps: added to the standard deviations of the correlation term. 0 is the authors' code, which gives NaN
        when a feature column is constant over the batch (e.g. a dead ReLU channel of the teacher). The loss does not
        look for such columns itself (that would read the features back to the host every step); the runner stops
        at its next read of the losses with a non-finite-loss error that quotes :meth:`nonfinite_hint`.
    :param student_embed_module_path: where the :math:`(N, D_t)` embedded student features are read.
    :param student_embed_module_io: ``'input'`` or ``'output'`` of that module.
    :param student_module_path: where the :math:`(N, D_s)` raw student features are read (mutual term).
    :param student_module_io: ``'input'`` or ``'output'`` of that module.
    :param teacher_module_path: where the :math:`(N, D_t)` teacher features are read (e.g. ``'fc'``).
    :param teacher_module_io: ``'input'`` or ``'output'`` of that module.

    .. code-block:: yaml

        itrd:
          criterion:
            key: 'ITRDLoss'
            kwargs:
              lambda_corr: 2.0
              lambda_mutual: 1.0
              alpha_it: 1.01  # same-architecture pair
              student_embed_module_path: 'embed'
              student_module_path: 'features'
              teacher_module_path: 'fc'
              teacher_module_io: 'input'
          weight: 1.0  # mu (TTM Appendix A.5)
    """

    def __init__(self, lambda_corr: float = 2.0, lambda_mutual: float = 1.0, alpha_it: float = 1.5,
                 mutual_uses_embedding: Optional[bool] = None, eps: float = 0.0, *,
                 teacher_module_path: str, teacher_module_io: str = 'input',
                 student_embed_module_path: str = 'embed', student_embed_module_io: str = 'output',
                 student_module_path: str = 'features', student_module_io: str = 'output'):
        super().__init__()
        self.lambda_corr = check_non_negative(lambda_corr, 'lambda_corr')
        self.lambda_mutual = check_non_negative(lambda_mutual, 'lambda_mutual')
        self.alpha_it = check_alpha_it(alpha_it)
        if mutual_uses_embedding is not None:
            check_flag(mutual_uses_embedding, 'mutual_uses_embedding')
        self.mutual_uses_embedding = mutual_uses_embedding
        self.eps = check_non_negative(eps, 'eps')
        self.teacher_module_path = check_string(teacher_module_path, 'teacher_module_path')
        self.teacher_module_io = check_io(teacher_module_io, 'teacher_module_io')
        self.student_embed_module_path = check_string(student_embed_module_path, 'student_embed_module_path')
        self.student_embed_module_io = check_io(student_embed_module_io, 'student_embed_module_io')
        self.student_module_path = check_string(student_module_path, 'student_module_path')
        self.student_module_io = check_io(student_module_io, 'student_module_io')

    def nonfinite_hint(self) -> str:
        """What most likely made this loss NaN, for the runner's non-finite-loss error."""
        if self.eps == 0 and self.lambda_corr > 0:
            return ('ITRDLoss with eps 0 divides by zero when a feature column is constant over the batch (a dead '
                    "ReLU channel, as in the authors' code); set eps > 0 (e.g. 1e-6) in its kwargs")
        return ''

    def extra_repr(self) -> str:
        return (f'lambda_corr={self.lambda_corr}, lambda_mutual={self.lambda_mutual}, alpha_it={self.alpha_it}, '
                f'mutual_uses_embedding={self.mutual_uses_embedding}, eps={self.eps}')

    def forward(self, student_io_dict: dict, teacher_io_dict: dict, targets: Optional[Tensor] = None) -> Tensor:
        embedded = _read(student_io_dict, self.student_embed_module_path, self.student_embed_module_io, 'student',
                         'embedded student features')
        teacher = _read(teacher_io_dict, self.teacher_module_path, self.teacher_module_io, 'teacher',
                        'teacher features').flatten(1).detach()
        mutual = embedded
        if self.lambda_mutual > 0 and self.mutual_uses_embedding is not True:
            raw = _read(student_io_dict, self.student_module_path, self.student_module_io, 'student',
                        'raw student features').flatten(1)
            if self.mutual_uses_embedding is False:
                if raw.shape[1] != teacher.shape[1]:
                    raise ValueError(f'mutual_uses_embedding=False needs equal feature widths, got student '
                                     f'{raw.shape[1]} and teacher {teacher.shape[1]}')
                mutual = raw
            elif raw.shape[1] == teacher.shape[1]:
                mutual = raw  # the authors' code: embed only when the widths differ
        return feature_functional.itrd_loss(embedded, mutual, teacher, self.lambda_corr, self.lambda_mutual,
                                            self.alpha_it, eps=self.eps)
