r"""CIFAR ``ShuffleV2`` of the RepDistiller model zoo (ShuffleNet V2 1x).

ShuffleNet V2 of Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design"
(ECCV 2018), width 1x (stages of 116, 232, 464 channels with [3, 7, 3] basic units after a down-sampling
unit, then a 1x1 conv to 1024), in the CIFAR variant of the RepDistiller model zoo (Tian et al.,
"Contrastive Representation Distillation", ICLR 2020): a 1x1 stem with 24 channels and no max-pooling,
4x4 average pooling and a linear layer ``linear``.

Authors' code: https://github.com/HobbitLong/RepDistiller/blob/master/models/ShuffleNetv2.py

.. warning::
    Reproduced as in RepDistiller: a basic unit keeps the *first* half of the channels and transforms
    the second; the down-sampling unit puts the depthwise branch (``conv1``, ``conv2``) before the 1x1
    branch (``conv3``...``conv5``) in the concatenation; every unit ends with a 2-group channel shuffle.

.. code-block:: yaml

    student_model:
      key: 'cifar_ShuffleV2'
      kwargs:
        num_classes: 100
"""
from typing import Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .._registry import model
from .cifar_shufflenetv1 import ChannelShuffle


class ChannelSplit(nn.Module):
    """Split the channels at ``int(C * ratio)`` into (kept, transformed)."""

    def __init__(self, ratio: float):
        super().__init__()
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        c = int(x.size(1) * self.ratio)
        return x[:, :c], x[:, c:]


class BasicUnit(nn.Module):
    """Split; 1x1-BN-ReLU, DW3x3-BN, 1x1-BN-ReLU on one half; concat with the other half; shuffle."""

    def __init__(self, in_channels: int, split_ratio: float = 0.5):
        super().__init__()
        self.split = ChannelSplit(split_ratio)
        c = int(in_channels * split_ratio)
        self.conv1 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, branch = self.split(x)
        branch = F.relu(self.bn1(self.conv1(branch)))
        branch = self.bn2(self.conv2(branch))
        branch = F.relu(self.bn3(self.conv3(branch)))
        return self.shuffle(torch.cat([kept, branch], 1))


class DownUnit(nn.Module):
    """Stride-2 unit: both branches see the whole input; their outputs (out/2 each) are concatenated."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        # depthwise branch
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1, groups=in_channels,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # 1x1 - depthwise - 1x1 branch
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, kernel_size=3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return self.shuffle(torch.cat([left, right], 1))


class CifarShuffleNetV2(nn.Module):
    """ShuffleNet V2 for 32x32 inputs.

    :param out_channels: channels of the three stages and of the final 1x1 conv.
    :param num_blocks: basic units per stage (after its down-sampling unit).
    :param num_classes: number of classes (output logits).
    """

    def __init__(self, out_channels: Sequence[int], num_blocks: Sequence[int], num_classes: int = 100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_channels = 24
        stages = []
        for channels, blocks in zip(out_channels[:3], num_blocks):
            stages.append(nn.Sequential(DownUnit(in_channels, channels), *[BasicUnit(channels) for _ in range(blocks)]))
            in_channels = channels
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.avg_pool2d(x, 4).flatten(1)
        return self.linear(x)


@model('cifar_ShuffleV2')
def ShuffleV2(num_classes: int = 100) -> CifarShuffleNetV2:
    """RepDistiller ``ShuffleV2``: width 1x, stages [116, 232, 464] + 1024, units [3, 7, 3]."""
    return CifarShuffleNetV2([116, 232, 464, 1024], [3, 7, 3], num_classes)
