"""The distillation methods: for each, its title, the criterion of the generated config and the names it reads.

A method turns an experiment's ``hyper`` mapping into the ``sub_terms`` of torchdistill's ``WeightedSumLoss``
(:mod:`.logit`, :mod:`.feature`, :mod:`.two_view` build them). To add a method: write its criterion, register it in
:data:`METHODS` with the hyperparameter names it reads, then add rows to the table; docs/configs.md walks through it.
A method that also changes the model blocks (WTTM+CRD, WTTM+ITRD, MLKD) gives them as
:class:`~.model_blocks.ModelBlocks`.
"""
import dataclasses
from typing import Callable, Dict, Optional, Tuple

from ..schema import Experiment
from .feature import CRD_BLOCKS, ITRD_BLOCKS, wttm_crd_terms, wttm_itrd_terms
from .logit import SubTerms, atkd_terms, ce_terms, dist_terms, dkd_terms, kd_terms, transformed_teacher_terms
from .model_blocks import ModelBlocks
from .two_view_blocks import TWO_VIEW_BLOCKS, mlkd_terms

__all__ = ['METHODS', 'Method', 'method_of']


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
