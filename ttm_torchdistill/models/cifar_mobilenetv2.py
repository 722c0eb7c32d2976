r"""CIFAR ``MobileNetV2`` (width 0.5) of the RepDistiller model zoo.

MobileNetV2 of Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018), in the
CIFAR variant RepDistiller took from "Knowledge Distillation via Route Constrained Optimization" (Jin et
al., ICCV 2019) and registers as ``MobileNetV2`` (= its ``mobile_half``): expansion 6, width multiplier
0.5, a stride-2 3x3 stem, the seven inverted-residual stages of the paper and a 1x1 conv to 1280
channels, 2x2 average pooling and a linear ``classifier``.

Authors' code: https://github.com/HobbitLong/RepDistiller/blob/master/models/mobilenetv2.py

.. warning::
    This is not torchvision's MobileNetV2: channel counts are ``int(c * 0.5)`` (truncation, no rounding
    to multiples of 8), so the stages have 8, 12, 16, 32, 48, 80, 160 channels after a 16-channel stem;
    the last conv keeps 1280 channels (it is only widened for multipliers above 1); the first stage (t=1)
    still has its 1x1 expansion conv; ReLU (not ReLU6) everywhere; no dropout.

.. code-block:: yaml

    student_model:
      key: 'cifar_MobileNetV2'
      kwargs:
        num_classes: 100
"""

import torch
from torch import nn

from .._registry import model
from ._init import he_fan_out_init_, small_normal_linear_

# (expansion t, output channels c, repeats n, first stride s) as in Table 2 of the MobileNetV2 paper,
# except the second stage, whose stride RepDistiller sets to 1 (2 in the paper) for 32x32 inputs.
_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise - 1x1 linear projection (module ``conv``), residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'stride must be 1 or 2, got {stride}')
        hidden = in_channels * expand_ratio
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class CifarMobileNetV2(nn.Module):
    """MobileNetV2 for 32x32 inputs.

    :param expand_ratio: expansion factor :math:`t` of every stage but the first.
    :param width_mult: width multiplier (channel counts are truncated with ``int``).
    :param num_classes: number of classes (output logits).
    """

    def __init__(self, expand_ratio: int = 6, width_mult: float = 0.5, num_classes: int = 100):
        super().__init__()
        input_size = 32
        in_channels = int(32 * width_mult)
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, in_channels, 3, 2, 1, bias=False), nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList()
        for t, c, n, s in _STAGES:
            t = 1 if t == 1 else expand_ratio
            out_channels = int(c * width_mult)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t))
                in_channels = out_channels
            self.blocks.append(nn.Sequential(*layers))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = nn.Sequential(
            nn.Conv2d(in_channels, self.last_channel, 1, 1, 0, bias=False), nn.BatchNorm2d(self.last_channel),
            nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        # The total stride is 16, so a 32x32 input ends at 2x2: this window is global pooling there.
        self.avgpool = nn.AvgPool2d(input_size // 16, ceil_mode=True)
        he_fan_out_init_(self, linear=small_normal_linear_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for stage in self.blocks:
            x = stage(x)
        x = self.conv2(x)
        x = self.avgpool(x).flatten(1)
        return self.classifier(x)


@model('cifar_MobileNetV2')
def MobileNetV2(num_classes: int = 100) -> CifarMobileNetV2:
    """RepDistiller ``MobileNetV2`` (``mobile_half``): expansion 6, width 0.5."""
    return CifarMobileNetV2(expand_ratio=6, width_mult=0.5, num_classes=num_classes)
