"""The public RepDistiller CIFAR-100 teachers: names, archive, where each checkpoint goes, published hashes."""
import os
from pathlib import Path
from typing import Dict, Iterable, List

from ..errors import UserError

DEFAULT_URL = 'https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar'

URL_ENV_VAR = 'TTM_TORCHDISTILL_TEACHERS_URL'

DEFAULT_DEST = os.path.join('.', 'resource', 'ckpt', 'cifar100', 'teachers')

ARCHIVE_NAME = 'cifar_teachers.tar'

CHECKPOINT_NAME = 'ckpt_epoch_240.pth'

# RepDistiller names of the public teachers, in the order of the papers' tables.
TEACHERS = ('wrn_40_2', 'resnet56', 'resnet110', 'resnet32x4', 'vgg13', 'ResNet50')

# sha256 of archive members where a published value exists (a public listing of the mdistiller asset).
# Teachers without an entry are checked by strict loading only.
KNOWN_SHA256: Dict[str, str] = {
    'resnet32x4': '22aa12e2b632b19ddde155ccf2388671842ddd304824b3095e0a7fff364beb4f',
}


class FetchError(UserError):
    """A failure that ``main`` reports as one ``error: ...`` line (no traceback) with exit status 1."""


def member_name(name: str) -> str:
    """Path of a teacher's checkpoint inside the archive."""
    return f'cifar_teachers/{name}_vanilla/{CHECKPOINT_NAME}'


def checkpoint_path(dest: os.PathLike, name: str) -> Path:
    """Where a teacher's checkpoint goes: ``<dest>/<name>_vanilla/ckpt_epoch_240.pth``."""
    return Path(dest) / f'{name}_vanilla' / CHECKPOINT_NAME


def check_names(names: Iterable[str]) -> List[str]:
    """Return the names without duplicates, or raise :class:`FetchError` on a name that is not a teacher."""
    selected: List[str] = []
    for name in names:
        if name not in TEACHERS:
            raise FetchError(f'unknown teacher {name!r}; expected some of: {", ".join(TEACHERS)}')
        if name not in selected:
            selected.append(name)
    if not selected:
        raise FetchError(f'no teacher selected; expected some of: {", ".join(TEACHERS)}')
    return selected
