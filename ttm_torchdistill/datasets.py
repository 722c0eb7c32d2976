"""CIFAR-10/100 from files in CIFAR's on-disk format that are not torchvision's official ones.

torchvision's ``CIFAR10``/``CIFAR100`` check every file against the md5 of the official archive, so a subset, a
relabelled copy or another data set exported in CIFAR's format (pickled ``data`` rows of 3 x 32 x 32 uint8 and
``labels``/``fine_labels``, plus the ``meta`` file of class names) is refused as "not found or corrupted".
:class:`CIFAR100Format` and :class:`CIFAR10Format` read the same files with the same code, checking only that they
are there; they never download. Everything that accepts torchvision's CIFAR classes accepts them (they subclass
them): ``--device-data``, ``cache-teacher`` and ``--smoke``.

.. code-block:: yaml

    datasets:
      &cifar100_train cifar100/train: !import_call
        key: 'ttm_torchdistill.datasets.CIFAR100Format'  # also registered: get_dataset('CIFAR100Format')
        init:
          kwargs:
            root: '/data/my_cifar_export'   # holds cifar-100-python/{train,test,meta}
            train: True
            transform: ...

.. warning::
    The files are Python pickles, as in torchvision: reading one runs whatever it was written to run. Read only files
    you made or trust.
"""
import os
import pickle

from torchvision.datasets import CIFAR10, CIFAR100

from ._registry import dataset

__all__ = ['CIFAR10Format', 'CIFAR100Format']


class _PresenceChecked:
    """Replaces the md5 checks of torchvision's CIFAR classes by checks that the files are there."""

    official = ''  # the torchvision class for the official data

    def _files(self):
        return [name for name, _ in self.train_list + self.test_list] + [self.meta['filename']]

    def _check_integrity(self) -> bool:
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, name)) for name in self._files())

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta['filename'])
        if not os.path.isfile(path):
            raise RuntimeError(f'Dataset metadata file not found: {path}')
        with open(path, 'rb') as fp:
            names = pickle.load(fp, encoding='latin1')[self.meta['key']]
        self.classes = list(names)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    def download(self) -> None:
        """Files of one's own are not downloaded: present, nothing to do; absent, say where they are expected."""
        if self._check_integrity():
            return
        raise RuntimeError(f'{type(self).__name__} reads files of your own and never downloads: expected '
                           f'{os.path.join(self.root, self.base_folder)}/ with {", ".join(self._files())}; for the '
                           f'official data use torchvision.datasets.{self.official}')


@dataset('CIFAR100Format')
class CIFAR100Format(_PresenceChecked, CIFAR100):
    """torchvision's ``CIFAR100`` reading ``<root>/cifar-100-python/{train,test,meta}`` of your own, without md5 checks.

    Same arguments as ``torchvision.datasets.CIFAR100`` (``root``, ``train``, ``transform``, ``target_transform``,
    ``download``, which only confirms that the files are there).
    """
    official = 'CIFAR100'


@dataset('CIFAR10Format')
class CIFAR10Format(_PresenceChecked, CIFAR10):
    """torchvision's ``CIFAR10`` reading ``<root>/cifar-10-batches-py/`` of your own, without md5 checks.

    Same arguments as ``torchvision.datasets.CIFAR10``.
    """
    official = 'CIFAR10'
