r"""CIFAR VGG networks with BatchNorm of the RepDistiller model zoo: vgg8, vgg11, vgg13, vgg16, vgg19.

VGG of Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(ICLR 2015), with BatchNorm after every convolution (Ioffe & Szegedy, ICML 2015), cut into five blocks
``block0`` ... ``block4`` of 3x3 conv-BN-ReLU layers, max-pooling between blocks, global average pooling
and a single linear ``classifier`` (no fully connected stack), as in the RepDistiller model zoo (Tian et
al., "Contrastive Representation Distillation", ICLR 2020). RepDistiller's ``vgg8``...``vgg19`` names in
the distillation scripts are the BatchNorm variants (``vgg8_bn``...), which is what these keys build.

Authors' code: https://github.com/HobbitLong/RepDistiller/blob/master/models/vgg.py

.. warning::
    Each block ends with its last BatchNorm (the ReLU after it is applied in ``forward``, so a hook on
    ``blockK`` sees the pre-activation), and for 32x32 inputs ``pool3`` is skipped: ``block3`` and
    ``block4`` both run at 4x4. RepDistiller applies ``pool3`` only to 64x64 inputs; this is kept as is
    because it changes the outputs of the public checkpoints.

.. code-block:: yaml

    teacher_model:
      key: 'cifar_vgg13'
      kwargs:
        num_classes: 100
      src_ckpt: './resource/ckpt/cifar100/teachers/vgg13_vanilla/ckpt_epoch_240.pth'
"""
from typing import List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .._registry import model
from ._init import he_fan_out_init_, small_normal_linear_

# Output channels of the 3x3 convolutions of each of the five blocks.
_CONFIGS = {
    'vgg8': [[64], [128], [256], [512], [512]],
    'vgg11': [[64], [128], [256, 256], [512, 512], [512, 512]],
    'vgg13': [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    'vgg16': [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    'vgg19': [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def _make_block(channels: Sequence[int], in_channels: int) -> nn.Sequential:
    layers: List[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.BatchNorm2d(out_channels),
                   nn.ReLU(inplace=True)]
        in_channels = out_channels
    # The last ReLU is left to forward(), so the block's output is its pre-activation.
    return nn.Sequential(*layers[:-1])


class CifarVGG(nn.Module):
    """VGG-BN in five blocks with a single linear classifier.

    :param config: output channels of the convolutions of each of the five blocks.
    :param num_classes: number of classes (output logits).
    """

    def __init__(self, config: Sequence[Sequence[int]], num_classes: int = 100):
        super().__init__()
        if len(config) != 5 or any(len(block) == 0 for block in config):
            raise ValueError(f'config must list 5 non-empty blocks of channel counts, got {config}')
        in_channels = [3] + [block[-1] for block in config[:-1]]
        self.block0, self.block1, self.block2, self.block3, self.block4 = [
            _make_block(block, c) for block, c in zip(config, in_channels)]
        self.pool0 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(config[-1][-1], num_classes)
        he_fan_out_init_(self, linear=small_normal_linear_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        x = self.pool0(F.relu(self.block0(x)))
        x = self.pool1(F.relu(self.block1(x)))
        x = self.pool2(F.relu(self.block2(x)))
        x = F.relu(self.block3(x))
        if height == 64:  # see the module warning
            x = self.pool3(x)
        x = F.relu(self.block4(x))
        x = self.pool4(x).flatten(1)
        return self.classifier(x)


@model('cifar_vgg8')
def vgg8(num_classes: int = 100) -> CifarVGG:
    """RepDistiller ``vgg8`` (``vgg8_bn``): one conv per block."""
    return CifarVGG(_CONFIGS['vgg8'], num_classes)


@model('cifar_vgg11')
def vgg11(num_classes: int = 100) -> CifarVGG:
    """RepDistiller ``vgg11`` (``vgg11_bn``): VGG configuration A."""
    return CifarVGG(_CONFIGS['vgg11'], num_classes)


@model('cifar_vgg13')
def vgg13(num_classes: int = 100) -> CifarVGG:
    """RepDistiller ``vgg13`` (``vgg13_bn``): VGG configuration B (a public teacher)."""
    return CifarVGG(_CONFIGS['vgg13'], num_classes)


@model('cifar_vgg16')
def vgg16(num_classes: int = 100) -> CifarVGG:
    """RepDistiller ``vgg16`` (``vgg16_bn``): VGG configuration D."""
    return CifarVGG(_CONFIGS['vgg16'], num_classes)


@model('cifar_vgg19')
def vgg19(num_classes: int = 100) -> CifarVGG:
    """RepDistiller ``vgg19`` (``vgg19_bn``): VGG configuration E."""
    return CifarVGG(_CONFIGS['vgg19'], num_classes)
