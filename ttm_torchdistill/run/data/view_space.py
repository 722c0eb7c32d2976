"""The finite set of views that a translated CIFAR pipeline makes of one image, and the index of each view.

``RandomCrop(size, padding)`` draws a (top, left) offset on the padded image, one of ``(H' - h + 1) x (W' - w + 1)``
(CIFAR's ``RandomCrop(32, padding=4)``: 9 x 9 = 81); ``RandomHorizontalFlip(p)`` mirrors or not (2, whatever p).
``ToTensor`` and ``Normalize`` draw nothing. So every draw of the device pipeline, for any seed, epoch and sample,
is one of ``81 x 2 = 162`` views of the sample's image, and a teacher's logits on all of them serve every run
(:mod:`ttm_torchdistill.run.data.complete_cache`).

View index: mixed radix over the random ops in pipeline order, the last op varying fastest; a crop's own index
is ``top * n_left + left``. For ``RandomCrop(32, padding=4)`` then ``RandomHorizontalFlip``:
``view = (top * 9 + left) * 2 + flip``. The flip's probability does not enter: the views are the same for any p.

API::

    space = ViewSpace(pipeline)                  # ValueError for a random op it cannot enumerate
    space.num_views                              # 162
    views = space.index(pipeline.draw(n, g), n)  # LongTensor (n,): the view each drawn sample gets
    params = space.params(views)                 # per-op parameters that make those views (pipeline.run)
    space.describe()                             # what the views depend on (metadata of a complete cache)
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .device_transforms import CropOp, DevicePipeline, FlipOp, NormalizeOp

#: The random ops whose views are enumerated; any other op that draws parameters is refused.
ENUMERABLE = 'RandomCrop and RandomHorizontalFlip'


class ViewSpace:
    """The views of a :class:`~ttm_torchdistill.run.data.device_transforms.DevicePipeline` and their indices.

    :param pipeline: the translated pipeline (at most one RandomCrop, RandomHorizontalFlip and Normalize).
    :raises ValueError: a random op other than RandomCrop / RandomHorizontalFlip, or one of them twice.
    """

    def __init__(self, pipeline: DevicePipeline):
        self.pipeline = pipeline
        names = [op.name for op in pipeline.ops]
        for kind in (CropOp, FlipOp, NormalizeOp):
            if names.count(kind.name) > 1:
                raise ValueError(f'the pipeline has {names.count(kind.name)} {kind.name}: the complete teacher cache '
                                 f'takes at most one (pipeline: {names})')
        #: (position in the pipeline, op, number of states, states per unit of the op's own index)
        self._random: List[Tuple[int, Any, int, int]] = []
        hw = pipeline.image_shape[:2]
        for position, op in enumerate(pipeline.ops):
            if isinstance(op, CropOp):
                padded = op.padded_hw(hw)
                n_top, n_left = padded[0] - op.size[0] + 1, padded[1] - op.size[1] + 1
                self._random.append((position, op, n_top * n_left, n_left))
            elif isinstance(op, FlipOp):
                self._random.append((position, op, 2, 1))
            elif hasattr(op, 'draw'):
                raise ValueError(f'{op.name} draws per-sample parameters whose views the complete teacher cache '
                                 f'cannot enumerate: expected only {ENUMERABLE} as random transforms')
            hw = op.out_hw(hw)
        self.num_views = 1
        for _, _, states, _ in self._random:
            self.num_views *= states

    def _strides(self) -> List[int]:
        """Multiplier of each random op's own index in the view index (the last op varies fastest)."""
        strides, stride = [], 1
        for _, _, states, _ in reversed(self._random):
            strides.append(stride)
            stride *= states
        return strides[::-1]

    def index(self, params: Sequence[Optional[torch.Tensor]], num_samples: int) -> torch.Tensor:
        """The view index of each sample, from parameters as :meth:`DevicePipeline.draw` returns them.

        :param params: list aligned with the pipeline's ops; entry k has first dimension N for the random ops.
        :param num_samples: N (a pipeline without random ops has no parameters to tell it).
        :return: LongTensor ``(N,)`` on the parameters' device, each in ``0 .. num_views - 1``.
        """
        views = torch.zeros(num_samples, dtype=torch.long,
                            device=next((p.device for p in params if p is not None), 'cpu'))
        for (position, op, _, n_left), stride in zip(self._random, self._strides()):
            p = params[position]
            if p.shape[0] != num_samples:
                raise ValueError(f'{op.name} parameters of {p.shape[0]} samples, expected {num_samples}')
            own = p[:, 0] * n_left + p[:, 1] if isinstance(op, CropOp) else p.long()
            views += own * stride
        return views

    def params(self, views: torch.Tensor) -> List[Optional[torch.Tensor]]:
        """Per-op parameters that make the given views (the inverse of :meth:`index`).

        :param views: LongTensor ``(B,)`` of view indices in ``0 .. num_views - 1``.
        :return: list aligned with the pipeline's ops: (top, left) LongTensor ``B x 2`` for RandomCrop, bool
            ``(B,)`` for RandomHorizontalFlip, None for the others; on ``views``' device.
        """
        views = torch.as_tensor(views, dtype=torch.long)
        if views.numel() and (int(views.min()) < 0 or int(views.max()) >= self.num_views):
            raise ValueError(f'view indices must lie in 0..{self.num_views - 1}, got {int(views.min())}..'
                             f'{int(views.max())}')
        out: List[Optional[torch.Tensor]] = [None] * len(self.pipeline.ops)
        for (position, op, states, n_left), stride in zip(self._random, self._strides()):
            own = views // stride % states
            out[position] = torch.stack([own // n_left, own % n_left], dim=1) if isinstance(op, CropOp) \
                else own == 1
        return out

    def formula(self) -> str:
        """The view index as a formula of the drawn parameters, e.g. ``(top * 9 + left) * 2 + flip``."""
        text = ''
        for _, op, states, n_left in self._random:
            own = f'top * {n_left} + left' if isinstance(op, CropOp) else 'flip'
            text = f'({text}) * {states} + {own}' if text else own
        return text or '0'

    def describe(self) -> Dict[str, Any]:
        """What the views are made of, field by field (a complete cache records it; a run compares it).

        ``crop_size``/``padding`` (left, top, right, bottom)/``fill`` are None without RandomCrop, ``normalize``
        None without Normalize; ``flip`` says whether mirrored views exist; ``transform_order`` the ops' order
        (crop then flip and flip then crop make different views of the same parameters).
        """
        ops = self.pipeline.ops
        crop = next((op for op in ops if isinstance(op, CropOp)), None)
        normalize = next((op for op in ops if isinstance(op, NormalizeOp)), None)
        return {'image_shape': list(self.pipeline.image_shape),
                'crop_size': None if crop is None else list(crop.size),
                'padding': None if crop is None else list(crop.padding),
                'fill': None if crop is None else crop.describe()['fill'],
                'flip': any(isinstance(op, FlipOp) for op in ops),
                'normalize': None if normalize is None else {'mean': list(normalize.mean), 'std': list(normalize.std)},
                'transform_order': [op.name for op in ops],
                'num_views': self.num_views}
