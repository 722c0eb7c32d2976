"""The distillation methods: for each, the header wording and the criterion fragment of the generated YAML.

A method turns an experiment's ``hyper`` mapping into the ``sub_terms`` of torchdistill's ``WeightedSumLoss``.
To add a method: write its fragment function here, register it in :data:`METHODS` with the hyperparameter names
it reads, then add rows to :mod:`.table`; docs/configs.md walks through it. A method that also changes the model
blocks (WTTM+CRD, WTTM+ITRD) gives them as :class:`~.feature_methods.ModelBlocks`.
"""
import dataclasses
from typing import Callable, Dict, Optional, Tuple

from .feature_methods import CRD_BLOCKS, ITRD_BLOCKS, ModelBlocks, crd_term, itrd_term
from .schema import Experiment, Param
from .yaml_text import line, number, param_line, scalar

_IO = ("              student_module_path: '.'\n"
       "              student_module_io: 'output'\n"
       "              teacher_module_path: '.'\n"
       "              teacher_module_io: 'output'\n")


def ce_term(weight: Param) -> str:
    """Cross-entropy on the student's logits against the labels (torchdistill's SimpleLossWrapper)."""
    return ('        ce:\n'
            '          criterion:\n'
            "            key: 'CrossEntropyLoss'\n"
            '            kwargs:\n'
            "              reduction: 'mean'\n"
            '          criterion_wrapper:\n'
            "            key: 'SimpleLossWrapper'\n"
            '            kwargs:\n'
            '              input:\n'
            '                is_from_teacher: False\n'
            "                module_path: '.'\n"
            "                io: 'output'\n"
            '              target:\n'
            '                uses_label: True\n'
            + param_line(10, 'weight', weight, as_float=True))


def _loss_head(name: str, key: str) -> str:
    return f'        {name}:\n          criterion:\n            key: {scalar(key)}\n            kwargs:\n' + _IO


def ce_terms(exp: Experiment) -> str:
    """Plain training: cross-entropy only."""
    return ce_term(exp.param('ce_weight'))


def transformed_teacher_term(exp: Experiment, name: str) -> str:
    """beta * TTMLoss (``name`` 'ttm') or WTTMLoss ('wttm'); the papers tune gamma, the loss takes T = 1/gamma."""
    gamma, beta = exp.param('gamma'), exp.param('beta')
    return (_loss_head(name, name.upper() + 'Loss')
            + line(14, 'temperature', 1 / gamma.value, f'= 1/gamma, gamma = {number(gamma.value)} ({gamma.source})')
            + line(10, 'weight', float(beta.value), f'beta ({beta.source})'))


def transformed_teacher_terms(exp: Experiment) -> str:
    """TTM / WTTM: CE plus beta * (W)TTMLoss."""
    return ce_term(exp.param('ce_weight')) + transformed_teacher_term(exp, exp.method)


def wttm_crd_terms(exp: Experiment) -> str:
    """WTTM+CRD (TTM Appendix A.5): CE, beta * WTTM and mu * CRD."""
    return ce_term(exp.param('ce_weight')) + transformed_teacher_term(exp, 'wttm') + crd_term(exp)


def wttm_itrd_terms(exp: Experiment) -> str:
    """WTTM+ITRD (TTM Appendix A.5): CE, beta * WTTM and mu * ITRD."""
    return ce_term(exp.param('ce_weight')) + transformed_teacher_term(exp, 'wttm') + itrd_term(exp)


def kd_terms(exp: Experiment) -> str:
    """KD as torchdistill's KDLoss, which holds both CE (alpha) and T^2 * KL (beta)."""
    return (_loss_head('kd', 'KDLoss')
            + param_line(14, 'temperature', exp.param('temperature'), as_float=True)
            + param_line(14, 'alpha', exp.param('alpha'), as_float=True)
            + param_line(14, 'beta', exp.param('beta'), as_float=True)
            + line(14, 'reduction', 'batchmean')
            + line(10, 'weight', 1.0, 'KDLoss already holds both CE and KD terms'))


def dist_terms(exp: Experiment) -> str:
    """DIST: CE plus weight * DIST (tau^2 inside the loss, as in the official code)."""
    return (ce_term(exp.param('ce_weight'))
            + _loss_head('dist', 'ATDISTLoss')
            + param_line(14, 'beta', exp.param('beta'), as_float=True)
            + param_line(14, 'gamma', exp.param('gamma'), as_float=True)
            + param_line(14, 'temperature', exp.param('temperature'), as_float=True)
            + param_line(10, 'weight', exp.param('weight'), as_float=True))


def atkd_terms(exp: Experiment) -> str:
    """ATKD: CE plus weight * KD on standardised logits at the per-sample max-logit temperature."""
    return (ce_term(exp.param('ce_weight'))
            + _loss_head('atkd', 'ATKDLoss')
            + param_line(14, 'temperature', exp.param('temperature'))
            + param_line(14, 'standardize', exp.param('standardize'))
            + param_line(10, 'weight', exp.param('weight'), as_float=True))


def dkd_terms(exp: Experiment) -> str:
    """DKD: CE plus DKDLoss (TCKD/NCKD weights and warm-up inside the loss)."""
    temperature = exp.param('temperature')
    return (ce_term(exp.param('ce_weight'))
            + _loss_head('dkd', 'DKDLoss')
            + param_line(14, 'alpha', exp.param('alpha'), as_float=True)
            + param_line(14, 'beta', exp.param('beta'), as_float=True)
            + param_line(14, 'temperature', temperature, as_float=not isinstance(temperature.value, str))
            + param_line(14, 'standardize', exp.param('standardize'))
            + param_line(14, 'warmup_epochs', exp.param('warmup_epochs'))
            + line(10, 'weight', 1.0, 'DKD weights live inside the loss'))


@dataclasses.dataclass(frozen=True)
class Method:
    """How a method appears in a generated config.

    :param title: the header's first words, e.g. ``'WTTM'``.
    :param terms: builds the ``sub_terms`` text from an experiment.
    :param hyper: the hyperparameter names the fragment reads, with their header labels, in header order.
    :param batch_statistics: the loss depends on the per-process batch (DIST's intra-class term), which the
        headers must then say when they discuss batch sizes.
    :param blocks: the dataset wrapper and teacher/student blocks of a feature method; None for the plain ones.
    """
    title: str
    terms: Callable[[Experiment], str]
    hyper: Tuple[Tuple[str, str], ...]
    batch_statistics: bool = False
    blocks: Optional[ModelBlocks] = None

    @property
    def distils(self) -> bool:
        return self.terms is not ce_terms


_TTM_HYPER = (('gamma', 'gamma'), ('beta', 'beta'), ('ce_weight', 'CE weight'))
METHODS: Dict[str, Method] = {
    'ce': Method('Cross-entropy training', ce_terms, (('ce_weight', 'CE weight'),)),
    'kd': Method('KD (baseline)', kd_terms, (('temperature', 'T'), ('alpha', 'alpha (CE weight)'),
                                             ('beta', 'beta (T^2 KL weight)'))),
    'ttm': Method('TTM', transformed_teacher_terms, _TTM_HYPER),
    'wttm': Method('WTTM', transformed_teacher_terms, _TTM_HYPER),
    'dist': Method('DIST', dist_terms, (('temperature', 'tau'), ('beta', 'beta'), ('gamma', 'gamma'),
                                        ('weight', 'DIST weight'), ('ce_weight', 'CE weight')),
                   batch_statistics=True),
    'atkd': Method('ATKD (max-logit adaptive temperature)', atkd_terms,
                   (('temperature', 'temperature'), ('standardize', 'standardize'), ('weight', 'KD weight'),
                    ('ce_weight', 'CE weight'))),
    'dkd': Method('DKD', dkd_terms, (('alpha', 'alpha'), ('beta', 'beta'), ('temperature', 'T'),
                                     ('standardize', 'standardize'), ('warmup_epochs', 'warm-up epochs'),
                                     ('ce_weight', 'CE weight'))),
    # ITRD's batch statistics are said in the rows' notes (the launch lines name DIST's term only).
    'wttm_crd': Method('WTTM+CRD', wttm_crd_terms,
                       _TTM_HYPER + (('mu', 'mu (CRD weight)'), ('feat_dim', 'CRD embedding width'),
                                     ('nce_k', 'CRD negatives per sample'), ('nce_t', 'NCE temperature'),
                                     ('nce_m', 'memory momentum'), ('nce_mode', 'sampling mode'),
                                     ('n_data', 'memory rows'), ('nce_eps', 'NCE eps')),
                       blocks=CRD_BLOCKS),
    'wttm_itrd': Method('WTTM+ITRD', wttm_itrd_terms,
                        _TTM_HYPER + (('mu', 'mu (ITRD weight)'), ('lambda_corr', 'lambda_corr'),
                                      ('lambda_mutual', 'lambda_mutual'), ('alpha_it', 'alpha_it'),
                                      ('embed_dim', 'student head width'), ('itrd_eps', 'ITRD eps')),
                        blocks=ITRD_BLOCKS),
}


def method_of(exp: Experiment) -> Method:
    """The :class:`Method` of a row, with an error listing the known ones."""
    try:
        return METHODS[exp.method]
    except KeyError:
        raise KeyError(f'{exp.name}: unknown method {exp.method!r}; known: {sorted(METHODS)}') from None
