"""Walk a torchdistill criterion down to every loss module, sub-terms included.

``WeightedSumLoss`` keeps its sub-terms in a plain ``dict`` (``term_dict``), so ``criterion.modules()`` and
``criterion.state_dict()`` alone do not reach them.
"""
from typing import Dict, Iterator

from torch import nn


def named_term_roots(criterion: nn.Module) -> Dict[str, nn.Module]:
    """The criterion (``''``) and each ``WeightedSumLoss`` sub-term's loss module (``'sub_terms.<name>'``)."""
    roots = {'': criterion}
    for name, term in getattr(criterion, 'term_dict', dict()).items():
        module = term[0] if isinstance(term, tuple) else term
        if isinstance(module, nn.Module):
            roots[f'sub_terms.{name}'] = module
    return roots


def iter_loss_modules(criterion: nn.Module) -> Iterator[nn.Module]:
    """Every module of a (possibly high-level) torchdistill criterion, including its sub-term criteria, once."""
    seen = set()
    for root in named_term_roots(criterion).values():
        for module in root.modules():
            if id(module) not in seen:
                seen.add(id(module))
                yield module
