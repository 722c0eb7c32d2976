r"""CIFAR ``ResNet50`` of the RepDistiller model zoo (bottleneck ResNet-50 adapted to 32x32 inputs).

The ImageNet ResNet-50 of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016) with the
CIFAR stem used by RepDistiller (Tian et al., "Contrastive Representation Distillation", ICLR 2020): a 3x3
stride-1 convolution and no max-pooling, then four stages of [3, 4, 6, 3] bottleneck blocks (64, 128,
256, 512 mid channels, expansion 4, stride on the 3x3 conv), global average pooling and a linear layer
``linear``. It is the ``ResNet50`` teacher (79.34 % top-1) of the TTM and DIST CIFAR-100 tables.

Authors' code: https://github.com/HobbitLong/RepDistiller/blob/master/models/resnetv2.py

.. code-block:: yaml

    teacher_model:
      key: 'cifar_ResNet50'
      kwargs:
        num_classes: 100
      src_ckpt: './resource/ckpt/cifar100/teachers/ResNet50_vanilla/ckpt_epoch_240.pth'
"""
from typing import List

import torch
from torch import nn
from torch.nn import functional as F

from .._registry import model
from ._init import he_fan_out_init_


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4), each with BN; ReLU after the sum with the shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        # An empty Sequential is the identity; RepDistiller's checkpoints name the projection shortcut.0/.1.
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class CifarBottleneckResNet(nn.Module):
    """Bottleneck ResNet with a 3x3 stride-1 stem for 32x32 inputs.

    :param num_blocks: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50.
    :param num_classes: number of classes (output logits).
    """

    def __init__(self, num_blocks: List[int], num_classes: int = 100):
        super().__init__()
        if len(num_blocks) != 4 or min(num_blocks) < 1:
            raise ValueError(f'num_blocks must list 4 positive block counts, got {num_blocks}')
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        stages = []
        for planes, blocks, stride in zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)):
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(512 * Bottleneck.expansion, num_classes)
        he_fan_out_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.linear(x)


@model('cifar_ResNet50')
def ResNet50(num_classes: int = 100) -> CifarBottleneckResNet:
    """RepDistiller ``ResNet50``: bottleneck blocks [3, 4, 6, 3] with a CIFAR stem (a public teacher)."""
    return CifarBottleneckResNet([3, 4, 6, 3], num_classes)
