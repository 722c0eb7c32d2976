r"""CIFAR ``ShuffleV1`` of the RepDistiller model zoo (ShuffleNet V1, 3 groups).

ShuffleNet of Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
Devices" (CVPR 2018), with :math:`g = 3` groups and stage widths 240, 480, 960 ([4, 8, 4] units), in the
CIFAR variant of the RepDistiller model zoo (Tian et al., "Contrastive Representation Distillation", ICLR
2020): a 1x1 stem with 24 channels and no max-pooling, 4x4 average pooling and a linear layer ``linear``.

Authors' code: https://github.com/HobbitLong/RepDistiller/blob/master/models/ShuffleNetv1.py

.. warning::
    Details that change the outputs and are reproduced as in RepDistiller: the first 1x1 group conv of a
    unit uses 1 group when its input has 24 channels (the first unit), otherwise 3; the channel shuffle
    follows that first conv only (with its own group count, so it is the identity in the first unit); the
    bottleneck width is ``int(out / 4)`` of the unit's own output (which, for a strided unit, excludes the
    concatenated shortcut channels); the stride-2 shortcut is a 3x3 average pooling with padding 1 that
    counts the padding.

.. code-block:: yaml

    student_model:
      key: 'cifar_ShuffleV1'
      kwargs:
        num_classes: 100
"""
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._registry import model


class ChannelShuffle(nn.Module):
    """Channel shuffle of ShuffleNet: view channels as (groups, C/groups), transpose, flatten back."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet V1 unit: GConv1x1-BN-ReLU, shuffle, DWConv3x3-BN, GConv1x1-BN, add or concat, ReLU.

    :param in_planes: input channels.
    :param out_planes: channels of the residual branch (the unit outputs ``in + out`` when strided).
    :param stride: 1 (residual sum) or 2 (concatenation with an average-pooled shortcut).
    :param groups: group count of the 1x1 convolutions.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'stride must be 1 or 2, got {stride}')
        self.stride = stride
        mid_planes = int(out_planes / 4)
        first_groups = 1 if in_planes == 24 else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.shuffle1 = ChannelShuffle(first_groups)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1, groups=mid_planes,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle1(F.relu(self.bn1(self.conv1(x))))
        # RepDistiller applies a ReLU after the depthwise BN as well (the paper has none there).
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.shortcut(x)
        out = torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut
        return F.relu(out)


class CifarShuffleNetV1(nn.Module):
    """ShuffleNet V1 for 32x32 inputs.

    :param out_planes: output channels of the three stages.
    :param num_blocks: units per stage.
    :param groups: group count :math:`g`.
    :param num_classes: number of classes (output logits).
    """

    def __init__(self, out_planes: Sequence[int], num_blocks: Sequence[int], groups: int, num_classes: int = 100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_planes = 24
        stages = []
        for planes, blocks in zip(out_planes, num_blocks):
            # The strided first unit concatenates its input, so its branch only adds planes - in_planes.
            units = [ShuffleUnit(in_planes, planes - in_planes, 2, groups)]
            units += [ShuffleUnit(planes, planes, 1, groups) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*units))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(out_planes[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.avg_pool2d(x, 4).flatten(1)
        return self.linear(x)


@model('cifar_ShuffleV1')
def ShuffleV1(num_classes: int = 100) -> CifarShuffleNetV1:
    """RepDistiller ``ShuffleV1``: g = 3, widths [240, 480, 960], units [4, 8, 4]."""
    return CifarShuffleNetV1([240, 480, 960], [4, 8, 4], groups=3, num_classes=num_classes)
