"""``--smoke`` edits for the feature-distillation losses (CRD, ITRD), applied by :func:`.smoke.smoke_config`.

A smoke run trains on a few synthetic samples with a random teacher. Two settings of a real WTTM+CRD / WTTM+ITRD
config cannot work there:

* CRD's memory bank has one row per training sample (``output_size``, and ``num_samples`` in the NCE noise term,
  50000 on CIFAR-100) and draws thousands of negatives per sample from the other classes (``num_negative_samples``
  of both ``CRDDatasetWrapper`` and ``CRDLoss``, which must agree). They are set to the smoke training set's size
  and a few negatives.
* ITRD with ``eps: 0`` (the authors' code) refuses a feature column that is constant over the batch, and a random
  teacher has dead ReLU channels. The smoke copy sets ``eps`` to :data:`SMOKE_ITRD_EPS`; the real config keeps 0.

Each edit returns a note saying what was changed, which the runner logs.
"""
from typing import Any, Dict, Iterator, List, Tuple

SMOKE_CRD_NEGATIVES = 4  # fewer than the 7 other-class samples of an 8-sample, many-class smoke set
SMOKE_ITRD_EPS = 1e-6


def iter_keyed(node: Any, key: str, where: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Every mapping below ``node`` whose ``key`` entry is ``key`` (a loss or wrapper block), with its location."""
    if isinstance(node, dict):
        if node.get('key') == key:
            yield where, node
        for name, value in node.items():
            yield from iter_keyed(value, key, f'{where}.{name}')
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from iter_keyed(value, key, f'{where}[{index}]')


def _kwargs(block: Dict[str, Any]) -> Dict[str, Any]:
    kwargs = block.get('kwargs')
    if not isinstance(kwargs, dict):
        kwargs = block['kwargs'] = dict()
    return kwargs


def shrink_crd(stage: Dict[str, Any], where: str, train_samples: int) -> List[str]:
    """CRD's memory rows and noise denominator = the smoke training set; a few negatives, the same in the dataset
    wrapper and the loss."""
    notes = []
    negatives = min(SMOKE_CRD_NEGATIVES, max(train_samples - 1, 1))
    loader = stage.get('train_data_loader')
    for place, block in iter_keyed(loader.get('dataset_wrapper') if isinstance(loader, dict) else None,
                                   'CRDDatasetWrapper', f'{where}.train_data_loader.dataset_wrapper'):
        kwargs = _kwargs(block)
        notes.append(f'{place}: num_negative_samples {kwargs.get("num_negative_samples")} -> {negatives}')
        kwargs['num_negative_samples'] = negatives
    for place, block in iter_keyed(stage.get('criterion'), 'CRDLoss', f'{where}.criterion'):
        kwargs = _kwargs(block)
        before = {name: kwargs.get(name) for name in ('output_size', 'num_samples', 'num_negative_samples')}
        kwargs.update(output_size=train_samples, num_samples=train_samples, num_negative_samples=negatives)
        notes.append(f'{place}: memory of {train_samples} rows (the smoke training set) and {negatives} negatives, '
                     f'instead of output_size {before["output_size"]}, num_samples {before["num_samples"]}, '
                     f'num_negative_samples {before["num_negative_samples"]}')
    return notes


def loosen_itrd(stage: Dict[str, Any], where: str) -> List[str]:
    """ITRD's eps 0 -> :data:`SMOKE_ITRD_EPS`: a random teacher's dead channels are constant feature columns."""
    notes = []
    for place, block in iter_keyed(stage.get('criterion'), 'ITRDLoss', f'{where}.criterion'):
        kwargs = _kwargs(block)
        if not kwargs.get('eps'):
            kwargs['eps'] = SMOKE_ITRD_EPS
            notes.append(f'{place}: eps 0 -> {SMOKE_ITRD_EPS} (a random teacher has dead ReLU channels, i.e. '
                         'constant feature columns, which eps 0 refuses; the config itself keeps eps 0)')
    return notes


def smoke_feature_losses(stage: Dict[str, Any], where: str, train_samples: int) -> List[str]:
    """All feature-loss edits of one training stage (edited in place); the notes say what changed."""
    return shrink_crd(stage, where, train_samples) + loosen_itrd(stage, where)
