"""The weight initialisation shared by the model zoo's architectures."""
import math
from typing import Callable, Optional

from torch import nn


def he_fan_out_init_(model: nn.Module, linear: Optional[Callable[[nn.Linear], None]] = None) -> None:
    """He-normal (fan-out) convolutions with zero bias, BatchNorm weight 1 and bias 0, ``linear(m)`` on each Linear.

    Modules are visited in ``model.modules()`` order in one loop, as the authors' constructors do, so a seeded
    run draws the same random numbers in the same order.

    :param model: the freshly built model.
    :param linear: how to initialise ``nn.Linear`` layers; ``None`` keeps PyTorch's default.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear is not None:
            linear(m)


def small_normal_linear_(m: nn.Linear) -> None:
    """N(0, 0.01) weights and zero bias for a classifier (VGG, MobileNetV2)."""
    nn.init.normal_(m.weight, 0.0, 0.01)
    nn.init.zeros_(m.bias)


def zero_bias_linear_(m: nn.Linear) -> None:
    """PyTorch's default weights and a zero bias (WRN)."""
    nn.init.zeros_(m.bias)
