"""The experiments this package ships, as one table (standard library only: no torch, no torchdistill).

``EXPERIMENTS`` holds one :class:`~.schema.Experiment` per config under ``configs/``; ``by_name`` finds one by
the name the runner records (its path below ``configs/`` without ``.yaml``). The YAMLs are generated from the
table by ``python -m ttm_torchdistill generate-configs`` (see :mod:`.generate` and docs/configs.md).
"""
from typing import Dict, Optional

from .schema import Experiment, Model, Param, Recipe, Reference
from .table import EXPERIMENTS

__all__ = ['EXPERIMENTS', 'Experiment', 'Model', 'Param', 'Recipe', 'Reference', 'by_name']

_BY_NAME: Dict[str, Experiment] = {exp.name: exp for exp in EXPERIMENTS}
if len(_BY_NAME) != len(EXPERIMENTS):  # two rows writing one file: the table itself is wrong
    _seen = [exp.name for exp in EXPERIMENTS]
    raise ValueError('the experiment table has duplicated rows: '
                     + ', '.join(sorted({n for n in _seen if _seen.count(n) > 1})))


def by_name(name: str) -> Optional[Experiment]:
    """The row of experiment ``name`` (e.g. ``'cifar100/wttm/wrn_16_2_from_wrn_40_2'``), or None."""
    return _BY_NAME.get(name)
