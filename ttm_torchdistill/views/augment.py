r"""MLKD's strong augmentation: the authors' own RandAugment(2, 10) with Cutout, on PIL images.

The MLKD code (and the max-logit repository that reuses it) makes the strong view with
``RandomCrop(32, padding=4) -> RandomHorizontalFlip -> RandAugment(2, 10) -> ToTensor -> Normalize``, where
``RandAugment`` is the FixMatch-style class of their ``dataset/cifar100.py``, not torchvision's. This module is
that class as a torchvision-style transform, for YAML through ``!import_call``:

.. code-block:: yaml

    - !import_call
      key: 'ttm_torchdistill.views.StrongAugment'
      init:
        kwargs: {num_ops: 2}

Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023
(https://github.com/Jin-Ying/Multi-Level-Logit-Distillation, ``mdistiller/dataset/cifar100.py``);
https://github.com/kei813121/atkd (``dataset/cifar100.py``). The op list
and its ranges come from FixMatch's RandAugment (Sohn et al., NeurIPS 2020).

**What one call does** (the authors' ``RandAugment.__call__``): pick ``num_ops`` ops uniformly with replacement
from the 14 below, apply each with a magnitude drawn uniformly from its range, then always apply Cutout: a grey
``(125, 123, 114)`` square of side :math:`v \cdot W` pixels, :math:`v \sim U[0, 0.5)`.

============  ====================  =======================================================================
op            authors' range        torchvision ``RandAugment(num_ops=2, magnitude=10)`` (31 bins, 32 x 32)
============  ====================  =======================================================================
AutoContrast  --                    same
Brightness    factor U[0.05, 0.95)  factor 1 +/- 0.3 (random sign)
Color         factor U[0.05, 0.95)  factor 1 +/- 0.3
Contrast      factor U[0.05, 0.95)  factor 1 +/- 0.3
Equalize      --                    same
Identity      --                    same
Posterize     bits int(U[4, 8))     7 bits
Rotate        U[-30, 30) degrees    +/- 10 degrees
Sharpness     factor U[0.05, 0.95)  factor 1 +/- 0.3
ShearX/Y      U[-0.3, 0.3)          +/- 0.1 (both shear about the top-left corner)
Solarize      threshold U[0, 256)   threshold 170
TranslateX/Y  U[-0.3, 0.3) x W px   +/- 4 px (``int(150/331 * 32 * 10/30)``)
Cutout        always, side < W/2    none
============  ====================  =======================================================================

So the op list is the same and the magnitudes are not: the authors draw each magnitude at random over the whole
range (their ``m = 10`` is unused), their enhancement factors only ever weaken the image (below 1) while
torchvision's go both ways around 1, their posterize keeps 4 to 7 bits (8 never: ``int`` of a draw below 8),
their translations are fractional and up to 9.6 px, and they always add Cutout. Both use nearest-neighbour
resampling and black fill for the geometric ops.

.. warning::
    Two details of the authors' Cutout are reproduced as written. Its centre comes from
    ``np.random.uniform(w)``, i.e. ``uniform(low=w, high=1.0)``, so it lies in :math:`(1, W]` rather than
    :math:`[0, W)`: the square never starts left of (or above) :math:`\max(0, 1 - v W / 2)` and is clipped at the
    right and bottom edges more often. Its corners are floats handed to ``ImageDraw.rectangle``, which fills
    both corner rows and columns.

**Randomness.** The authors draw from Python's ``random`` and numpy's global generator; this transform draws
from torch's (the global generator, or the one given), like torchvision's transforms, so torchdistill's seeding
and DataLoader workers cover it. The distribution is the authors'; the stream is not. :meth:`StrongAugment.sample`
and :meth:`StrongAugment.apply` split a call into its draws and their effect, so a fixed set of draws can be
replayed (the tests compare it op for op with a reference written from the authors' code).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

__all__ = ['OPS', 'CUTOUT_FILL', 'StrongAugmentPlan', 'StrongAugment', 'apply_op', 'cutout']

#: Grey fill of the Cutout square (the authors' colour, close to the CIFAR mean).
CUTOUT_FILL = (125, 123, 114)
#: Upper bound (exclusive) of Cutout's side as a fraction of the image width.
CUTOUT_MAX_FRACTION = 0.5


def _affine(img: Image.Image, data: Tuple[float, ...]) -> Image.Image:
    # PIL maps each output pixel (x, y) to the input (a x + b y + c, d x + e y + f); nearest, black fill
    return img.transform(img.size, Image.Transform.AFFINE, data)


# name -> (function of (image, magnitude), low, high): the authors' augment_list, in their order.
OPS: Dict[str, Tuple[Callable[[Image.Image, float], Image.Image], float, float]] = {
    'AutoContrast': (lambda img, v: ImageOps.autocontrast(img), 0.0, 1.0),
    'Brightness': (lambda img, v: ImageEnhance.Brightness(img).enhance(v), 0.05, 0.95),
    'Color': (lambda img, v: ImageEnhance.Color(img).enhance(v), 0.05, 0.95),
    'Contrast': (lambda img, v: ImageEnhance.Contrast(img).enhance(v), 0.05, 0.95),
    'Equalize': (lambda img, v: ImageOps.equalize(img), 0.0, 1.0),
    'Identity': (lambda img, v: img, 0.0, 1.0),
    'Posterize': (lambda img, v: ImageOps.posterize(img, max(1, int(v))), 4.0, 8.0),
    'Rotate': (lambda img, v: img.rotate(v), -30.0, 30.0),
    'Sharpness': (lambda img, v: ImageEnhance.Sharpness(img).enhance(v), 0.05, 0.95),
    'ShearX': (lambda img, v: _affine(img, (1, v, 0, 0, 1, 0)), -0.3, 0.3),
    'ShearY': (lambda img, v: _affine(img, (1, 0, 0, v, 1, 0)), -0.3, 0.3),
    'Solarize': (lambda img, v: ImageOps.solarize(img, v), 0.0, 256.0),
    'TranslateX': (lambda img, v: _affine(img, (1, 0, v * img.size[0], 0, 1, 0)), -0.3, 0.3),
    'TranslateY': (lambda img, v: _affine(img, (1, 0, 0, 0, 1, v * img.size[1])), -0.3, 0.3),
}
_NAMES = tuple(OPS)


def apply_op(img: Image.Image, name: str, magnitude: float) -> Image.Image:
    """Apply the op ``name`` of :data:`OPS` with ``magnitude`` (in the op's own units, see the module table)."""
    if name not in OPS:
        raise ValueError(f'unknown strong-augmentation op {name!r}; the ops are {", ".join(_NAMES)}')
    return OPS[name][0](img, magnitude)


def cutout(img: Image.Image, fraction: float, center: Tuple[float, float]) -> Image.Image:
    """The authors' Cutout: a grey square of side ``fraction * width`` around ``center`` (pixels), on a copy.

    ``fraction <= 0`` leaves the image as it is. The square's corner is ``int(max(0, centre - side / 2))`` and its
    far corner ``min(size, corner + side)``, both handed to ``ImageDraw.rectangle`` (which includes its last row
    and column).
    """
    if not 0.0 <= fraction <= CUTOUT_MAX_FRACTION:
        raise ValueError(f'cutout fraction must be in [0, {CUTOUT_MAX_FRACTION}], got {fraction!r}')
    if fraction <= 0:
        return img
    side = fraction * img.size[0]
    width, height = img.size
    x0 = int(max(0.0, center[0] - side / 2.0))
    y0 = int(max(0.0, center[1] - side / 2.0))
    box = (x0, y0, min(width, x0 + side), min(height, y0 + side))
    img = img.copy()
    ImageDraw.Draw(img).rectangle(box, CUTOUT_FILL)
    return img


@dataclass(frozen=True)
class StrongAugmentPlan:
    """The random draws of one :class:`StrongAugment` call.

    :param ops: ``(name, magnitude)`` per op, in the order applied.
    :param cutout_fraction: Cutout's side as a fraction of the width, in ``[0, 0.5)``.
    :param cutout_center: Cutout's centre ``(x, y)`` in pixels, each in ``(1, size]`` (see the module warning).
    """
    ops: Tuple[Tuple[str, float], ...]
    cutout_fraction: float
    cutout_center: Tuple[float, float]


class StrongAugment:
    """MLKD's strong augmentation on a PIL image: ``num_ops`` random ops of :data:`OPS`, then Cutout.

    Put it after the crop and flip and before ``ToTensor`` (as the authors do). See the module docstring for the
    ops, their ranges and how they differ from torchvision's ``RandAugment``.

    :param num_ops: ops per image (the authors' ``n = 2``; their magnitude ``m = 10`` is unused by their code and
        has no parameter here).
    :param generator: a ``torch.Generator`` to draw from; default: torch's global generator.
    """

    def __init__(self, num_ops: int = 2, generator: Optional[torch.Generator] = None):
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
            raise ValueError(f'num_ops must be a non-negative integer, got {num_ops!r}')
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f'generator must be a torch.Generator or None, got {type(generator).__name__}')
        self.num_ops = num_ops
        self.generator = generator

    def sample(self, size: Tuple[int, int]) -> StrongAugmentPlan:
        """Draw one call's randomness for an image of ``size = (width, height)``, in the authors' order: the op
        choices, each op's magnitude, Cutout's fraction, then its centre."""
        width, height = size
        choices: List[int] = torch.randint(len(_NAMES), (self.num_ops,), generator=self.generator).tolist()
        uniforms = torch.rand(self.num_ops + 3, generator=self.generator, dtype=torch.float64).tolist()
        ops = []
        for index, u in zip(choices, uniforms):
            name = _NAMES[index]
            low, high = OPS[name][1], OPS[name][2]
            ops.append((name, low + (high - low) * u))
        u_fraction, u_x, u_y = uniforms[self.num_ops:]
        # np.random.uniform(w) is uniform(low=w, high=1.0): w + (1 - w) * u, in (1, w]
        center = (width + (1.0 - width) * u_x, height + (1.0 - height) * u_y)
        return StrongAugmentPlan(tuple(ops), CUTOUT_MAX_FRACTION * u_fraction, center)

    @staticmethod
    def apply(img: Image.Image, plan: StrongAugmentPlan) -> Image.Image:
        """The image after the ops and the Cutout of ``plan``."""
        for name, magnitude in plan.ops:
            img = apply_op(img, name, magnitude)
        return cutout(img, plan.cutout_fraction, plan.cutout_center)

    def __call__(self, img: Image.Image) -> Image.Image:
        if not isinstance(img, Image.Image):
            raise TypeError(f'StrongAugment works on PIL images (put it before ToTensor), got {type(img).__name__}')
        return self.apply(img, self.sample(img.size))

    def __repr__(self) -> str:
        return f'{type(self).__name__}(num_ops={self.num_ops})'
