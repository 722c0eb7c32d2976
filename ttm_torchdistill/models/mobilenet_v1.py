r"""MobileNet V1 (width 1.0) for ImageNet: the student of the ResNet-50 -> MobileNet pair.

MobileNet of Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications" (arXiv:1704.04861, Table 1): a stride-2 3x3 conv with 32 channels, thirteen depthwise-
separable layers (3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU) up to 1024 channels, global
average pooling and a linear layer; about 4.2 M parameters for 224x224 inputs. torchvision has no
MobileNet V1. The layout (``model.0`` ... ``model.13`` in a Sequential that also holds the pooling, then
``fc``) and the initialisation follow the ``mobilenet_v1`` of the DIST authors' classification code
(Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022), so its checkpoints load.

Authors' code: https://github.com/hunto/image_classification_sota/blob/main/lib/models/mobilenet_v1.py

.. warning::
    The TTM paper reports a 68.87 % MobileNet baseline and DIST 70.13 %; which MobileNet definition the
    TTM authors used is not documented. This is DIST's definition.

.. code-block:: yaml

    student_model:
      key: 'mobilenet_v1'
      kwargs:
        num_classes: 1000
"""
import math

import torch
from torch import nn

from .._registry import model
from ._init import he_fan_out_init_

# (output channels, stride) of the thirteen depthwise-separable layers (Table 1 of the paper).
_SEPARABLE_LAYERS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))



def _uniform_fan_out_linear_(m: nn.Linear) -> None:
    """uniform(+-1/sqrt(fan_out)) weights and zero bias for the classifier (TensorFlow-style, as the DIST code)."""
    bound = 1.0 / math.sqrt(m.weight.size(0))
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.zeros_(m.bias)

class MobileNetV1(nn.Module):
    """MobileNet V1, width multiplier 1.0.

    :param num_classes: number of classes (output logits).
    :param in_channels: channels of the input image.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        layers = [_conv_bn_relu(in_channels, 32, 2)]
        channels = 32
        for out_channels, stride in _SEPARABLE_LAYERS:
            layers.append(_separable(channels, out_channels, stride))
            channels = out_channels
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)
        # TensorFlow-style initialisation, as in the DIST code: He normal with fan-out for convolutions,
        # uniform(+-1/sqrt(fan_out)) for the classifier.
        he_fan_out_init_(self, linear=_uniform_fan_out_linear_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.model(x).flatten(1))


@model('mobilenet_v1')
def mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    """MobileNet V1 (width 1.0) for 224x224 ImageNet inputs, as in the DIST code."""
    return MobileNetV1(num_classes=num_classes)
