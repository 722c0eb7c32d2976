"""Build a config's datasets one by one, with a clear message when one is missing (synthetic ones: :mod:`.synthetic`).

A torchvision CIFAR-100 with ``download: True`` on a machine without network fails with a ``URLError`` deep inside
``urllib``; an ImageFolder pointing at a missing tree fails with ``FileNotFoundError``; files that are present but
fail torchvision's checksum are reported by torchvision as missing. Each is turned into one line that names the
dataset id, the folder, what is wrong there (absent or corrupt) and how to obtain the data.
"""
import logging
import os
import urllib.error
from typing import Any, Collection, Dict, List, Optional


from ...errors import RunError, one_line
from ..config.dataset_nodes import data_source, dataset_class, dataset_class_key, dataset_root
from ..config.loading import LoadedConfig, SharedConstruction

logger = logging.getLogger('ttm_torchdistill.run')
CIFAR100_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz'


def _how_to_get(class_key: str, root: Optional[str]) -> str:
    name = class_key.rsplit('.', 1)[-1]
    if name == 'CIFAR100':
        return (f'expected {os.path.join(root or "<root>", "cifar-100-python")}/ with train, test and meta; '
                f'download {CIFAR100_URL} and extract it into {root or "<root>"} '
                f'(or run once with network access and download: True)')
    if name in ('CIFAR100Format', 'CIFAR10Format'):
        cls = dataset_class(class_key)
        return f'expected {os.path.join(root or "<root>", cls.base_folder)}/ with your own files in CIFAR\'s format'

    if name == 'CIFAR10':
        return (f'expected {os.path.join(root or "<root>", "cifar-10-batches-py")}/; download it from '
                f'https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {root or "<root>"}')
    if name in ('ImageFolder', 'DatasetFolder'):
        return (f'expected an ImageFolder tree {root or "<root>"}/<class_name>/<image>; for ILSVRC2012 obtain the '
                f'images from https://image-net.org and arrange train/ and val/ with one folder per class')
    if name == 'ImageNet':
        return f'expected the ILSVRC2012 archives in {root or "<root>"} (torchvision.datasets.ImageNet)'
    return 'check the dataset root in the config (or override it with --set)'


def corrupt_files(class_key: str, root: Optional[str]) -> List[str]:
    """Files of a checksummed torchvision dataset (CIFAR-10/100 style: ``base_folder``, ``train_list``,
    ``test_list``, ``meta``, and the archive ``filename``/``tgz_md5``) that are present but fail their md5.

    torchvision reports such files as missing ("not found or corrupted"), or tries to download them again, which
    offline reads as "the data is not there"; the checksums are only computed on this failure path.
    """
    cls = dataset_class(class_key)
    if cls is None or root is None or not isinstance(getattr(cls, 'base_folder', None), str):
        return []
    from torchvision.datasets.utils import check_integrity
    entries = [(os.path.join(root, cls.base_folder, name), md5)
               for name, md5 in list(getattr(cls, 'train_list', [])) + list(getattr(cls, 'test_list', []))]
    meta = getattr(cls, 'meta', None)
    if isinstance(meta, dict) and 'filename' in meta and 'md5' in meta:
        entries.append((os.path.join(root, cls.base_folder, meta['filename']), meta['md5']))
    if isinstance(getattr(cls, 'filename', None), str) and getattr(cls, 'tgz_md5', None):
        entries.append((os.path.join(root, cls.filename), cls.tgz_md5))
    return [path for path, md5 in entries if os.path.isfile(path) and not check_integrity(path, md5)]


def _corrupt_message(class_key: str, root: str, paths: List[str]) -> str:
    cls = dataset_class(class_key)
    name = cls.__name__
    url = getattr(cls, 'url', None)
    again = (f'download them again (download: True with network access, or download {url} and extract it into '
             f'{root})' if url else 'obtain them again')
    return (f'the files there are not torchvision\'s official {name} (checksum mismatch: {", ".join(paths)}): if they '
            f'are the official files, they are damaged: {again}; if they are your own data in {name}\'s format (a '
            f'subset, a relabelled copy, another data set exported to it), use key '
            f"'ttm_torchdistill.datasets.{name}Format' for this dataset, which reads them without the checksum")


def _is_missing_data_error(exc: RuntimeError) -> bool:
    # torchvision reports absent or damaged files as RuntimeError('Dataset not found or corrupted. ...')
    text = str(exc).lower()
    return 'not found' in text or 'corrupt' in text or 'download' in text


def build_real_datasets(loaded: LoadedConfig, only: Optional[Collection[str]] = None) -> Dict[str, Any]:
    """Construct every dataset of the config, turning any failure into one :class:`RunError` line.

    Failures to find or fetch the data (``OSError`` such as ``FileNotFoundError`` or ``URLError``, torchvision's
    ``RuntimeError('Dataset not found ...')``) name the folder and how to get the data; other failures (unknown
    class, bad arguments, YAML tag errors) name the dataset entry.

    :param only: the ids to build (all when None): the test loader's dataset is built for the final test only.
    """
    datasets = dict()
    shared = SharedConstruction(loaded.loader)  # a split named by several ids is split once
    try:
        for dataset_id, node in loaded.dataset_nodes:
            if only is None or dataset_id in only:
                datasets[dataset_id] = _build_one(shared, loaded, dataset_id, node)
    finally:
        shared.close()
    return datasets


def _build_one(shared: SharedConstruction, loaded: LoadedConfig, dataset_id: str, node) -> Any:
    """One dataset entry, any failure turned into one :class:`RunError` line (naming the dataset that reads the data,
    also for a part of a split)."""
    source = data_source(node)
    class_key = dataset_class_key(source)
    try:
        return shared.construct(node)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not _is_missing_data_error(exc):
            raise RunError(f'dataset {dataset_id!r} ({class_key or "unknown class"}) cannot be built from the '
                           f'config: RuntimeError: {one_line(exc)}') from None
        root = dataset_root(loaded, source)
        where = f'dataset {dataset_id!r} ({class_key or "unknown class"}) could not be loaded from ' \
                f'{root or "<no root given>"}'
        corrupt = corrupt_files(class_key, root)
        if corrupt:
            raise RunError(f'{where}: {_corrupt_message(class_key, root, corrupt)}') from None
        reason = one_line(exc)
        if isinstance(exc, urllib.error.URLError) or 'urlopen' in reason:
            reason = f'the data is not there and downloading it failed ({reason})'
        raise RunError(f'{where}: {reason}; {_how_to_get(class_key, root)}') from None
    except Exception as exc:
        reason = one_line(exc)
        raise RunError(f'dataset {dataset_id!r} ({class_key or "unknown class"}) cannot be built from the '
                       f'config: {type(exc).__name__}: {reason}') from None
