"""Model zoo: the RepDistiller CIFAR-100 architectures (keys ``cifar_<name>``) and ImageNet ``mobilenet_v1``.

Importing this package registers every model in torchdistill's model registry.
"""
from . import (cifar_mobilenetv2, cifar_resnet, cifar_resnetv2, cifar_shufflenetv1, cifar_shufflenetv2, cifar_vgg,
               cifar_wrn, mobilenet_v1)
