r"""MLKD's strong augmentation on a batch of tensors: :class:`~.augment.StrongAugment`'s ops, per sample, on any device.

:class:`~.augment.StrongAugment` (the authors' RandAugment(2, 10) with Cutout) works on one PIL image at a time. Here
the same ops, magnitudes, fill and Cutout run on a whole uint8 batch ``B x H x W x 3`` (RGB, CIFAR's ``.data``
layout) at once, each sample with its own draw: which ops, their magnitudes, and Cutout's size and centre. Every op
is written as PIL computes it (Pillow's C code: 16.16 fixed-point nearest-neighbour affine maps, float32 blends
truncated to uint8, integer look-up tables), so the result is **the PIL result, pixel for pixel**, with one caveat
below.

Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023 (the strong view); the op list and ranges come from
FixMatch's RandAugment (Sohn et al., NeurIPS 2020).

How each op is computed (``v`` is the op's magnitude, in the units of :data:`~.augment.OPS`):

=========================  =============================================================================
op                         on the batch
=========================  =============================================================================
Rotate, ShearX, ShearY     PIL's 16.16 fixed-point affine map (``affine_fixed``): the source pixel of each
                           output pixel in integer arithmetic, black outside; Rotate's matrix as
                           ``Image.rotate`` builds it (Python's ``math``, ``cos``/``sin`` rounded to 15
                           decimals)
TranslateX, TranslateY     PIL's scaling path (``ImagingScaleAffine``): source column (row) ``COORD(x + 0.5
                           + v W)``, black outside
AutoContrast               per channel: ``int(i * 255 / (hi - lo) - lo * 255 / (hi - lo))`` in float64
Equalize                   per channel: PIL's integer histogram look-up table (steps of ``n // 255``)
Posterize                  ``i & ~(2 ** (8 - max(1, int(v))) - 1)``
Solarize                   ``i if i < v else 255 - i``
Brightness, Color,         ``trunc(d + f (x - d))`` in float32 (PIL's ``ImagingBlend``) with the degenerate
Contrast, Sharpness        image ``d``: black; the luma ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``; its
                           mean ``int(mean + 0.5)``; PIL's SMOOTH filter (float32, border rows and columns
                           kept), and ``f = float32(v)``
Cutout                     the grey ``(125, 123, 114)`` square of :func:`~.augment.cutout`, both corner rows
                           and columns included
=========================  =============================================================================

**Host and device.** Everything that depends on a sample's plan alone (the affine map's fixed-point coefficients,
the blend factor, which table or degenerate image applies, Cutout's box) is computed once per epoch on the host, for
every sample, by :func:`programs` (a "program" row per sample); :func:`apply_programs` then works on the batch on the
device. So the device runs only the per-pixel work (about 260 tensor operations per batch with two ops per sample)
without reading anything back, and the per-sample numbers are the same on every device. Rotate's matrix is built
with Python's ``math`` and ``round`` as ``Image.rotate`` builds it. Cost on the host: about 0.1 s per epoch for
CIFAR-100's 50,000 samples (one CPU core).

**Where it may differ from PIL.** Translate's source positions are ``floor(c + 0.5) + x``, where PIL adds 1.0 to
``c + 0.5`` ``x`` times: the same unless ``c`` lies within about ``1e-14`` pixel of a pixel edge (a whole CIFAR-100
run would expect far below one such sample). No test found a pixel that differs (every op on fixed and random draws,
square images and not, compared with :class:`~.augment.StrongAugment` pixel for pixel). The per-pixel arithmetic
relies on each floating-point tensor operation being rounded on its own (no fused multiply-add), as eager PyTorch
runs them on the CPU and on CUDA; a ``torch.compile`` d version, or a backend without float64 (Apple's MPS), is not
covered.

The draws (:func:`draw_plans`) have :meth:`StrongAugment.sample <.augment.StrongAugment.sample>`'s distribution: op
indices uniform with replacement, each magnitude uniform over its range, Cutout's fraction ``U[0, 0.5)`` and centre
in ``(1, W]`` (the authors' ``np.random.uniform(w)``). A plan is one row of float64: the ``k`` op indices, their
``k`` magnitudes, then Cutout's fraction, centre x and centre y; a program is the plan followed by what the batch
needs of it (:func:`programs`). :func:`apply_programs` reads no value back to the host.
"""
import functools
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F

from .augment import CUTOUT_FILL, CUTOUT_MAX_FRACTION, OPS, StrongAugmentPlan

__all__ = ['OP_NAMES', 'plan_width', 'program_width', 'draw_plans', 'plans_tensor', 'programs', 'apply_programs',
           'strong_augment', 'apply_ops', 'affine_coefficients']

#: Op index -> name, in the authors' order (the indices a plan holds).
OP_NAMES: Tuple[str, ...] = tuple(OPS)
_INDEX = {name: index for index, name in enumerate(OP_NAMES)}
#: The program columns of one op slot: PIL's fixed-point affine coefficients, the blend factor (float32's value; 1
#: where the op is no blend), 0/1 selectors of the degenerate image and of the look-up table, Posterize's quantum,
#: Solarize's threshold.
_SLOT = ('a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'factor', 'Sharpness', 'Color', 'Contrast', 'AutoContrast', 'Equalize',
         'Posterize', 'Solarize', 'quantum', 'threshold')
_SLOT_COLUMN = {name: index for index, name in enumerate(_SLOT)}
_BLEND = ('Brightness', 'Color', 'Contrast', 'Sharpness')
#: Cutout's box in a program: first and last column and row (inclusive), and whether there is a box.
_BOX = 5
#: PIL's ITU-R 601-2 luma in 16-bit fixed point (``ImagingConvert`` RGB -> L).
_LUMA = (19595.0, 38470.0, 7471.0)
#: PIL's ``ImageFilter.SMOOTH`` kernel weights (edge, centre) and divisor.
_SMOOTH = (1.0, 5.0, 13.0)


def plan_width(num_ops: int) -> int:
    """Columns of a plan row: ``num_ops`` op indices, ``num_ops`` magnitudes, Cutout's fraction, centre x, centre y."""
    return 2 * num_ops + 3


def program_width(num_ops: int) -> int:
    """Columns of a program row: the plan, then 16 per op and 5 for Cutout's box (:func:`programs`)."""
    return plan_width(num_ops) + len(_SLOT) * num_ops + _BOX


def _num_ops(columns: int, width, what: str) -> int:
    for num_ops in range(columns + 1):
        if width(num_ops) == columns:
            return num_ops
        if width(num_ops) > columns:
            break
    raise ValueError(f'{what} of {columns} columns: expected {width(0)}, {width(1)}, {width(2)}, ... '
                     f'(0, 1, 2, ... ops)')


def draw_plans(num_samples: int, num_ops: int, size: Tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Draw ``num_samples`` plans from ``generator`` (CPU): float64 ``num_samples x plan_width(num_ops)``.

    :param size: ``(width, height)`` of the images (Cutout's centre lies in ``(1, W] x (1, H]``).
    """
    width, height = size
    lows = torch.tensor([OPS[name][1] for name in OP_NAMES], dtype=torch.float64)
    highs = torch.tensor([OPS[name][2] for name in OP_NAMES], dtype=torch.float64)
    choices = torch.randint(len(OP_NAMES), (num_samples, num_ops), generator=generator, device='cpu')
    uniforms = torch.rand(num_samples, num_ops + 3, generator=generator, dtype=torch.float64, device='cpu')
    magnitudes = lows[choices] + (highs - lows)[choices] * uniforms[:, :num_ops]
    u_fraction, u_x, u_y = uniforms[:, num_ops:].unbind(1)
    # np.random.uniform(w) is uniform(low=w, high=1.0): w + (1 - w) u, in (1, w]
    cutout = torch.stack([CUTOUT_MAX_FRACTION * u_fraction, width + (1.0 - width) * u_x,
                          height + (1.0 - height) * u_y], dim=1)
    return torch.cat([choices.to(torch.float64), magnitudes, cutout], dim=1)


def plans_tensor(plans: Sequence[StrongAugmentPlan]) -> torch.Tensor:
    """The rows of :class:`~.augment.StrongAugmentPlan` s (all with the same number of ops), for replaying them."""
    rows = []
    for plan in plans:
        ops = [float(_INDEX[name]) for name, _ in plan.ops] + [float(v) for _, v in plan.ops]
        rows.append(ops + [plan.cutout_fraction, *plan.cutout_center])
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), -1)


def programs(plans: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Each plan with what a batch needs of it, computed on the host: float64 ``N x program_width(k)``.

    Per op: PIL's fixed-point affine coefficients (:func:`affine_coefficients`), the blend factor, which degenerate
    image and which table apply, Posterize's quantum and Solarize's threshold; then Cutout's box. Made once per epoch
    for every sample (the device path draws its plans on the host anyway), so the device runs only per-pixel work.

    :param plans: float64 ``N x plan_width(k)`` on the CPU (:func:`draw_plans`).
    :param size: ``(width, height)`` of the images.
    """
    if plans.device.type != 'cpu' or plans.dim() != 2:
        raise ValueError(f'programs are made on the host from CPU plans N x (2k + 3), got {plans.dim()}-d plans on '
                         f'{plans.device}')
    num_ops = _num_ops(plans.shape[1], plan_width, 'plans')
    width, height = size
    columns = [plans.to(torch.float64)]
    for slot in range(num_ops):
        columns.append(_slot_program(plans[:, slot].long(), plans[:, num_ops + slot], width, height))
    columns.append(_cutout_box(*plans[:, 2 * num_ops:].unbind(1), width, height))
    return torch.cat(columns, dim=1)


def _slot_program(ops: torch.Tensor, v: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The program columns of one op slot (:data:`_SLOT`), float64 ``N x 16``."""
    columns = [c.to(torch.float64) for c in affine_coefficients(ops, v, height, width).unbind(1)]
    blend = torch.zeros_like(ops, dtype=torch.bool)
    for name in _BLEND:
        blend = blend | (ops == _INDEX[name])
    # PIL's ImagingBlend takes the factor as a C float
    columns.append(torch.where(blend, v.to(torch.float32).to(torch.float64), 1.0))
    for name in _SLOT[7:14]:
        columns.append((ops == _INDEX[name]).to(torch.float64))
    # Posterize keeps the top max(1, int(v)) bits: levels are floored to multiples of 2 ** (8 - bits)
    columns.append(torch.pow(2.0, 8.0 - torch.floor(v).clamp(min=1, max=8)))
    columns.append(v.to(torch.float64))  # Solarize: levels from the threshold on are inverted
    return torch.stack(columns, dim=1)


def _rotation(angle: float, width: int, height: int) -> Tuple[float, ...]:
    """``Image.rotate(angle)``'s affine matrix (output -> input), in Python floats as Pillow computes it."""
    theta = -math.radians(angle % 360.0)
    cos, sin = round(math.cos(theta), 15), round(math.sin(theta), 15)
    matrix = [cos, sin, 0.0, -sin, cos, 0.0]  # round(-x, 15) is -round(x, 15): rounding to even is symmetric
    cx, cy = width / 2, height / 2
    a, b, c, d, e, f = matrix
    matrix[2], matrix[5] = a * -cx + b * -cy + c, d * -cx + e * -cy + f
    matrix[2] += cx
    matrix[5] += cy
    return tuple(matrix)


def _affine_matrices(ops: torch.Tensor, v: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each sample's PIL affine matrix ``(a, b, c, d, e, f)`` (output -> input), float64 ``N x 6``, on the host; the
    identity for non-geometric ops (and for Rotate by a multiple of 360 degrees, which Image.rotate copies)."""
    zero, one = torch.zeros_like(v), torch.ones_like(v)
    shear_x, shear_y = ops == _INDEX['ShearX'], ops == _INDEX['ShearY']
    matrices = torch.stack([
        one, torch.where(shear_x, v, zero), torch.where(ops == _INDEX['TranslateX'], v * width, zero),
        torch.where(shear_y, v, zero), one, torch.where(ops == _INDEX['TranslateY'], v * height, zero)], dim=1)
    rotate = (ops == _INDEX['Rotate']) & (torch.remainder(v, 360.0) != 0)  # a whole turn: Image.rotate copies
    rows: List[int] = torch.nonzero(rotate).flatten().tolist()
    if rows:
        rotations = [_rotation(angle, width, height) for angle in v[rows].tolist()]
        matrices[rows] = torch.tensor(rotations, dtype=torch.float64)
    return matrices


def _fix(value: torch.Tensor) -> torch.Tensor:
    """PIL's 16.16 fixed point: ``floor(v * 65536 + 0.5)`` (float64 in, int64 out)."""
    return torch.floor(value * 65536.0 + 0.5).long()


def affine_coefficients(ops: torch.Tensor, magnitudes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The integer coefficients ``(A0 .. A5)`` (int64 ``N x 6``, on the host) with which output pixel ``(x, y)`` of
    each sample reads input pixel ``((A2 + y A1 + x A0) >> 16, (A5 + y A4 + x A3) >> 16)``, as PIL's
    nearest-neighbour affine transform does for the sample's op (the identity for the non-geometric ops).

    A matrix that shears or rotates goes through PIL's ``affine_fixed``: ``A0 = FIX(a)``, ``A1 = FIX(b)``,
    ``A2 = FIX(c + a / 2 + b / 2)`` (and likewise for the row). The others (translations and the identity, with
    ``a = e = 1``, ``b = d = 0``) go through ``ImagingScaleAffine``, whose input column is ``COORD(c + 0.5 + x)``:
    ``floor(c + 0.5) + x`` (a negative position is outside the image either way), so ``A2 = 65536 floor(c + 0.5)``
    with the same ``A0 = FIX(1)``, ``A1 = FIX(0)``.
    """
    a0, a1, a2, a3, a4, a5 = _affine_matrices(ops, magnitudes, height, width).unbind(1)
    fixed = (a1 != 0) | (a3 != 0)
    column = torch.where(fixed, _fix(a2 + a0 * 0.5 + a1 * 0.5), torch.floor(a2 + a0 * 0.5).long() * 65536)
    row = torch.where(fixed, _fix(a5 + a3 * 0.5 + a4 * 0.5), torch.floor(a5 + a4 * 0.5).long() * 65536)
    return torch.stack([_fix(a0), _fix(a1), column, _fix(a3), _fix(a4), row], dim=1)


def _cutout_box(fraction: torch.Tensor, center_x: torch.Tensor, center_y: torch.Tensor, width: int,
                height: int) -> torch.Tensor:
    """:func:`~.augment.cutout`'s square per sample: first and last column and row, both included (its corner
    ``int(max(0, c - side / 2))``, its far corner ``int(min(W, corner + side))``), and 1 where there is a square
    (``fraction > 0``): float64 ``N x 5``."""
    side = fraction * width
    x0 = torch.floor(torch.clamp(center_x - side / 2.0, min=0.0))
    y0 = torch.floor(torch.clamp(center_y - side / 2.0, min=0.0))
    x1 = torch.floor(torch.clamp(x0 + side, max=float(width)))
    y1 = torch.floor(torch.clamp(y0 + side, max=float(height)))
    return torch.stack([x0, x1, y0, y1, (fraction > 0).to(torch.float64)], dim=1)


def strong_augment(images: torch.Tensor, plans: torch.Tensor) -> torch.Tensor:
    """The strong view of a uint8 RGB batch ``B x H x W x 3`` drawn by ``plans`` (CPU, :func:`draw_plans`):
    :func:`programs` on the host, then :func:`apply_programs` on the images' device."""
    if images.dim() != 4:
        raise ValueError(f'strong_augment expects uint8 RGB images B x H x W x 3, got {images.dtype} '
                         f'{tuple(images.shape)}')
    program = programs(plans, (images.shape[2], images.shape[1])).to(images.device)
    return apply_programs(images, program)


def apply_programs(images: torch.Tensor, program: torch.Tensor) -> torch.Tensor:
    """The strong view of a uint8 RGB batch ``B x H x W x 3``: each sample's ops, then its Cutout.

    :param program: float64 ``B x program_width(k)`` (:func:`programs` rows of these samples), on the images' device.
    :return: float32 ``B x H x W x 3`` holding the uint8 values PIL gives (``.to(torch.uint8)`` for the bytes;
        dividing by 255 is ``ToTensor``'s result), laid out planar in memory (a ``permute(0, 3, 1, 2)`` of it is
        contiguous).
    :raises ValueError: images that are not uint8 RGB, or a program of another shape (shapes only: no device read).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[3] != 3:
        raise ValueError(f'strong_augment expects uint8 RGB images B x H x W x 3, got {images.dtype} '
                         f'{tuple(images.shape)}')
    if program.dim() != 2 or program.shape[0] != images.shape[0]:
        raise ValueError(f'expected one program row per image ({images.shape[0]} images), got a program of shape '
                         f'{tuple(program.shape)}')
    num_ops = _num_ops(program.shape[1], program_width, 'a program')
    # planar float32 inside: per-channel statistics and planes reduce fastest over contiguous pixels
    x = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    first = plan_width(num_ops)
    for slot in range(num_ops):
        x = _apply_slot(x, program[:, first + slot * len(_SLOT):first + (slot + 1) * len(_SLOT)])
    x = _cutout(x, program[:, -_BOX:])
    return x.permute(0, 2, 3, 1)


def apply_ops(x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """One op per sample on ``x`` (float32 ``B x 3 x H x W`` holding integers 0..255): ``ops`` (LongTensor ``(B,)`` of
    :data:`OP_NAMES` indices) and ``magnitudes`` (float64 ``(B,)``) on the host."""
    height, width = x.shape[-2:]
    return _apply_slot(x, _slot_program(ops, magnitudes, width, height).to(x.device))


def _apply_slot(x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """One op slot of every sample: the three families (geometric, look-up table, blend) in turn; each is the identity
    for the samples whose op is not one of its own, so no sample is sorted out on the host."""
    x = _geometric(x, slot[:, :6].long())
    x = _lookup(x, slot)
    return _blend(x, slot)


@functools.lru_cache(maxsize=64)
def _constant(values: Tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor made once per device (a new one per call would copy from the host every batch)."""
    return torch.tensor(values, dtype=dtype, device=device)


def _column(slot: torch.Tensor, name: str, *shape: int) -> torch.Tensor:
    return slot[:, _SLOT_COLUMN[name]].view(-1, *shape)


def _geometric(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Rotate, ShearX/Y, TranslateX/Y: each output pixel copied from the input pixel the sample's fixed-point
    coefficients give it, black outside the image.

    The planes are padded with one black pixel on each side and every source position clamped into the padding, so
    a position outside the image reads black (PIL's fill) without a mask.
    """
    batch, channels, height, width = x.shape
    a0, a1, a2, a3, a4, a5 = (c.view(batch, 1, 1) for c in coefficients.unbind(1))
    xs = torch.arange(width, device=x.device).view(1, 1, width)
    ys = torch.arange(height, device=x.device).view(1, height, 1)
    column = ((a2 + ys * a1) + xs * a0) >> 16  # an arithmetic shift: floor division by 65536, as PIL's
    row = ((a5 + ys * a4) + xs * a3) >> 16
    flat = (row.clamp_(-1, height) + 1) * (width + 2) + (column.clamp_(-1, width) + 1)
    padded = F.pad(x, (1, 1, 1, 1)).view(batch, channels, (height + 2) * (width + 2))
    return padded.gather(2, flat.view(batch, 1, height * width).expand(-1, channels, -1)).view_as(x)


def _tables(x: torch.Tensor, histogram: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Each sample's 256-entry table per channel (float64 ``B x C x 256``): AutoContrast, Equalize, Posterize or
    Solarize as PIL computes it, the identity for the other ops. Integer arithmetic is done in float64, exactly
    (integers below 2**53; ``floor(a / b)`` of such integers is ``a // b``)."""
    batch, channels, height, width = x.shape
    levels = torch.arange(256, device=x.device, dtype=torch.float64)
    identity = levels.expand(batch, channels, 256)
    # AutoContrast (ImageOps.autocontrast, cutoff 0): scale = 255 / (hi - lo), offset = -lo * scale, in float64
    flat = x.view(batch, channels, height * width)
    lo, hi = flat.amin(2, keepdim=True).to(torch.float64), flat.amax(2, keepdim=True).to(torch.float64)
    # a tensor numerator: `255.0 / tensor` is computed as 255.0 * (1 / tensor), which rounds differently
    scale = torch.full_like(lo, 255.0) / torch.where(hi > lo, hi - lo, 1.0)
    # int(v) then clipped to 0..255 is floor(v clipped to 0..255)
    autocontrast = torch.where(hi > lo, torch.floor((levels * scale + (-lo * scale)).clamp(0, 255)), identity)
    # Equalize (ImageOps.equalize): step = (pixels - count of the top level) // 255, lut = (step // 2 + below) // step
    top = histogram.gather(2, hi.long())
    step = torch.floor((height * width - top) / 255.0)
    below = histogram.cumsum(2) - histogram
    equalized = torch.floor((torch.floor(step / 2.0) + below) / step.clamp(min=1)).clamp(0, 255)
    equalize = torch.where(((histogram > 0).sum(2, keepdim=True) > 1) & (step > 0), equalized, identity)
    quantum = _column(slot, 'quantum', 1, 1)
    posterize = torch.floor(levels / quantum) * quantum
    solarize = torch.where(levels < _column(slot, 'threshold', 1, 1), levels, 255.0 - levels)
    table = identity
    for name, candidate in (('AutoContrast', autocontrast), ('Equalize', equalize), ('Posterize', posterize),
                            ('Solarize', solarize)):
        table = torch.where(_column(slot, name, 1, 1) > 0, candidate, table)
    return table


def _lookup(x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """AutoContrast, Equalize, Posterize, Solarize: one 256-entry look-up table per sample and channel, applied as one
    gather per plane."""
    batch, channels, height, width = x.shape
    values = x.view(batch * channels, height * width).to(torch.int32).long()  # via int32: faster on some CPUs
    histogram = torch.zeros(batch * channels, 256, dtype=torch.float64, device=x.device)
    histogram = histogram.scatter_add_(1, values, torch.ones((), dtype=torch.float64, device=x.device).expand(
        values.shape)).view(batch, channels, 256)
    table = _tables(x, histogram, slot).to(torch.float32).view(batch * channels, 256)
    return table.gather(1, values).view_as(x)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageFilter.SMOOTH`` on uint8 values: 3 x 3 kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 in float32, each row
    ``(p[x-1] k0 + p[x] k1) + p[x+1] k2`` and the rows added to 0.5 in PIL's order (below, centre, above), then
    truncated; the border rows and columns are kept.

    Worked on the flattened planes: a neighbour is a shift by 1 (left, right) or W (above, below), so every operand is
    one contiguous slice. The shifts wrap around at the ends of a row only in the border columns, which are then
    copied from the input.
    """
    batch, channels, height, width = x.shape
    pixels = height * width
    weights = _constant((_SMOOTH[0] / _SMOOTH[2], _SMOOTH[1] / _SMOOTH[2]), torch.float32, x.device)
    flat = x.reshape(batch, channels, pixels)
    by_edge, by_centre = flat * weights[0], flat * weights[1]  # each product rounded to float32, as PIL's
    # three-pixel row sums centred on pixels 1 .. P-2: (1 1 1) for the rows above and below, (1 5 1) for the centre
    outer = by_edge[..., :-2] + by_edge[..., 1:-1] + by_edge[..., 2:]
    inner = by_edge[..., :-2] + by_centre[..., 1:-1] + by_edge[..., 2:]
    # output pixels W+1 .. P-W-2 (rows 1 .. H-2 but for the two border pixels at the ends); the sum centred on pixel
    # p is entry p - 1: below p + W - 1, centre p - 1, above p - W - 1
    total = (outer[..., 2 * width:pixels - 2] + 0.5).add_(inner[..., width:pixels - width - 2])
    total = total.add_(outer[..., :pixels - 2 * width - 2]).clamp_(0, 255).floor_()
    out = torch.cat([flat[..., :width + 1], total, flat[..., pixels - width - 1:]], dim=2).view_as(x)
    out[..., 0], out[..., -1] = x[..., 0], x[..., -1]
    return out


def _blend(x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Brightness, Color, Contrast, Sharpness: ``Image.blend(degenerate, x, factor)`` as PIL's C code computes it,
    ``trunc(d + f (x - d))`` in float32 (clipped to 0..255, which only an extrapolating factor reaches).

    The other samples have ``f = 1``, which gives back ``x`` exactly (integers below 2**24). The degenerate image is
    chosen by 0/1 selectors, ``s1 d1 + s2 d2 + s3 d3``: exact on integer values, and cheaper than ``torch.where``
    over whole images.
    """
    red, green, blue = x.unbind(1)
    # the 16-bit fixed-point luma stays below 2**24: exact in float32; >> 16 is a floor division by 65536
    luma = torch.floor((red * _LUMA[0] + green * _LUMA[1] + blue * _LUMA[2] + 32768.0) / 65536.0).unsqueeze(1)
    # ImageStat's mean: the integer sum divided by the count (an exact sum; `mean()` may multiply by 1 / count)
    mean = torch.floor(luma.to(torch.float64).sum((2, 3), keepdim=True) / (luma.shape[2] * luma.shape[3]) + 0.5)
    select = slot[:, 7:10].to(torch.float32)  # Sharpness, Color, Contrast; Brightness' degenerate image is black
    degenerate = (select[:, 0].view(-1, 1, 1, 1) * _smooth(x) + select[:, 1].view(-1, 1, 1, 1) * luma
                  + select[:, 2].view(-1, 1, 1, 1) * mean.to(torch.float32))
    factor = _column(slot, 'factor', 1, 1, 1).to(torch.float32)
    return (degenerate + factor * (x - degenerate)).clamp_(0, 255).floor_()


def _cutout(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Cutout's grey square per sample, from its box (:func:`_cutout_box`): ``x + inside (fill - x)``, exact."""
    height, width = x.shape[-2:]
    x0, x1, y0, y1, active = (c.view(-1, 1) for c in box.unbind(1))
    xs = torch.arange(width, device=x.device, dtype=torch.float64).view(1, width)
    ys = torch.arange(height, device=x.device, dtype=torch.float64).view(1, height)
    columns = (xs >= x0) & (xs <= x1) & (active > 0)
    rows = (ys >= y0) & (ys <= y1)
    inside = (rows[:, :, None] & columns[:, None, :]).to(torch.float32).unsqueeze(1)
    fill = _constant(tuple(float(c) for c in CUTOUT_FILL), torch.float32, x.device).view(1, 3, 1, 1)
    return x + inside * (fill - x)
