"""``fetch-teachers``: download the public RepDistiller CIFAR-100 teachers and check them.

The TTM, DIST and adaptive-temperature papers distil from the teachers trained by RepDistiller (Tian et al.,
"Contrastive Representation Distillation", ICLR 2020; https://github.com/HobbitLong/RepDistiller). Their
original server is gone; the copy users rely on is the ``cifar_teachers.tar`` release asset of mdistiller
(Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022; https://github.com/megvii-research/mdistiller),
whose members are ``cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth``: RepDistiller checkpoints, dicts whose
``'model'`` entry is the state_dict.

This module downloads that archive (or reads a local copy), extracts only the requested members to
``<dest>/<name>_vanilla/ckpt_epoch_240.pth`` (the path the shipped configs use), checks the published sha256
where one is known, and checks every file by loading ``ckpt['model']`` with ``strict=True`` into the
registered architecture ``cifar_<name>``. Files are written under a temporary name and renamed only once
complete and valid, so an interrupted run never leaves a file that looks finished. Re-running is a no-op
when every requested file is present and valid.

Command line (:mod:`ttm_torchdistill.commands.fetch_teachers`, ``python -m ttm_torchdistill fetch-teachers --help``)::

    python -m ttm_torchdistill fetch-teachers                       # all six teachers
    python -m ttm_torchdistill fetch-teachers --names resnet32x4 wrn_40_2
    python -m ttm_torchdistill fetch-teachers --url /data/cifar_teachers.tar   # offline copy
    TTM_TORCHDISTILL_TEACHERS_URL=https://mirror.example/cifar_teachers.tar python -m ttm_torchdistill fetch-teachers

Only the standard library is used for HTTP (``urllib``).
"""
from .catalog import (  # noqa: F401  (the library's public names)
    ARCHIVE_NAME,
    CHECKPOINT_NAME,
    DEFAULT_DEST,
    DEFAULT_URL,
    KNOWN_SHA256,
    TEACHERS,
    URL_ENV_VAR,
    FetchError,
    check_names,
    checkpoint_path,
    member_name,
)
from .download import ProgressBar, download  # noqa: F401
from .fetch import fetch_teachers, sha256_of, verify_checkpoint  # noqa: F401
