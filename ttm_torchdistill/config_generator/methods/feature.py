"""The feature-distillation half of WTTM+CRD and WTTM+ITRD (TTM Appendix A.5): heads, hooks, dataset wrapper, loss.

A logit method only adds a criterion term; CRD and ITRD also change the model blocks of ``train:`` (an embedding
head on the penultimate features, forward hooks, for CRD a trained teacher head and the negatives from the
dataset). This module builds those blocks, the feature loss terms and their sum with CE and the WTTM term;
:mod:`..render` puts the blocks where a logit method has its plain teacher and student.

Why each setting is what it is: docs/crd_itrd.md (sections 1-4 compare torchdistill's CRD with RepDistiller's and
ITRD with its authors' code). The penultimate module of each model is ``Model.features`` in :mod:`..table`.
"""
from typing import Any, Dict, Optional, Tuple

from ..blocks import loss, sourced
from ..schema import Experiment, Param
from ..yaml_emit import Node
from .logit import SubTerms, ce_term, transformed_teacher_term
from .model_blocks import Block, ModelBlocks, forward_hook, trained


def _features(exp: Experiment, role: str) -> Tuple[str, int]:
    """``(module path, width)`` of the teacher's or student's penultimate features, with an error if unknown."""
    model = exp.teacher if role == 'teacher' else exp.student
    if model is None or model.features is None:
        name = None if model is None else model.name
        raise ValueError(f'{exp.name}: the {role} {name!r} has no penultimate features in the table (Model.features '
                         f'= (module path, width) is needed by {exp.method})')
    return model.features


def _embedding(exp: Experiment, role: str, out_features: Param, normalize: bool, comment: str) -> Node:
    """An ``auxiliary_model_wrapper``: a :class:`PenultimateEmbedding` head on the classifier's input."""
    path, width = _features(exp, role)
    return Node({'key': 'PenultimateEmbedding',
                 'kwargs': {'input_module_path': Node(path, comment=f'its input: the pooled {width}-d features '
                                                                    '(RepDistiller feat[-1])'),
                            'input_module_io': 'input',
                            'out_features': sourced(out_features),
                            'normalize': normalize}}, comment=comment)


# ---------------------------------------------------------------------------------------------------------------
# CRD: torchdistill's CRDDatasetWrapper and CRDLoss, a normalised head on both models
# ---------------------------------------------------------------------------------------------------------------
def crd_dataset_wrapper(exp: Experiment) -> Node:
    """The negatives come from the dataset, as RepDistiller's CIFAR100InstanceSample draws them."""
    return Node({'key': 'CRDDatasetWrapper',
                 'kwargs': {'num_negative_samples': sourced(exp.param('nce_k')),
                            'mode': sourced(exp.param('nce_mode')),
                            'ratio': Node(1.0, comment='negatives drawn from all samples of the other classes '
                                                       '(RepDistiller percent 1.0)')}},
                comment="torchdistill's: adds pos_idx (the sample index) and contrast_idx to supp_dict")


def crd_teacher(exp: Experiment) -> Block:
    """The teacher with CRD's ``embed_t``: its head is trained, its own weights frozen (docs/crd_itrd.md, 2a-2b)."""
    head = _embedding(exp, 'teacher', exp.param('feat_dim'), True,
                      "CRD's embed_t: Linear + L2 normalisation on the teacher's penultimate features")
    return {'forward_proc': 'forward_batch_only', 'sequential': [], 'auxiliary_model_wrapper': head,
            'forward_hook': forward_hook([], ['embed']),
            'requires_grad': Node(True, above=(
                'No wrapper, as in docs/crd_itrd.md: under torchrun each process trains its own copy of the head.',
                "RepDistiller trains embed_t with the student; the teacher's own weights stay frozen.")),
            'frozen_modules': ['model']}


def crd_student(exp: Experiment) -> Block:
    """The student with CRD's ``embed_s``; ``forward_batch_supp_dict`` hands the negatives' indices to CRDLoss."""
    head = _embedding(exp, 'student', exp.param('feat_dim'), True,
                      "CRD's embed_s: Linear + L2 normalisation on the student's penultimate features")
    return {'forward_proc': Node('forward_batch_supp_dict', comment='hands supp_dict (pos_idx, contrast_idx) to the '
                                                                   'wrapper'),
            'adaptations': None, 'sequential': [],
            **trained({'auxiliary_model_wrapper': head, 'forward_hook': forward_hook(['supp'], ['embed'])})}


def crd_term(exp: Experiment) -> Dict[str, Any]:
    """torchdistill's CRDLoss with RepDistiller's settings, weighted by mu."""
    n_data = exp.param('n_data')
    kwargs = {'teacher_norm_module_path': 'embed', 'student_norm_module_path': 'embed',
              'student_empty_module_path': 'supp',
              'input_size': sourced(exp.param('feat_dim')),
              'output_size': Node(n_data.value, comment=f'memory bank rows: {n_data.source}'),
              'num_negative_samples': sourced(exp.param('nce_k')),
              'num_samples': Node(n_data.value, comment=f'N of the NCE noise term: {n_data.source}'),
              'temperature': sourced(exp.param('nce_t')),
              'momentum': sourced(exp.param('nce_m')),
              'eps': sourced(exp.param('nce_eps'))}
    criterion = loss('CRDLoss', kwargs, comment="torchdistill's own: it computes what RepDistiller's does "
                                                '(docs/crd_itrd.md)')
    return {'crd': {**criterion, 'weight': sourced(exp.param('mu'), as_float=True)}}


CRD_BLOCKS = ModelBlocks(crd_dataset_wrapper, crd_teacher, crd_student)


# ---------------------------------------------------------------------------------------------------------------
# ITRD: the plugin's ITRDLoss, a plain linear head on the student only, the teacher's features from a hook
# ---------------------------------------------------------------------------------------------------------------
def no_dataset_wrapper(exp: Experiment) -> Optional[Block]:
    return None


def itrd_teacher(exp: Experiment) -> Block:
    """A frozen teacher as for the logit methods, plus a hook on the input of its classifier."""
    path, _ = _features(exp, 'teacher')
    hooked = Node([path], comment="the teacher's penultimate features (RepDistiller feat[-1]); ITRD has no teacher "
                                  'head')
    return {'forward_proc': 'forward_batch_only', 'sequential': [], 'forward_hook': {'input': hooked, 'output': []},
            'wrapper': 'DataParallel', 'requires_grad': False}


def itrd_student(exp: Experiment) -> Block:
    """The student with ITRD's ``embed``: Linear(student width, teacher width), not normalised."""
    head = _embedding(exp, 'student', exp.param('embed_dim'), False,
                      "ITRD's embed: Linear(student width, teacher width), no normalisation")
    return {'forward_proc': 'forward_batch_only', 'adaptations': None, 'sequential': [],
            **trained({'auxiliary_model_wrapper': head, 'forward_hook': forward_hook([], ['features', 'embed'])})}


def itrd_term(exp: Experiment) -> Dict[str, Any]:
    """The plugin's ITRDLoss with the TTM run's lambdas and alpha, weighted by mu."""
    path, _ = _features(exp, 'teacher')
    kwargs = {**{name: sourced(exp.param(name), as_float=True) for name in ('lambda_corr', 'lambda_mutual',
                                                                            'alpha_it')},
              'eps': sourced(exp.param('itrd_eps'), as_float=True),
              'student_embed_module_path': 'embed',
              'student_module_path': Node('features', comment='raw student features (mutual-information term, if '
                                                              'the widths are equal)'),
              'teacher_module_path': path, 'teacher_module_io': 'input'}
    return {'itrd': {**loss('ITRDLoss', kwargs), 'weight': sourced(exp.param('mu'), as_float=True)}}


ITRD_BLOCKS = ModelBlocks(no_dataset_wrapper, itrd_teacher, itrd_student)


# ---------------------------------------------------------------------------------------------------------------
# The criteria: CE, beta * WTTM and mu * the feature term
# ---------------------------------------------------------------------------------------------------------------
def wttm_crd_terms(exp: Experiment) -> SubTerms:
    """WTTM+CRD (TTM Appendix A.5): CE, beta * WTTM and mu * CRD."""
    return {**ce_term(exp), **transformed_teacher_term(exp, 'wttm'), **crd_term(exp)}


def wttm_itrd_terms(exp: Experiment) -> SubTerms:
    """WTTM+ITRD (TTM Appendix A.5): CE, beta * WTTM and mu * ITRD."""
    return {**ce_term(exp), **transformed_teacher_term(exp, 'wttm'), **itrd_term(exp)}
