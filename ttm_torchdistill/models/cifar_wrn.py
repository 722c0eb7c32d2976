r"""CIFAR Wide ResNets of the RepDistiller model zoo: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2.

WRN-:math:`d`-:math:`k` of Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016): a 3x3 stem with 16
channels, three groups of :math:`n = (d - 4) / 6` pre-activation blocks (BN-ReLU-conv-BN-ReLU-conv) with
:math:`16k, 32k, 64k` channels, a final BN-ReLU, 8x8 average pooling and a linear layer. No dropout.
Layout and module names (``block1.layer.0.convShortcut``...) follow the RepDistiller model zoo
(Tian et al., "Contrastive Representation Distillation", ICLR 2020).

Authors' code: https://github.com/HobbitLong/RepDistiller/blob/master/models/wrn.py

.. warning::
    As in the original WRN code, a block that changes the channel count applies its first BN-ReLU to the
    input *before* the split, so its 1x1 projection shortcut sees the pre-activated input; a block that
    keeps the shape adds the raw input. This differs from a textbook pre-activation block and changes
    the outputs, so it is reproduced exactly.

.. code-block:: yaml

    teacher_model:
      key: 'cifar_wrn_40_2'
      kwargs:
        num_classes: 100
      src_ckpt: './resource/ckpt/cifar100/teachers/wrn_40_2_vanilla/ckpt_epoch_240.pth'
"""
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from .._registry import model
from ._init import he_fan_out_init_, zero_bias_linear_


class WideBasicBlock(nn.Module):
    """Pre-activation block BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut: Optional[nn.Conv2d] = None
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        if self.equal_in_out:
            return x + out
        # See the module warning: the projection takes the pre-activated input.
        return self.convShortcut(activated) + out


class NetworkBlock(nn.Module):
    """A group of wide blocks; only the first one may change stride and width (module ``layer``)."""

    def __init__(self, num_layers: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
            for i in range(num_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen_factor for 32x32 inputs.

    :param depth: total depth :math:`d = 6n + 4`.
    :param widen_factor: width multiplier :math:`k`.
    :param num_classes: number of classes (output logits).
    """

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 100):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f'depth must be 6n+4 with n >= 1 (10, 16, 22, ..., 40), got {depth}')
        if widen_factor < 1:
            raise ValueError(f'widen_factor must be a positive integer, got {widen_factor}')
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], 1)
        self.block2 = NetworkBlock(n, channels[1], channels[2], 2)
        self.block3 = NetworkBlock(n, channels[2], channels[3], 2)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(channels[3], num_classes)
        self.nChannels = channels[3]
        he_fan_out_init_(self, linear=zero_bias_linear_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.relu(self.bn1(x))
        x = F.avg_pool2d(x, 8).flatten(1)
        return self.fc(x)


@model('cifar_wrn_16_1')
def wrn_16_1(num_classes: int = 100) -> WideResNet:
    """RepDistiller ``wrn_16_1``: WRN-16-1."""
    return WideResNet(16, 1, num_classes)


@model('cifar_wrn_16_2')
def wrn_16_2(num_classes: int = 100) -> WideResNet:
    """RepDistiller ``wrn_16_2``: WRN-16-2."""
    return WideResNet(16, 2, num_classes)


@model('cifar_wrn_40_1')
def wrn_40_1(num_classes: int = 100) -> WideResNet:
    """RepDistiller ``wrn_40_1``: WRN-40-1."""
    return WideResNet(40, 1, num_classes)


@model('cifar_wrn_40_2')
def wrn_40_2(num_classes: int = 100) -> WideResNet:
    """RepDistiller ``wrn_40_2``: WRN-40-2 (a public teacher)."""
    return WideResNet(40, 2, num_classes)
