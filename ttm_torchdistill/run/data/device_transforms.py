"""Translate a torchvision CIFAR transform pipeline into one that runs batched on the device.

Only the transforms whose per-sample randomness can be drawn up front and applied as tensor indexing are
translated, and they are translated exactly (same pixels as torchvision's PIL path for the same random
parameters):

* ``RandomCrop(size, padding)``: zero padding (``padding_mode='constant'``, ``fill=0``), ``pad_if_needed=False``;
  the crop offset (top, left) is uniform over the padded image, as ``RandomCrop.get_params`` draws it;
* ``RandomHorizontalFlip(p)``: flip with probability ``p``;
* ``ToTensor()``: uint8 ``H x W x C`` -> float ``C x H x W`` divided by 255 (exactly once);
* ``Normalize(mean, std)``: ``(x - mean) / std`` per channel, after ``ToTensor``;
* ``ttm_torchdistill.views.StrongAugment(num_ops)`` (MLKD's strong view, before ``ToTensor``, RGB images): each
  sample's ops, magnitudes and Cutout drawn up front (:func:`~ttm_torchdistill.views.device_augment.draw_plans`) and
  applied to the batch as PIL computes them (:mod:`ttm_torchdistill.views.device_augment`, which says where the
  result could differ from PIL's: in no pixel of its tests).

Anything else raises ``ValueError`` naming what was found and what is supported; nothing is dropped or replaced.

API::

    pipeline = translate_transform(dataset.transform, image_shape=(32, 32, 3))
    params = pipeline.draw(num_samples, generator)        # per-op tensors, first dim = sample index
    batch = pipeline.apply(images_uint8_nhwc, [p[idx] for p in params])   # B x C x H' x W' float
    pipeline.describe()                                   # canonical JSON-able description

Images stay uint8 and channel-last (``B x H x W x C``, the layout of CIFAR's ``.data``) through crop and flip,
which are one ``index_select`` of whole pixels on the zero-padded batch (no loop over samples). ``ToTensor`` first
moves the uint8 batch into the requested output memory layout (planar ``B x C x H x W`` by default, so that
``Normalize`` broadcasts over whole planes; kept channel-last for ``torch.channels_last``), then converts to
float32; the result is returned as a ``B x C x H x W`` tensor in that memory format.
"""
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torchvision import transforms as T

from ...views.augment import StrongAugment
from ...views.device_augment import apply_programs, draw_plans, program_width, programs

SUPPORTED = ('RandomCrop (zero padding), RandomHorizontalFlip, ToTensor, Normalize, '
             'ttm_torchdistill.views.StrongAugment (in a Compose or alone)')


def _is_zero_fill(fill: Any) -> bool:
    if isinstance(fill, numbers.Number) and not isinstance(fill, bool):
        return fill == 0
    if isinstance(fill, (tuple, list)) and len(fill) > 0:
        return all(isinstance(v, numbers.Number) and v == 0 for v in fill)
    return False


def _ltrb_padding(padding: Any) -> Tuple[int, int, int, int]:
    """torchvision's padding convention -> (left, top, right, bottom)."""
    if padding is None:
        return 0, 0, 0, 0
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        values = [int(padding)] * 4
    elif isinstance(padding, (tuple, list)) and len(padding) in (1, 2, 4) \
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in padding):
        values = [int(v) for v in padding]
        if len(values) == 1:
            values = values * 4
        elif len(values) == 2:  # (left/right, top/bottom)
            values = [values[0], values[1], values[0], values[1]]
    else:
        raise ValueError(f'RandomCrop padding {padding!r} is not supported: expected None, an int or a sequence of '
                         f'1, 2 or 4 ints')
    if min(values) < 0:
        raise ValueError(f'RandomCrop padding {padding!r} is negative: only non-negative padding is supported')
    return tuple(values)


class CropOp:
    """``RandomCrop``: zero-pad (left, top, right, bottom), then crop ``size`` at a per-sample offset.

    Parameters per sample: LongTensor ``(2,)`` = (top, left) offsets on the padded image, each uniform over
    ``0 .. padded - size`` (both ends included).
    """
    name = 'RandomCrop'

    def __init__(self, size: Tuple[int, int], padding: Tuple[int, int, int, int]):
        self.size = tuple(int(v) for v in size)
        self.padding = tuple(padding)

    def describe(self) -> Dict[str, Any]:
        return {'op': self.name, 'size': list(self.size), 'padding_ltrb': list(self.padding), 'fill': 0,
                'padding_mode': 'constant'}

    def padded_hw(self, hw: Tuple[int, int]) -> Tuple[int, int]:
        left, top, right, bottom = self.padding
        return hw[0] + top + bottom, hw[1] + left + right

    def out_hw(self, hw: Tuple[int, int]) -> Tuple[int, int]:
        padded = self.padded_hw(hw)
        if padded[0] < self.size[0] or padded[1] < self.size[1]:
            raise ValueError(f'RandomCrop size {self.size} is larger than the padded image {padded} '
                             f'(pad_if_needed is not supported)')
        return self.size

    def draw(self, num_samples: int, hw: Tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """(top, left) offsets, LongTensor ``num_samples x 2``, from ``generator`` (CPU)."""
        padded = self.padded_hw(hw)
        top = torch.randint(0, padded[0] - self.size[0] + 1, (num_samples,), generator=generator, device='cpu')
        left = torch.randint(0, padded[1] - self.size[1] + 1, (num_samples,), generator=generator, device='cpu')
        return torch.stack([top, left], dim=1)

    def apply(self, x: torch.Tensor, offsets: torch.Tensor, flip: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Crop ``x`` (B x H x W x C) at ``offsets`` (B x 2); if ``flip`` (B bool) is given, also mirror those rows.

        One advanced-indexing gather on the padded batch: no loop over samples. Folding a following horizontal
        flip into the column index saves a second pass over the batch.
        """
        left, top, right, bottom = self.padding
        if any(self.padding):
            x = F.pad(x, (0, 0, left, right, top, bottom))  # C untouched, W by (left, right), H by (top, bottom)
        x = x.contiguous()
        batch, height, width, channels = x.shape
        th, tw = self.size
        device = x.device
        offsets = offsets.to(device)
        rows = offsets[:, 0:1] + torch.arange(th, device=device)  # B x th
        cols_forward = torch.arange(tw, device=device)
        if flip is None:
            cols = offsets[:, 1:2] + cols_forward
        else:
            cols = offsets[:, 1:2] + torch.where(flip.to(device)[:, None], tw - 1 - cols_forward, cols_forward)
        # flat pixel index into the padded batch; index_select of whole C-pixels is ~3x faster than
        # three-tensor advanced indexing on CPU
        first = torch.arange(batch, device=device)[:, None, None] * (height * width)
        flat = (first + rows[:, :, None] * width + cols[:, None, :]).reshape(-1)
        return x.view(-1, channels).index_select(0, flat).view(batch, th, tw, channels)


class FlipOp:
    """``RandomHorizontalFlip(p)``. Parameters per sample: bool, True with probability ``p``."""
    name = 'RandomHorizontalFlip'

    def __init__(self, p: float):
        self.p = float(p)

    def describe(self) -> Dict[str, Any]:
        return {'op': self.name, 'p': self.p}

    def out_hw(self, hw: Tuple[int, int]) -> Tuple[int, int]:
        return hw

    def draw(self, num_samples: int, hw: Tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        # torchvision flips when torch.rand(1) < p: the same Bernoulli(p) per sample
        return torch.rand(num_samples, generator=generator, device='cpu') < self.p

    def apply(self, x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Mirror along W the samples of ``x`` (B x H x W x C) where ``flip`` (B bool) is True."""
        return torch.where(flip.to(x.device)[:, None, None, None], x.flip(2), x)


class ToTensorOp:
    """``ToTensor``: uint8 (or float32 holding uint8 values, after StrongAugment) -> float32 / 255 (the layout stays
    channel-last until the end of the pipeline)."""
    name = 'ToTensor'

    def describe(self) -> Dict[str, Any]:
        return {'op': self.name}

    def out_hw(self, hw):
        return hw

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        # same arithmetic as torchvision (float32 then divide by 255), so the values are bit-identical
        return x.to(torch.float32).div(255)


class NormalizeOp:
    """``Normalize(mean, std)`` over the channel (last) dimension."""
    name = 'Normalize'

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._cache: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = dict()

    def describe(self) -> Dict[str, Any]:
        return {'op': self.name, 'mean': list(self.mean), 'std': list(self.std)}

    def out_hw(self, hw):
        return hw

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.device not in self._cache:
            self._cache[x.device] = (torch.tensor(self.mean, dtype=torch.float32, device=x.device),
                                     torch.tensor(self.std, dtype=torch.float32, device=x.device))
        mean, std = self._cache[x.device]
        return x.sub(mean).div(std)  # as torchvision: subtract, then divide, in float32


class StrongAugmentOp:
    """``ttm_torchdistill.views.StrongAugment(num_ops)``: MLKD's strong augmentation, per sample, on the uint8 batch.

    Parameters per sample: one program row of float64 (:func:`~ttm_torchdistill.views.device_augment.programs` of
    the plan :func:`~ttm_torchdistill.views.device_augment.draw_plans` draws with StrongAugment's distribution: op
    indices, magnitudes, Cutout's fraction and centre, then what the batch needs of them, computed on the host when
    the epoch's parameters are drawn). It yields float32 holding the uint8 values (``ToTensor`` divides them by 255 as
    it divides the bytes).
    """
    name = 'StrongAugment'

    def __init__(self, num_ops: int):
        self.num_ops = int(num_ops)

    def describe(self) -> Dict[str, Any]:
        return {'op': self.name, 'num_ops': self.num_ops}

    def out_hw(self, hw: Tuple[int, int]) -> Tuple[int, int]:
        return hw

    def draw(self, num_samples: int, hw: Tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """Programs ``num_samples x program_width(num_ops)``, float64, from ``generator`` (CPU)."""
        size = (hw[1], hw[0])
        return programs(draw_plans(num_samples, self.num_ops, size, generator), size)

    def apply(self, x: torch.Tensor, program: torch.Tensor) -> torch.Tensor:
        """``x``: uint8 B x H x W x 3 (any memory layout); ``program``: B rows of :meth:`draw`'s, on ``x``'s device."""
        if program.shape[1] != program_width(self.num_ops):
            raise ValueError(f'StrongAugment({self.num_ops}) takes programs of {program_width(self.num_ops)} columns, '
                             f'got {tuple(program.shape)}')
        return apply_programs(x, program)


def _flatten(transform: Any) -> List[Any]:
    if isinstance(transform, T.Compose):
        out = []
        for t in transform.transforms:
            out.extend(_flatten(t))
        return out
    return [transform]


def _translate_one(t: Any):
    kind = type(t)
    if kind is T.RandomCrop:
        if t.pad_if_needed:
            raise ValueError('RandomCrop(pad_if_needed=True) is not supported by the device data path: '
                             'expected pad_if_needed=False')
        if t.padding_mode != 'constant':
            raise ValueError(f'RandomCrop padding_mode={t.padding_mode!r} is not supported by the device data path: '
                             f'expected \'constant\' (zero fill)')
        if not _is_zero_fill(t.fill):
            raise ValueError(f'RandomCrop fill={t.fill!r} is not supported by the device data path: expected 0')
        return CropOp(t.size, _ltrb_padding(t.padding))
    if kind is T.RandomHorizontalFlip:
        p = float(t.p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f'RandomHorizontalFlip p={t.p!r} is not a probability: expected 0 <= p <= 1')
        return FlipOp(p)
    if kind is T.ToTensor:
        return ToTensorOp()
    if kind is StrongAugment:
        if t.generator is not None:
            raise ValueError('StrongAugment with a generator of its own is not supported by the device data path, '
                             'which draws every sample\'s augmentation from its per-sample streams: expected '
                             'generator None')
        return StrongAugmentOp(t.num_ops)
    if kind is T.Normalize:
        mean, std = t.mean, t.std
        # float64 keeps the configured numbers as written (torchvision casts them to float32 when it applies them)
        mean = torch.as_tensor(mean, dtype=torch.float64).flatten().tolist()
        std = torch.as_tensor(std, dtype=torch.float64).flatten().tolist()
        if any(s == 0 for s in std):
            raise ValueError(f'Normalize std {std} has a zero: expected non-zero standard deviations')
        return NormalizeOp(mean, std)
    name = f'{kind.__module__}.{kind.__qualname__}'
    raise ValueError(f'transform {name} is not supported by the device data path: supported are {SUPPORTED}')


class DevicePipeline:
    """A translated transform pipeline: per-sample parameter draws plus a batched apply.

    :param ops: the translated ops in the config's order.
    :param image_shape: ``(H, W, C)`` of the raw uint8 images.
    """

    def __init__(self, ops: List[Any], image_shape: Tuple[int, int, int]):
        self.ops = list(ops)
        self.image_shape = tuple(int(v) for v in image_shape)
        hw = self.image_shape[:2]
        self._in_hw = []
        converted = False
        for op in self.ops:
            if isinstance(op, NormalizeOp):
                if not converted:
                    raise ValueError('Normalize before ToTensor is not supported (torchvision rejects it on PIL '
                                     'images): expected ToTensor first')
                if len(op.mean) not in (1, self.image_shape[2]) or len(op.std) not in (1, self.image_shape[2]):
                    raise ValueError(f'Normalize has {len(op.mean)} means and {len(op.std)} stds for '
                                     f'{self.image_shape[2]}-channel images: expected 1 or {self.image_shape[2]}')
            if isinstance(op, ToTensorOp):
                if converted:
                    raise ValueError('ToTensor appears twice: torchvision rejects a tensor input; expected it once')
                converted = True
            if isinstance(op, StrongAugmentOp):
                if converted:
                    raise ValueError('StrongAugment after ToTensor is not supported (it works on PIL images and '
                                     'rejects tensors): expected it before ToTensor')
                if self.image_shape[2] != 3:
                    raise ValueError(f'StrongAugment works on RGB images; the images have {self.image_shape[2]} '
                                     f'channels: expected 3')
            self._in_hw.append(hw)
            hw = op.out_hw(hw)
        if not converted:
            raise ValueError(f'the transform has no ToTensor: the device data path yields tensors and needs the '
                             f'pipeline to end in tensors (found {[op.name for op in self.ops]})')
        self.out_hw = tuple(hw)

    @property
    def random_ops(self) -> List[int]:
        """Positions of the ops that draw per-sample parameters."""
        return [k for k, op in enumerate(self.ops) if hasattr(op, 'draw')]

    def describe(self) -> List[Dict[str, Any]]:
        """Canonical, JSON-serialisable description (ops in order with their resolved arguments)."""
        return [op.describe() for op in self.ops]

    def draw(self, num_samples: int, generator: torch.Generator) -> List[Optional[torch.Tensor]]:
        """Per-op parameters for ``num_samples`` samples (None for deterministic ops), drawn in op order.

        :param generator: a CPU ``torch.Generator``; the draws depend only on its state and ``num_samples``.
        :return: list aligned with ``ops``; entry k has first dimension ``num_samples`` (sample index).
        """
        return [op.draw(num_samples, hw, generator) if hasattr(op, 'draw') else None
                for op, hw in zip(self.ops, self._in_hw)]

    def apply(self, images: torch.Tensor, params: Sequence[Optional[torch.Tensor]],
              dtype: torch.dtype = torch.float32,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """Run the pipeline on a batch.

        :param images: uint8 ``B x H x W x C`` on the target device.
        :param params: per-op parameters for these B samples (``draw``'s entries indexed by the batch's indices).
        :param dtype: output floating dtype (the arithmetic is done in float32, then cast).
        :param memory_format: ``torch.contiguous_format`` (as DataLoader yields) or ``torch.channels_last``.
        :return: ``B x C x H' x W'`` tensor of ``dtype``.
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f'expected uint8 images of shape B x {" x ".join(map(str, self.image_shape))}, got '
                             f'{images.dtype} {tuple(images.shape)}')
        return self._run(images, params, 0, dtype, memory_format)

    def prepare(self, images: torch.Tensor,
                memory_format: torch.memory_format = torch.contiguous_format) -> 'PreparedImages':
        """Device buffers from which :meth:`run` gathers batches of a whole dataset (see :class:`PreparedImages`).

        :param images: uint8 ``N x H x W x C``, already on the device.
        """
        return PreparedImages(self, images, memory_format)

    def run(self, prepared: 'PreparedImages', indices: torch.Tensor, params: Sequence[Optional[torch.Tensor]],
            dtype: torch.dtype = torch.float32,
            memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """The pipeline's output for samples ``indices`` of a prepared dataset (same values as :meth:`apply`).

        :param indices: LongTensor ``(B,)`` on the device.
        :param params: per-op parameters of these B samples.
        :return: ``B x C x H' x W'`` tensor of ``dtype``.
        """
        x, start = prepared.gather(indices, params)
        return self._run(x, params, start, dtype, memory_format)

    def _run(self, x: torch.Tensor, params, start: int, dtype, memory_format) -> torch.Tensor:
        """Ops ``start..`` on ``x`` (logical ``B x H x W x C``, any memory layout)."""
        k = start
        while k < len(self.ops):
            op = self.ops[k]
            if isinstance(op, CropOp):
                following = self.ops[k + 1] if k + 1 < len(self.ops) else None
                if isinstance(following, FlipOp):  # crop then flip in one gather
                    x = op.apply(x, params[k], flip=params[k + 1])
                    k += 2
                    continue
                x = op.apply(x, params[k])
            elif isinstance(op, (FlipOp, StrongAugmentOp)):
                x = op.apply(x, params[k])
            elif isinstance(op, ToTensorOp):
                # convert in the output memory layout: NCHW memory makes the per-channel Normalize that usually
                # follows broadcast over whole planes instead of over an innermost dimension of 3
                if memory_format != torch.channels_last:
                    x = x.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # still B x H x W x C
                x = op.apply(x)
            else:
                x = op.apply(x)
            k += 1
        x = x.permute(0, 3, 1, 2)  # B x C x H x W view
        if x.dtype != dtype:
            x = x.to(dtype)
        return x.contiguous(memory_format=memory_format)


class PreparedImages:
    """A dataset's images on the device, laid out so that the pipeline's leading crop (+ flip) is one gather.

    When the pipeline starts with ``RandomCrop`` (optionally followed by ``RandomHorizontalFlip``), the images
    are zero-padded once, stored in the output memory layout (planar ``N x C x H' x W'`` unless channels_last)
    and, with a flip, stored a second time mirrored. Every crop window of every image is then a row of one
    overlapping ``as_strided`` view of that buffer, and a batch of crops is a single ``index_select`` of
    window starts: no per-batch pad, flip or layout copy. (A mirrored crop at column ``j`` is the crop at
    ``W' - w - j`` of the mirrored image.) Memory: ``N x C x H' x W'`` bytes, twice that with a flip (CIFAR-100:
    240 MB, 480 MB). Other pipelines keep the raw images and gather the batch first.

    :param pipeline: the translated pipeline.
    :param images: uint8 ``N x H x W x C`` on the device.
    :param memory_format: the output memory format (decides the buffer layout).
    """

    def __init__(self, pipeline: DevicePipeline, images: torch.Tensor,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.images = images
        self.windows: Optional[torch.Tensor] = None
        #: what the buffers depend on: another pipeline with the same layout can gather from them
        self.layout = prepared_layout(pipeline, memory_format)
        ops = pipeline.ops
        if not ops or not isinstance(ops[0], CropOp):
            self.prefix = 0
            return
        crop = ops[0]
        self.prefix = 2 if len(ops) > 1 and isinstance(ops[1], FlipOp) else 1
        left, top, right, bottom = crop.padding
        padded = F.pad(images, (0, 0, left, right, top, bottom))  # N x H' x W' x C
        self.planar = memory_format != torch.channels_last
        if self.planar:
            padded = padded.permute(0, 3, 1, 2)  # N x C x H' x W'
        padded = padded.contiguous()
        if self.prefix == 2:
            padded = torch.cat([padded, padded.flip(3 if self.planar else 2)])  # images, then mirrored images
        self.buffer = padded
        n, (hp, wp), c = images.shape[0], crop.padded_hw(images.shape[1:3]), images.shape[3]
        th, tw = crop.size
        self.num_images, self.padded_width, self.crop_width = n, wp, tw
        self.image_stride = c * hp * wp
        if self.planar:
            shape, strides = (c, th, tw), (hp * wp, wp, 1)
            self.row_stride, self.col_stride = wp, 1
        else:
            shape, strides = (th, tw, c), (wp * c, c, 1)
            self.row_stride, self.col_stride = wp * c, c
        extent = sum((size - 1) * stride for size, stride in zip(shape, strides)) + 1
        flat = self.buffer.view(-1)
        # one (overlapping, read-only) window per start element of the buffer
        self.windows = flat.as_strided((flat.numel() - extent + 1, *shape), (1, *strides))

    def gather(self, indices: torch.Tensor, params: Sequence[Optional[torch.Tensor]]) -> Tuple[torch.Tensor, int]:
        """The batch after the leading crop (+ flip), logical ``B x H x W x C``, and the index of the next op."""
        if self.windows is None:
            return self.images.index_select(0, indices), 0
        offsets = params[0]
        top, left = offsets[:, 0], offsets[:, 1]
        image = indices
        if self.prefix == 2:
            flip = params[1]
            left = torch.where(flip, self.padded_width - self.crop_width - left, left)
            image = indices + self.num_images * flip.long()
        starts = image * self.image_stride + top * self.row_stride + left * self.col_stride
        batch = self.windows.index_select(0, starts)
        return (batch.permute(0, 2, 3, 1) if self.planar else batch), self.prefix


def prepared_layout(pipeline: DevicePipeline, memory_format: torch.memory_format) -> Any:
    """What :class:`PreparedImages` builds for ``pipeline``: the leading crop's size and padding, whether a flip
    follows it, and whether the buffer is planar (None when the pipeline does not start with RandomCrop)."""
    ops = pipeline.ops
    if not ops or not isinstance(ops[0], CropOp):
        return None
    flip = len(ops) > 1 and isinstance(ops[1], FlipOp)
    return ops[0].size, ops[0].padding, flip, memory_format != torch.channels_last


def translate_transform(transform: Any, image_shape: Tuple[int, int, int] = (32, 32, 3)) -> DevicePipeline:
    """Translate a torchvision ``Compose`` (or a single transform) into a :class:`DevicePipeline`.

    :param transform: the dataset's ``transform`` (``torchvision.transforms.Compose``, nested Composes are
        flattened, or one transform).
    :param image_shape: ``(H, W, C)`` of the raw uint8 images the transform receives.
    :raises ValueError: one line naming the first unsupported transform or argument, and what is supported.
    """
    if transform is None:
        raise ValueError(f'the dataset has no transform: the device data path needs at least ToTensor '
                         f'(supported: {SUPPORTED})')
    return DevicePipeline([_translate_one(t) for t in _flatten(transform)], image_shape)
