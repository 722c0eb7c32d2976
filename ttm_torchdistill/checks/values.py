"""Value checks of the losses' and wrappers' arguments: each error names the argument, what was expected and what
was given.

Shared by :mod:`ttm_torchdistill.functional` (checked on every call), the registered adapters of
:mod:`ttm_torchdistill.losses` and :mod:`ttm_torchdistill.feature_losses` (checked once, at construction) and
:mod:`ttm_torchdistill.feature_functional`. Imports nothing but torch and the standard library.
"""
import math
import numbers
from typing import Union

import torch
from torch import Tensor

#: The adaptive temperature of Matsuyama et al. (2025), given by name instead of a number.
MAX_LOGIT = 'max_logit'
#: A temperature as the losses take it: a positive number, ``'max_logit'`` or a per-sample tensor.
Temperature = Union[float, str, Tensor]
#: The two sides of a hooked module a loss may read.
IOS = ('input', 'output')


def check_non_negative(value: float, name: str) -> float:
    """Return ``value`` as a float if it is a finite, non-negative real number; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a non-negative real number, got {value!r} ({type(value).__name__})')
    if not math.isfinite(value) or value < 0:
        raise ValueError(f'{name} must be a finite, non-negative number, got {value!r}')
    return float(value)


def check_flag(value: bool, name: str) -> bool:
    """Return ``value`` if it is ``True`` or ``False``; raise ``TypeError`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, got {value!r}')
    return value


def check_temperature(temperature: Temperature, name: str = 'temperature') -> Temperature:
    """Validate a temperature: a positive finite number, ``'max_logit'`` or a positive tensor.

    A tensor's values are read back to the host to check them (on a GPU this waits for the device).

    :return: the temperature, as a float when it is a number.
    """
    if isinstance(temperature, str):
        if temperature != MAX_LOGIT:
            raise ValueError(f"{name} must be a positive number or '{MAX_LOGIT}', got {temperature!r}")
        return temperature
    if isinstance(temperature, Tensor):
        if not temperature.is_floating_point() or temperature.dim() > 2:
            raise ValueError(f'{name} as a tensor must be floating point of shape (N,) or (N, 1), '
                             f'got dtype {temperature.dtype} and shape {tuple(temperature.shape)}')
        if not bool((torch.isfinite(temperature) & (temperature > 0)).all()):
            raise ValueError(f'{name} must be positive and finite everywhere, got {temperature}')
        return temperature
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"{name} must be a positive number or '{MAX_LOGIT}', "
                        f'got {temperature!r} ({type(temperature).__name__})')
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{name} must be a positive number or '{MAX_LOGIT}', got {temperature!r}")
    return float(temperature)


def check_teacher_only_max(teacher_only_max: bool, temperature: Temperature) -> bool:
    """Return ``teacher_only_max`` if it is a bool that fits ``temperature`` (``True`` needs ``'max_logit'``)."""
    check_flag(teacher_only_max, 'teacher_only_max')
    if teacher_only_max and not isinstance(temperature, str):
        raise ValueError(f"teacher_only_max=True needs temperature='{MAX_LOGIT}', got {temperature!r}")
    return teacher_only_max


def check_temperature_args(temperature: Temperature, teacher_only_max: bool) -> Temperature:
    """:func:`check_temperature`, then :func:`check_teacher_only_max` against it; returns the checked temperature."""
    temperature = check_temperature(temperature)
    check_teacher_only_max(teacher_only_max, temperature)
    return temperature


def check_warmup_epochs(warmup_epochs: int) -> int:
    """Return ``warmup_epochs`` if it is a non-negative integer; raise otherwise."""
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f'warmup_epochs must be a non-negative integer, got {warmup_epochs!r}')
    return warmup_epochs


def check_epoch(epoch: int) -> int:
    """Return ``epoch`` if it is a non-negative integer (epochs count from 1); raise otherwise."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f'epoch must be a non-negative integer (counted from 1), got {epoch!r}')
    return epoch


def check_view_temperature(temperature: Temperature, teacher_only_max: bool) -> Temperature:
    """A number or 'max_logit': a per-sample tensor would not say which view it belongs to."""
    if isinstance(temperature, Tensor):
        raise TypeError(f"MLKD's temperature must be a positive number or '{MAX_LOGIT}' (each view resolves its own "
                        f'per-sample temperatures), got a tensor of shape {tuple(temperature.shape)}')
    return check_temperature_args(temperature, teacher_only_max)


def check_string(value, name: str) -> str:
    """``value`` if it is a non-empty string (a module path); raise ``TypeError`` otherwise."""
    if not isinstance(value, str) or not value:
        raise TypeError(f'{name} must be a non-empty string, got {value!r}')
    return value


def check_io(value, name: str) -> str:
    """``value`` if it is ``'input'`` or ``'output'`` (a side of a hooked module); raise ``ValueError`` otherwise."""
    if value not in IOS:
        raise ValueError(f"{name} must be 'input' or 'output', got {value!r}")
    return value


def check_positive_int(value, name: str) -> int:
    """``value`` if it is a positive integer (not a bool); raise ``TypeError``/``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'{name} must be a positive integer, got {value!r} ({type(value).__name__})')
    if value <= 0:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return value


def check_alpha_it(alpha_it: float) -> float:
    """Renyi's order of ITRD's correlation term: a finite number > 0."""
    value = check_non_negative(alpha_it, 'alpha_it')
    if value == 0:
        raise ValueError(f'alpha_it must be positive (1.01 and 1.5 in the TTM runs), got {alpha_it!r}')
    return value
