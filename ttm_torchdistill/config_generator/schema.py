"""The vocabulary of the experiment table: plain, immutable records (standard library only).

A row of :mod:`.table` is an :class:`Experiment`: which models, which method with which hyperparameters (each
with its source), which training recipe, and which paper number it reproduces. The generator
(:mod:`.generate`) turns every row into one YAML under ``configs/``; ``report`` and the tests read the same rows.
"""
import dataclasses
from typing import Any, Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Param:
    """A value and where it comes from.

    ``source`` is written as the comment beside the value in the generated YAML, so it must say where the
    number comes from (a paper table, an official config, a derivation).
    """
    value: Any
    source: str = ''


@dataclasses.dataclass(frozen=True)
class Model:
    """A network as the table names it.

    :param name: the papers' code name, used in file names (``wrn_16_2``, ``resnet18``).
    :param key: the torchdistill model key (``cifar_wrn_16_2``; torchvision's ``resnet18``).
    :param top1: its own top-1 as the papers quote it (teachers: shown in headers), or None.
    :param weights: for a pretrained torchvision teacher, the weights enum class path and member, e.g.
        ``('torchvision.models.resnet.ResNet34_Weights', 'IMAGENET1K_V1')``.
    :param features: ``(module path, width)`` of its penultimate features for feature distillation (CRD, ITRD):
        the classifier whose *input* is the pooled features (RepDistiller's ``feat[-1]``), and their width.
    """
    name: str
    key: str
    top1: Optional[float] = None
    weights: Optional[Tuple[str, str]] = None
    features: Optional[Tuple[str, int]] = None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimisation and data-loading settings of one experiment (per process, as torchdistill counts them)."""
    epochs: Param
    lr: Param
    momentum: Param
    weight_decay: Param
    milestones: Param     # MultiStepLR milestones, gamma 0.1
    batch_size: Param     # per process
    eval_batch_size: Param
    drop_last: Param      # of the train loader
    num_workers: int = 8
    log_freq: int = 100


@dataclasses.dataclass(frozen=True)
class Reference:
    """The published number an experiment is compared with (``reference:`` block, ``report``).

    :param paper: e.g. ``'TTM (ICLR 2024)'``.
    :param table: e.g. ``'Table 1'``, or why there is none (``'not retrievable'``).
    :param top1: the paper's top-1 in %, or None; then ``note`` must say why.
    :param row: which row of ``table`` holds the number, e.g. ``'WTTM row, mean of 5 runs'`` (header only).
    :param note: a caveat, written into the ``reference:`` block.
    """
    paper: str
    table: str
    top1: Optional[float]
    row: str = ''
    note: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One shipped config: ``configs/<dataset>/<method>/<student>[_from_<teacher>][-<variant>].yaml``.

    :param method: a method of :mod:`.methods` (``ce``, ``kd``, ``ttm``, ``wttm``, ``dist``, ``atkd``, ``dkd``,
        ``wttm_crd``, ``wttm_itrd``, ...).
    :param hyper: the method's hyperparameters by name (which names a method needs: :mod:`.methods`).
    :param notes: header lines: caveats of the row, e.g. where a value is inferred (free text, wrapped by the
        generator; a line starting with a space is a command, written as is).
    """
    dataset: str
    method: str
    student: Model
    teacher: Optional[Model]
    hyper: Mapping[str, Param]
    recipe: Recipe
    reference: Reference
    variant: str = ''
    notes: Tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        """The file name without ``.yaml``."""
        stem = self.student.name if self.teacher is None else f'{self.student.name}_from_{self.teacher.name}'
        return f'{stem}-{self.variant}' if self.variant else stem

    @property
    def name(self) -> str:
        """The experiment name the runner records and ``report`` groups by: the path below ``configs/``."""
        return f'{self.dataset}/{self.method}/{self.stem}'

    @property
    def path(self) -> str:
        """The config's path relative to the repository root."""
        return f'configs/{self.name}.yaml'

    def param(self, name: str) -> Param:
        """``hyper[name]``, with an error naming the experiment and the names it has."""
        try:
            return self.hyper[name]
        except KeyError:
            raise KeyError(f'{self.name}: hyperparameter {name!r} is missing; the row has '
                           f'{sorted(self.hyper)}') from None
