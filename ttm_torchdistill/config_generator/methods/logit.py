"""The criteria of the logit methods (CE, KD, TTM/WTTM, DIST, ATKD, DKD): ``sub_terms`` of ``WeightedSumLoss``.

Each function turns a row's ``hyper`` mapping into sub-terms built with :mod:`..blocks`; each
:class:`~..schema.Param` keeps its source as the comment beside its value.
"""
from typing import Any, Dict

from ..blocks import loss, sourced, student_logits_ce
from ..schema import Experiment
from ..yaml_emit import Node, number

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
