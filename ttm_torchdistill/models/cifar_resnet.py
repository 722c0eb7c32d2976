r"""CIFAR ResNets of the RepDistiller model zoo: resnet8 ... resnet110, resnet8x4 and resnet32x4.

The post-activation ResNet for 32x32 inputs of He et al., "Deep Residual Learning for Image Recognition"
(CVPR 2016, Section 4.2): a 3x3 stem, three stages of :math:`n` basic blocks each (depth :math:`6n + 2`),
global average pooling over the final 8x8 map and a linear classifier. The layout (module names, the
``x4`` widths [32, 64, 128, 256], the 1x1-conv + BN projection shortcut ``downsample``) follows the
RepDistiller model zoo (Tian et al., "Contrastive Representation Distillation", ICLR 2020), whose
pretrained teachers the TTM, DIST and adaptive-temperature papers distil from.

Authors' code: https://github.com/HobbitLong/RepDistiller/blob/master/models/resnet.py

Module names equal RepDistiller's, so its checkpoints load with ``strict=True`` and torchdistill forward
hooks reach the same features (e.g. ``layer3`` for the output of the last stage, ``avgpool`` for the pooled
feature). RepDistiller's ``preact`` features (a block's sum before its last ReLU) are not module outputs.

.. code-block:: yaml

    student_model:
      key: 'cifar_resnet8x4'
      kwargs:
        num_classes: 100
"""
from typing import List, Optional

import torch
from torch import nn

from .._registry import model
from ._init import he_fan_out_init_


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the (projected) input, then ReLU (post-activation residual block)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        # A projection only where the shape changes; otherwise the identity (no state_dict entry).
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        # Not in place, so a forward hook on bn2 keeps bn2's own output (RepDistiller adds into that tensor).
        return torch.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs with basic blocks.

    :param depth: total depth, :math:`6n + 2` (n basic blocks per stage).
    :param widths: channels of the stem and of the three stages, e.g. ``[16, 16, 32, 64]``.
    :param num_classes: number of classes (output logits).
    """

    def __init__(self, depth: int, widths: List[int], num_classes: int = 100):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f'depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}')
        if len(widths) != 4:
            raise ValueError(f'widths must list 4 channel counts (stem and three stages), got {widths}')
        num_blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(widths[0], widths[1], num_blocks, stride=1)
        self.layer2 = self._make_stage(widths[1], widths[2], num_blocks, stride=2)
        self.layer3 = self._make_stage(widths[2], widths[3], num_blocks, stride=2)
        # A fixed 8x8 window, as in RepDistiller: global pooling for 32x32 inputs.
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(widths[3], num_classes)
        he_fan_out_init_(self)

    @staticmethod
    def _make_stage(in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


_NARROW = [16, 16, 32, 64]
_WIDE = [32, 64, 128, 256]


@model('cifar_resnet8')
def resnet8(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet8``: depth 8, widths [16, 16, 32, 64]."""
    return CifarResNet(8, _NARROW, num_classes)


@model('cifar_resnet14')
def resnet14(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet14``: depth 14, widths [16, 16, 32, 64]."""
    return CifarResNet(14, _NARROW, num_classes)


@model('cifar_resnet20')
def resnet20(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet20``: depth 20, widths [16, 16, 32, 64]."""
    return CifarResNet(20, _NARROW, num_classes)


@model('cifar_resnet32')
def resnet32(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet32``: depth 32, widths [16, 16, 32, 64]."""
    return CifarResNet(32, _NARROW, num_classes)


@model('cifar_resnet44')
def resnet44(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet44``: depth 44, widths [16, 16, 32, 64]."""
    return CifarResNet(44, _NARROW, num_classes)


@model('cifar_resnet56')
def resnet56(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet56``: depth 56, widths [16, 16, 32, 64] (a public teacher)."""
    return CifarResNet(56, _NARROW, num_classes)


@model('cifar_resnet110')
def resnet110(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet110``: depth 110, widths [16, 16, 32, 64] (a public teacher)."""
    return CifarResNet(110, _NARROW, num_classes)


@model('cifar_resnet8x4')
def resnet8x4(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet8x4``: depth 8, widths [32, 64, 128, 256]."""
    return CifarResNet(8, _WIDE, num_classes)


@model('cifar_resnet32x4')
def resnet32x4(num_classes: int = 100) -> CifarResNet:
    """RepDistiller ``resnet32x4``: depth 32, widths [32, 64, 128, 256] (a public teacher)."""
    return CifarResNet(32, _WIDE, num_classes)
