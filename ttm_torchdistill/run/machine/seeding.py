"""The run's one seed: ``--seed``, the seed recorded by the run being resumed, or one drawn on rank 0.

Every random stream of a run derives from this seed (python, numpy and torch generators, the device-data
augmentation and order streams), and it is the same number on every rank. Without ``--seed`` each process would
otherwise start from its own entropy: under torchrun the device-data ranks would draw different permutations and
shard the data with gaps and overlaps. So rank 0 draws the seed, broadcasts it, and the summary records it: the same
command with ``--seed <recorded>`` reproduces the run bit for bit.
"""
import secrets
from dataclasses import dataclass
from typing import Any, Dict, Optional

from .context import DistContext, broadcast_object

#: Drawn seeds stay below numpy's limit (``np.random.seed`` takes values below 2**32), short enough to retype.
DRAWN_SEED_BOUND = 2 ** 31


@dataclass(frozen=True)
class RunSeed:
    """The seed of a run and where it came from.

    :param value: the seed every generator of every rank is seeded with.
    :param drawn: True when the command line gave no ``--seed`` and none was recorded by a resumed run.
    """
    value: int
    drawn: bool


def resolve_seed(given: Optional[int], resumed_identity: Optional[Dict[str, Any]], ctx: DistContext) -> RunSeed:
    """``--seed`` if given; else the seed of the run being resumed; else a seed drawn on rank 0 and broadcast.

    :param given: ``--seed`` (None when absent).
    :param resumed_identity: the ``identity`` of the last-epoch checkpoint of ``--resume`` (None otherwise); a
        different ``--seed`` is refused later, by :func:`~ttm_torchdistill.run.train.checkpoint.check_same_run`.
    """
    if given is not None:
        return RunSeed(int(given), drawn=False)
    recorded = (resumed_identity or dict()).get('seed')
    if recorded is not None:
        return RunSeed(int(recorded), drawn=bool(resumed_identity.get('seed_drawn', False)))
    drawn = secrets.randbelow(DRAWN_SEED_BOUND) if ctx.is_main else None
    return RunSeed(int(broadcast_object(drawn, ctx)), drawn=True)
