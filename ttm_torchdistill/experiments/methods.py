"""The distillation methods: for each, its title and the criterion of the generated config, as data.

A method turns an experiment's ``hyper`` mapping into the ``sub_terms`` of torchdistill's ``WeightedSumLoss``: a
dict of sub-terms (:mod:`.blocks` builds them; each :class:`~.schema.Param` keeps its source as the comment beside
its value). To add a method: write its function here, register it in :data:`METHODS` with the hyperparameter names
it reads, then add rows to :mod:`.table`; docs/configs.md walks through it. A method that also changes the model
blocks (WTTM+CRD, WTTM+ITRD, MLKD) gives them as :class:`~.model_blocks.ModelBlocks`.
"""
import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

from .blocks import loss, sourced, student_logits_ce
from .feature_methods import CRD_BLOCKS, ITRD_BLOCKS, crd_term, itrd_term
from .model_blocks import ModelBlocks
from .schema import Experiment
from .two_view_methods import TWO_VIEW_BLOCKS, mlkd_terms
from .yaml_emit import Node, number

SubTerms = Dict[str, Any]
#: Where a logit loss reads the models' logits: their outputs, as torchdistill's own logit losses do.
LOGIT_IO = {'student_module_path': '.', 'student_module_io': 'output',
            'teacher_module_path': '.', 'teacher_module_io': 'output'}


def _floats(exp: Experiment, *names: str) -> Dict[str, Node]:
    """The hyperparameters ``names`` as float loss kwargs, each with its source."""
    return {name: sourced(exp.param(name), as_float=True) for name in names}


def ce_term(exp: Experiment) -> SubTerms:
    """Cross-entropy on the student's logits against the labels, weighted by ``ce_weight``."""
    return {'ce': student_logits_ce(sourced(exp.param('ce_weight'), as_float=True))}


def transformed_teacher_term(exp: Experiment, name: str) -> SubTerms:
    """beta * TTMLoss (``name`` 'ttm') or WTTMLoss ('wttm'); the papers tune gamma, the loss takes T = 1/gamma."""
    gamma, beta = exp.param('gamma'), exp.param('beta')
    temperature = Node(1 / gamma.value, comment=f'= 1/gamma, gamma = {number(gamma.value)} ({gamma.source})')
    return {name: {**loss(name.upper() + 'Loss', {**LOGIT_IO, 'temperature': temperature}),
                   'weight': Node(float(beta.value), comment=f'beta ({beta.source})')}}


def transformed_teacher_terms(exp: Experiment) -> SubTerms:
    """TTM / WTTM: CE plus beta * (W)TTMLoss."""
    return {**ce_term(exp), **transformed_teacher_term(exp, exp.method)}


def wttm_crd_terms(exp: Experiment) -> SubTerms:
    """WTTM+CRD (TTM Appendix A.5): CE, beta * WTTM and mu * CRD."""
    return {**ce_term(exp), **transformed_teacher_term(exp, 'wttm'), **crd_term(exp)}


def wttm_itrd_terms(exp: Experiment) -> SubTerms:
    """WTTM+ITRD (TTM Appendix A.5): CE, beta * WTTM and mu * ITRD."""
    return {**ce_term(exp), **transformed_teacher_term(exp, 'wttm'), **itrd_term(exp)}


def ce_terms(exp: Experiment) -> SubTerms:
    """Plain training: cross-entropy only."""
    return ce_term(exp)


def kd_terms(exp: Experiment) -> SubTerms:
    """KD as torchdistill's KDLoss, which holds both CE (alpha) and T^2 * KL (beta)."""
    kwargs = {**LOGIT_IO, **_floats(exp, 'temperature', 'alpha', 'beta'), 'reduction': 'batchmean'}
    return {'kd': {**loss('KDLoss', kwargs), 'weight': Node(1.0, comment='KDLoss already holds both CE and KD terms')}}


def dist_terms(exp: Experiment) -> SubTerms:
    """DIST: CE plus weight * DIST (tau^2 inside the loss, as in the official code)."""
    kwargs = {**LOGIT_IO, **_floats(exp, 'beta', 'gamma', 'temperature')}
    return {**ce_term(exp),
            'dist': {**loss('ATDISTLoss', kwargs), 'weight': sourced(exp.param('weight'), as_float=True)}}


def atkd_terms(exp: Experiment) -> SubTerms:
    """ATKD: CE plus weight * KD on standardised logits at the per-sample max-logit temperature."""
    kwargs = {**LOGIT_IO, 'temperature': sourced(exp.param('temperature')),
              'standardize': sourced(exp.param('standardize'))}
    return {**ce_term(exp),
            'atkd': {**loss('ATKDLoss', kwargs), 'weight': sourced(exp.param('weight'), as_float=True)}}


def dkd_terms(exp: Experiment) -> SubTerms:
    """DKD: CE plus DKDLoss (TCKD/NCKD weights and warm-up inside the loss)."""
    kwargs = {**LOGIT_IO, **_floats(exp, 'alpha', 'beta', 'temperature'),
              'standardize': sourced(exp.param('standardize')),
              'warmup_epochs': sourced(exp.param('warmup_epochs'))}
    return {**ce_term(exp),
            'dkd': {**loss('DKDLoss', kwargs), 'weight': Node(1.0, comment='DKD weights live inside the loss')}}


@dataclasses.dataclass(frozen=True)
class Method:
    """How a method appears in a generated config.

    :param title: the header's first words, e.g. ``'WTTM'``.
    :param terms: builds the ``sub_terms`` of ``WeightedSumLoss`` from an experiment.
    :param hyper: the hyperparameter names ``terms`` (and ``blocks``) read from a row.
    :param batch_statistics: what of the loss depends on the per-process batch (DIST's intra-class term), said
        above ``batch_size``; empty when nothing does.
    :param blocks: the dataset wrapper and teacher/student blocks of a method that needs them; None for the others.
    """
    title: str
    terms: Callable[[Experiment], SubTerms]
    hyper: Tuple[str, ...]
    batch_statistics: str = ''
    blocks: Optional[ModelBlocks] = None

    @property
    def distils(self) -> bool:
        return self.terms is not ce_terms


_TTM_HYPER = ('gamma', 'beta', 'ce_weight')
_DKD_HYPER = ('alpha', 'beta', 'temperature', 'standardize', 'warmup_epochs', 'ce_weight')
_MLKD_HYPER = ('temperature', 'standardize', 'code_faithful', 'weight', 'ce_weight', 'num_ops')
_MLKD_BATCH = "MLKD's batch- and class-level terms and its confidence medians use this per-process batch."
_MAX_LOGIT = 'with standardised logits and the max-logit temperature'
METHODS: Dict[str, Method] = {
    'ce': Method('Cross-entropy training', ce_terms, ('ce_weight',)),
    'kd': Method('KD (baseline)', kd_terms, ('temperature', 'alpha', 'beta')),
    'ttm': Method('TTM', transformed_teacher_terms, _TTM_HYPER),
    'wttm': Method('WTTM', transformed_teacher_terms, _TTM_HYPER),
    'dist': Method('DIST', dist_terms, ('temperature', 'beta', 'gamma', 'weight', 'ce_weight'),
                   batch_statistics="DIST's intra-class term correlates the samples of this per-process batch."),
    'atkd': Method('ATKD (max-logit adaptive temperature)', atkd_terms,
                   ('temperature', 'standardize', 'weight', 'ce_weight')),
    'dkd': Method('DKD', dkd_terms, _DKD_HYPER),
    'dkd_at': Method(f'DKD {_MAX_LOGIT}', dkd_terms, _DKD_HYPER),
    'mlkd': Method('MLKD', mlkd_terms, _MLKD_HYPER, batch_statistics=_MLKD_BATCH, blocks=TWO_VIEW_BLOCKS),
    'mlkd_at': Method(f'MLKD {_MAX_LOGIT}', mlkd_terms, _MLKD_HYPER, batch_statistics=_MLKD_BATCH,
                      blocks=TWO_VIEW_BLOCKS),
    # ITRD's batch statistics are said in the rows' notes.
    'wttm_crd': Method('WTTM+CRD', wttm_crd_terms,
                       _TTM_HYPER + ('mu', 'feat_dim', 'nce_k', 'nce_t', 'nce_m', 'nce_mode', 'n_data', 'nce_eps'),
                       blocks=CRD_BLOCKS),
    'wttm_itrd': Method('WTTM+ITRD', wttm_itrd_terms,
                        _TTM_HYPER + ('mu', 'lambda_corr', 'lambda_mutual', 'alpha_it', 'embed_dim', 'itrd_eps'),
                        blocks=ITRD_BLOCKS),
}


def method_of(exp: Experiment) -> Method:
    """The :class:`Method` of a row, with an error listing the known ones."""
    try:
        return METHODS[exp.method]
    except KeyError:
        raise KeyError(f'{exp.name}: unknown method {exp.method!r}; known: {sorted(METHODS)}') from None
