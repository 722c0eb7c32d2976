"""Turn one experiment row into its config: a short header, then torchdistill's blocks as nested data.

The layout is fixed here once for both datasets; the dataset templates (:mod:`.cifar100`, :mod:`.ilsvrc2012`)
supply the datasets and models blocks and the command, :mod:`.methods` the criterion (and, for methods with heads
or two views, the model blocks). :func:`.yaml_emit.emit` writes the result. The output depends on the row only, so
it is byte-identical across runs and machines.
"""
import textwrap
from types import ModuleType
from typing import Any, Dict, Iterable, List

from . import cifar100, ilsvrc2012
from .blocks import sampler, sourced
from .methods import method_of
from .methods.model_blocks import Block, plain_student, plain_teacher
from .schema import Experiment, Param
from .yaml_emit import NULL, Alias, Node, emit

TEMPLATES = {cifar100.DATASET: cifar100, ilsvrc2012.DATASET: ilsvrc2012}
WIDTH = 118  # header lines are wrapped to this width, commands are never wrapped
SOURCES = 'Sources: the comment beside each value (a paper table, the authors\' code, or "inferred" and why).'


def template_of(exp: Experiment) -> ModuleType:
    """The dataset template of a row, with an error listing the known datasets."""
    try:
        return TEMPLATES[exp.dataset]
    except KeyError:
        raise KeyError(f'{exp.name}: unknown dataset {exp.dataset!r}; known: {sorted(TEMPLATES)}') from None


def wrap(paragraphs: Iterable[str]) -> List[str]:
    """Header lines: a paragraph starting with a space is written as is (commands stay copyable); any other is
    prose, wrapped to :data:`WIDTH` with continuation lines indented by two spaces."""
    out: List[str] = []
    for paragraph in paragraphs:
        if paragraph.startswith(' '):
            out.append(paragraph)
        else:
            out.extend(textwrap.wrap(paragraph, width=WIDTH - 2, subsequent_indent='  ', break_long_words=False,
                                     break_on_hyphens=False))
    return out


def is_teacher(exp: Experiment) -> bool:
    """A ``ce`` row that trains one of the papers' teachers."""
    return exp.teacher is None and exp.reference.row.startswith('Teacher')


def header(exp: Experiment) -> List[str]:
    """What the run is, the number it is compared with, where its values come from, its caveats, one command."""
    template, method, ref = template_of(exp), method_of(exp), exp.reference
    if exp.teacher is None:
        role = 'teacher' if is_teacher(exp) else 'student baseline'
        title = f'{method.title} of {exp.student.name} on {template.TITLE} ({role}).'
    else:
        title = f'{method.title}: {template.TITLE}, student {exp.student.name} from teacher {exp.teacher.name}.'
    if ref.top1 is None:
        reference = f'Reference: none ({ref.paper}, {ref.table}): {ref.note}; reference.top1 is null.'
    else:
        row = f', {ref.row}' if ref.row else ''
        note = f' ({ref.note})' if ref.note else ''
        reference = f'Reference: {ref.paper} {ref.table}{row}: {ref.top1:.2f} top-1{note}.'
    return wrap([title, reference, SOURCES, *exp.notes, 'Run:', '  ' + template.command(exp)])


def reference_block(exp: Experiment) -> Block:
    ref = exp.reference
    block = {'paper': ref.paper, 'table': ref.table, 'top1': NULL if ref.top1 is None else ref.top1}
    if ref.note:
        block['note'] = ref.note
    return block


def _loader_kwargs(exp: Experiment, batch: Param, drop_last: Param, explain: bool = False) -> Block:
    """The loader's kwargs. With workers, ``persistent_workers: True``: torchdistill passes loader kwargs to
    DataLoader as they are, and persistent workers are not re-forked at every epoch (240 times on CIFAR-100)."""
    workers = exp.recipe.num_workers
    batch_statistics = method_of(exp).batch_statistics if explain else ''
    kwargs: Dict[str, Any] = {'batch_size': Node(batch.value, comment=batch.source,
                                                 above=(batch_statistics,) if batch_statistics else ()),
                              'num_workers': workers}
    if workers > 0:
        why = 'keep the workers across epochs (results unchanged); needs num_workers > 0' if explain else ''
        kwargs['persistent_workers'] = Node(True, comment=why)
    kwargs['pin_memory'] = True
    kwargs['drop_last'] = sourced(drop_last)
    return kwargs


def train_loader(exp: Experiment) -> Block:
    template, blocks, r = template_of(exp), method_of(exp).blocks, exp.recipe
    loader: Block = {'dataset_id': Alias(template.TRAIN_ID)}
    wrapper = blocks.dataset_wrapper(exp) if blocks else None
    if wrapper is not None:
        loader['dataset_wrapper'] = wrapper
    loader['sampler'] = sampler('torch.utils.data.RandomSampler')
    loader['kwargs'] = _loader_kwargs(exp, r.batch_size, r.drop_last, explain=True)
    return loader


def train_block(exp: Experiment) -> Block:
    """``train:``: loaders, the teacher/student (or model) blocks, optimizer, scheduler and criterion."""
    template, method, r = template_of(exp), method_of(exp), exp.recipe
    train: Block = {'log_freq': r.log_freq, 'num_epochs': sourced(r.epochs)}
    if method.distils:
        train['pre_epoch_process'] = Node('eval_teacher_and_set_loss_epoch', above=(
            'Teacher in eval mode every epoch and the epoch handed to epoch-dependent losses (ttm_torchdistill).',))
    train['train_data_loader'] = train_loader(exp)
    train['val_data_loader'] = {'dataset_id': Alias(template.EVAL_ID),
                                'sampler': sampler('torch.utils.data.SequentialSampler', anchor='val_sampler'),
                                'kwargs': _loader_kwargs(exp, r.eval_batch_size, Param(False))}
    if method.blocks:
        train['teacher'], train['student'] = method.blocks.teacher(exp), method.blocks.student(exp)
    elif method.distils:
        train['teacher'], train['student'] = plain_teacher(), plain_student()
    else:
        train['model'] = plain_student()
    train['optimizer'] = {'key': 'SGD', 'kwargs': {'lr': sourced(r.lr), 'momentum': sourced(r.momentum),
                                                   'weight_decay': sourced(r.weight_decay)}}
    train['scheduler'] = {'key': 'MultiStepLR', 'kwargs': {'milestones': sourced(r.milestones), 'gamma': 0.1}}
    train['criterion'] = {'key': 'WeightedSumLoss', 'kwargs': {'sub_terms': method.terms(exp)}}
    return train


def test_block(exp: Experiment) -> Block:
    template, r = template_of(exp), exp.recipe
    return {'test_data_loader': {'dataset_id': Alias(template.EVAL_ID), 'sampler': Alias('val_sampler'),
                                 'kwargs': _loader_kwargs(exp, Param(r.eval_batch_size.value), Param(False))}}


def document(exp: Experiment) -> Block:
    """The config of ``exp`` as nested data (what :func:`render` writes)."""
    template = template_of(exp)
    return {'dependencies': [{'name': 'ttm_torchdistill'}],
            'reference': reference_block(exp),
            'datasets': template.datasets(),
            'models': template.models(exp, is_teacher(exp)),
            'train': train_block(exp),
            'test': test_block(exp)}


def render(exp: Experiment) -> str:
    """The full text of ``exp.path``."""
    return emit(document(exp), header(exp))
