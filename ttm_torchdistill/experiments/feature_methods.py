"""The feature-distillation half of WTTM+CRD and WTTM+ITRD (TTM Appendix A.5): heads, hooks, dataset wrapper, loss.

A logit method only adds a criterion term; CRD and ITRD also change the model blocks of ``train:`` (an embedding
head on the penultimate features, forward hooks, for CRD a trained teacher head and the negatives from the
dataset). This module writes those blocks and the feature loss terms; :mod:`.methods` combines them with CE and
the WTTM term, and :mod:`.render` puts the blocks where a logit method has its plain teacher and student.

Why each setting is what it is: docs/crd_itrd.md (sections 1-4 compare torchdistill's CRD with RepDistiller's and
ITRD with its authors' code). The penultimate module of each model is ``Model.features`` in :mod:`.table`.
"""
import dataclasses
from typing import Callable

from .schema import Experiment
from .yaml_text import line, param_line


@dataclasses.dataclass(frozen=True)
class ModelBlocks:
    """The parts of ``train:`` a feature method writes instead of the logit methods' defaults.

    :param dataset_wrapper: the ``dataset_wrapper:`` lines of the train loader (indent 4), or ``''``.
    :param teacher: the whole ``teacher:`` block (indent 2).
    :param student: the whole ``student:`` block (indent 2).
    """
    dataset_wrapper: Callable[[Experiment], str]
    teacher: Callable[[Experiment], str]
    student: Callable[[Experiment], str]


def _features(exp: Experiment, role: str):
    """``(module path, width)`` of the teacher's or student's penultimate features, with an error if unknown."""
    model = exp.teacher if role == 'teacher' else exp.student
    if model is None or model.features is None:
        name = None if model is None else model.name
        raise ValueError(f'{exp.name}: the {role} {name!r} has no penultimate features in the table (Model.features '
                         f'= (module path, width) is needed by {exp.method})')
    return model.features


def _embedding(exp: Experiment, role: str, out_features, normalize: bool, comment: str) -> str:
    """An ``auxiliary_model_wrapper`` block: a :class:`PenultimateEmbedding` head on the classifier's input."""
    path, width = _features(exp, role)
    return (f'    auxiliary_model_wrapper:  # {comment}\n'
            "      key: 'PenultimateEmbedding'\n"
            '      kwargs:\n'
            + line(8, 'input_module_path', path, f'its input: the pooled {width}-d features (RepDistiller feat[-1])')
            + line(8, 'input_module_io', 'input')
            + param_line(8, 'out_features', out_features)
            + line(8, 'normalize', normalize))


def _hooks(inputs, outputs) -> str:
    return '    forward_hook:\n' + line(6, 'input', list(inputs)) + line(6, 'output', list(outputs))


_TRAINED_STUDENT = ("    wrapper: 'DistributedDataParallel'\n"
                    '    requires_grad: True\n'
                    '    frozen_modules: []\n')


# ---------------------------------------------------------------------------------------------------------------
# CRD: torchdistill's CRDDatasetWrapper and CRDLoss, a normalised head on both models
# ---------------------------------------------------------------------------------------------------------------
def crd_dataset_wrapper(exp: Experiment) -> str:
    """The negatives come from the dataset, as RepDistiller's CIFAR100InstanceSample draws them."""
    return ("    dataset_wrapper:  # torchdistill's: adds pos_idx (the sample index) and contrast_idx to supp_dict\n"
            "      key: 'CRDDatasetWrapper'\n"
            '      kwargs:\n'
            + param_line(8, 'num_negative_samples', exp.param('nce_k'))
            + param_line(8, 'mode', exp.param('nce_mode'))
            + line(8, 'ratio', 1.0, 'negatives drawn from all samples of the other classes (RepDistiller percent '
                                    '1.0)'))


def crd_teacher(exp: Experiment) -> str:
    """The teacher with CRD's ``embed_t``: its head is trained, its own weights frozen (docs/crd_itrd.md, 2a-2b)."""
    return ('  teacher:\n'
            "    forward_proc: 'forward_batch_only'\n"
            '    sequential: []\n'
            + _embedding(exp, 'teacher', exp.param('feat_dim'), True,
                         "CRD's embed_t: Linear + L2 normalisation on the teacher's penultimate features")
            + _hooks([], ['embed'])
            + '    # No wrapper, as in docs/crd_itrd.md: under torchrun each process trains its own copy of the head.\n'
            '    # RepDistiller trains embed_t with the student; the teacher\'s own weights stay frozen.\n'
            '    requires_grad: True\n'
            "    frozen_modules: ['model']\n")


def crd_student(exp: Experiment) -> str:
    """The student with CRD's ``embed_s``; ``forward_batch_supp_dict`` hands the negatives' indices to CRDLoss."""
    return ('  student:\n'
            "    forward_proc: 'forward_batch_supp_dict'  # hands supp_dict (pos_idx, contrast_idx) to the wrapper\n"
            '    adaptations:\n'
            '    sequential: []\n'
            + _embedding(exp, 'student', exp.param('feat_dim'), True,
                         "CRD's embed_s: Linear + L2 normalisation on the student's penultimate features")
            + _hooks(['supp'], ['embed'])
            + _TRAINED_STUDENT)


def crd_term(exp: Experiment) -> str:
    """torchdistill's CRDLoss with RepDistiller's settings, weighted by mu."""
    n_data = exp.param('n_data')
    return ('        crd:\n'
            '          criterion:\n'
            + line(12, 'key', 'CRDLoss', "torchdistill's own: it computes what RepDistiller's does (docs/crd_itrd.md)")
            + '            kwargs:\n'
            + line(14, 'teacher_norm_module_path', 'embed')
            + line(14, 'student_norm_module_path', 'embed')
            + line(14, 'student_empty_module_path', 'supp')
            + param_line(14, 'input_size', exp.param('feat_dim'))
            + line(14, 'output_size', n_data.value, f'memory bank rows: {n_data.source}')
            + param_line(14, 'num_negative_samples', exp.param('nce_k'))
            + line(14, 'num_samples', n_data.value, f'N of the NCE noise term: {n_data.source}')
            + param_line(14, 'temperature', exp.param('nce_t'))
            + param_line(14, 'momentum', exp.param('nce_m'))
            + param_line(14, 'eps', exp.param('nce_eps'))
            + param_line(10, 'weight', exp.param('mu'), as_float=True))


CRD_BLOCKS = ModelBlocks(crd_dataset_wrapper, crd_teacher, crd_student)


# ---------------------------------------------------------------------------------------------------------------
# ITRD: the plugin's ITRDLoss, a plain linear head on the student only, the teacher's features from a hook
# ---------------------------------------------------------------------------------------------------------------
def no_dataset_wrapper(exp: Experiment) -> str:
    return ''


def itrd_teacher(exp: Experiment) -> str:
    """A frozen teacher as for the logit methods, plus a hook on the input of its classifier."""
    path, _ = _features(exp, 'teacher')
    return ('  teacher:\n'
            "    forward_proc: 'forward_batch_only'\n"
            '    sequential: []\n'
            '    forward_hook:\n'
            + line(6, 'input', [path], "the teacher's penultimate features (RepDistiller feat[-1]); ITRD has no "
                                       'teacher head')
            + line(6, 'output', [])
            + "    wrapper: 'DataParallel'\n"
            '    requires_grad: False\n')


def itrd_student(exp: Experiment) -> str:
    """The student with ITRD's ``embed``: Linear(student width, teacher width), not normalised."""
    return ('  student:\n'
            "    forward_proc: 'forward_batch_only'\n"
            '    adaptations:\n'
            '    sequential: []\n'
            + _embedding(exp, 'student', exp.param('embed_dim'), False,
                         "ITRD's embed: Linear(student width, teacher width), no normalisation")
            + _hooks([], ['features', 'embed'])
            + _TRAINED_STUDENT)


def itrd_term(exp: Experiment) -> str:
    """The plugin's ITRDLoss with the TTM run's lambdas and alpha, weighted by mu."""
    path, _ = _features(exp, 'teacher')
    return ('        itrd:\n'
            '          criterion:\n'
            "            key: 'ITRDLoss'\n"
            '            kwargs:\n'
            + param_line(14, 'lambda_corr', exp.param('lambda_corr'), as_float=True)
            + param_line(14, 'lambda_mutual', exp.param('lambda_mutual'), as_float=True)
            + param_line(14, 'alpha_it', exp.param('alpha_it'), as_float=True)
            + param_line(14, 'eps', exp.param('itrd_eps'), as_float=True)
            + line(14, 'student_embed_module_path', 'embed')
            + line(14, 'student_module_path', 'features', 'raw student features (mutual-information term, if '
                                                          'the widths are equal)')
            + line(14, 'teacher_module_path', path)
            + line(14, 'teacher_module_io', 'input')
            + param_line(10, 'weight', exp.param('mu'), as_float=True))


ITRD_BLOCKS = ModelBlocks(no_dataset_wrapper, itrd_teacher, itrd_student)
