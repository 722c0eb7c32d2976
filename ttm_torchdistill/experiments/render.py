"""Turn one experiment row into the text of its YAML: the header comment, then torchdistill's blocks.

The layout is fixed here once for both datasets; the dataset templates (:mod:`.cifar100`, :mod:`.ilsvrc2012`)
supply the datasets and models blocks and the dataset-specific header sections, and :mod:`.methods` the
criterion. The output depends on the row only, so it is byte-identical across runs and machines.
"""
import textwrap
from types import ModuleType
from typing import Iterable, List

from . import cifar100, ilsvrc2012
from .methods import method_of
from .schema import Experiment, Param
from .yaml_text import line, number, param_line, scalar

TEMPLATES = {cifar100.DATASET: cifar100, ilsvrc2012.DATASET: ilsvrc2012}
WIDTH = 118  # header lines are wrapped to this width, commands are never wrapped


def template_of(exp: Experiment) -> ModuleType:
    """The dataset template of a row, with an error listing the known datasets."""
    try:
        return TEMPLATES[exp.dataset]
    except KeyError:
        raise KeyError(f'{exp.name}: unknown dataset {exp.dataset!r}; known: {sorted(TEMPLATES)}') from None


def comment_block(paragraphs: Iterable[str]) -> str:
    """``# ``-prefixed lines. A paragraph starting with a space is written as is (commands stay copyable);
    any other is prose, wrapped to :data:`WIDTH` with continuation lines indented by two spaces."""
    out: List[str] = []
    for paragraph in paragraphs:
        if paragraph.startswith(' '):
            out.append('# ' + paragraph)
        else:
            out.extend('# ' + text for text in textwrap.wrap(
                paragraph, width=WIDTH - 2, subsequent_indent='  ', break_long_words=False,
                break_on_hyphens=False))
    return '\n'.join(out) + '\n'


def _value_text(value) -> str:
    return number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else scalar(value)


def header(exp: Experiment) -> str:
    """The comment block: what the experiment is, which number it reproduces, its settings, how to run it."""
    template, method = template_of(exp), method_of(exp)
    is_teacher = exp.teacher is None and exp.reference.row.startswith('Teacher')
    if exp.teacher is None:
        role = 'teacher' if is_teacher else 'student baseline'
        title = f'{method.title} of {exp.student.name} on {template.TITLE} ({role}).'
    else:
        variant = f' (variant {exp.variant})' if exp.variant else ''
        title = (f'{method.title}{variant}: {template.TITLE}, student {exp.student.name} '
                 f'from teacher {exp.teacher.name}.')
    ref = exp.reference
    if ref.top1 is None:
        reproduces = f'Reproduces: no paper number ({ref.paper}, {ref.table}): {ref.note}; reference.top1 is null.'
    else:
        row = f', {ref.row}' if ref.row else ''
        note = f' ({ref.note})' if ref.note else ''
        reproduces = f'Reproduces: {ref.paper} {ref.table}{row}: {ref.top1:.2f} top-1{note}.'
    paragraphs = [title, reproduces, 'Hyperparameters (value: source):']
    paragraphs += [f'  {label} = {_value_text(exp.param(name).value)}: {exp.param(name).source}'.rstrip(': ')
                   for name, label in method.hyper]
    paragraphs += list(exp.notes)
    paragraphs.append(template.recipe_text(exp))
    paragraphs += template.as_teacher_lines(exp, is_teacher)
    paragraphs += template.teacher_lines(exp)
    paragraphs += template.launch_lines(exp, method.batch_statistics)
    return comment_block(paragraphs)


def reference_block(exp: Experiment) -> str:
    ref = exp.reference
    text = 'reference:\n' + line(2, 'paper', ref.paper) + line(2, 'table', ref.table)
    text += '  top1: null\n' if ref.top1 is None else line(2, 'top1', ref.top1)
    if ref.note:
        text += line(2, 'note', ref.note)
    return text


def worker_lines(num_workers: int, explain: bool = False) -> str:
    """``num_workers`` and, with workers, ``persistent_workers: True``: torchdistill passes loader kwargs to
    DataLoader as they are, and persistent workers are not re-forked at every epoch (240 times on CIFAR-100)."""
    text = line(6, 'num_workers', num_workers)
    if num_workers > 0:
        why = 'keep the workers across epochs (results unchanged); needs num_workers > 0' if explain else ''
        text += line(6, 'persistent_workers', True, why)
    return text


def _loader(exp: Experiment, role: str, dataset_id: str, batch, sampler: str, drop_last, wrapper: str = '') -> str:
    r = exp.recipe
    return (f'  {role}:\n'
            f'    dataset_id: *{dataset_id}\n'
            + wrapper
            + sampler
            + '    kwargs:\n'
            + param_line(6, 'batch_size', batch)
            + worker_lines(r.num_workers, explain=role == 'train_data_loader')
            + line(6, 'pin_memory', True)
            + param_line(6, 'drop_last', drop_last))


_RANDOM_SAMPLER = ('    sampler:\n'
                   '      class_or_func: !import_get\n'
                   "        key: 'torch.utils.data.RandomSampler'\n"
                   '      kwargs:\n')
_SEQUENTIAL_SAMPLER = ('    sampler: &val_sampler\n'
                       '      class_or_func: !import_get\n'
                       "        key: 'torch.utils.data.SequentialSampler'\n"
                       '      kwargs:\n')
_TEACHER = ('  teacher:\n'
            "    forward_proc: 'forward_batch_only'\n"
            '    sequential: []\n'
            "    wrapper: 'DataParallel'\n"
            '    requires_grad: False\n')
_TRAINED = ("    forward_proc: 'forward_batch_only'\n"
            '    adaptations:\n'
            '    sequential: []\n'
            "    wrapper: 'DistributedDataParallel'\n"
            '    requires_grad: True\n'
            '    frozen_modules: []\n')


def train_block(exp: Experiment) -> str:
    """``train:``: loaders, the teacher/student (or model) blocks, optimizer, scheduler and criterion."""
    template, method, r = template_of(exp), method_of(exp), exp.recipe
    text = 'train:\n' + line(2, 'log_freq', r.log_freq) + param_line(2, 'num_epochs', r.epochs)
    if method.distils:
        text += ('  # Teacher in eval mode every epoch and the epoch handed to epoch-dependent losses '
                 '(ttm_torchdistill).\n'
                 "  pre_epoch_process: 'eval_teacher_and_set_loss_epoch'\n")
    blocks = method.blocks  # feature methods: their own dataset wrapper, teacher and student blocks
    text += _loader(exp, 'train_data_loader', template.TRAIN_ID, r.batch_size, _RANDOM_SAMPLER, r.drop_last,
                    blocks.dataset_wrapper(exp) if blocks else '')
    text += _loader(exp, 'val_data_loader', template.EVAL_ID, r.eval_batch_size, _SEQUENTIAL_SAMPLER, Param(False))
    if blocks:
        text += blocks.teacher(exp) + blocks.student(exp)
    else:
        text += (_TEACHER + '  student:\n' if method.distils else '  model:\n') + _TRAINED
    text += ("  optimizer:\n    key: 'SGD'\n    kwargs:\n" + param_line(6, 'lr', r.lr)
             + line(6, 'momentum', r.momentum) + line(6, 'weight_decay', r.weight_decay))
    text += ("  scheduler:\n    key: 'MultiStepLR'\n    kwargs:\n" + param_line(6, 'milestones', r.milestones)
             + line(6, 'gamma', 0.1))
    text += "  criterion:\n    key: 'WeightedSumLoss'\n    kwargs:\n      sub_terms:\n" + method.terms(exp)
    return text


def test_block(exp: Experiment) -> str:
    template, r = template_of(exp), exp.recipe
    return ('test:\n  test_data_loader:\n'
            f'    dataset_id: *{template.EVAL_ID}\n'
            '    sampler: *val_sampler\n'
            '    kwargs:\n'
            + line(6, 'batch_size', r.eval_batch_size.value)
            + worker_lines(r.num_workers)
            + line(6, 'pin_memory', True)
            + line(6, 'drop_last', False))


def render(exp: Experiment) -> str:
    """The full text of ``exp.path``."""
    template = template_of(exp)
    return '\n'.join([
        header(exp),
        "dependencies:\n  - name: 'ttm_torchdistill'\n",
        reference_block(exp),
        template.DATASETS + template.models_block(exp),
        train_block(exp),
        test_block(exp),
    ])
