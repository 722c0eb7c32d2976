"""Test-only hooks for the torchrun tests, imported by their configs through ``dependencies:``.

``TTM_TEST_PROBE=download``: CIFAR-100's download is replaced by one that takes ``$TTM_TEST_DOWNLOAD_SECONDS``
(default 0.5) and writes the tiny CIFAR-100 of ``runner_support`` (torchvision's md5 check reduced to "the file
exists", nothing else), and every rank appends ``<rank> <event>`` lines to ``$TTM_TEST_EVENTS`` around each
download and each dataset construction (O_APPEND writes: the file order is the order of events across processes).

``TTM_TEST_PROBE=no_md5``: torchvision's md5 check of CIFAR files is reduced to "the file exists" (for the tiny
CIFAR-100 of ``runner_support``).

``TTM_TEST_PROBE=rank_dirs``: each rank works in its own folder ``rank<RANK>`` (two nodes without a shared
filesystem), and saves the student it tests as ``tested_student.pt`` there.

``TTM_TEST_PROBE=split_indices``: each rank writes the source indices of every dataset that is a part of a split
(a ``torch.utils.data.Subset``) to ``split_indices_rank<RANK>.json`` once the datasets are built.

``TTM_TEST_PROBE=device_indices``: each rank writes the sample indices its device data loaders yield,
``{place in the config: {epoch: [indices in yield order]}}``, to ``device_indices_rank<RANK>.json`` after each pass.
"""
import os
import time

import torch

RANK = int(os.environ.get('RANK', 0))


def _event(text: str) -> None:
    fd = os.open(os.environ['TTM_TEST_EVENTS'], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f'{RANK} {text}\n'.encode())
    finally:
        os.close(fd)


def _install_download_probe() -> None:
    import torchvision.datasets.cifar as cifar
    import runner_support

    def fake_download_and_extract_archive(url, download_root, filename=None, md5=None, **kwargs):
        _event('download start')
        # a real download takes a while: another rank starting now would overlap it
        time.sleep(float(os.environ.get('TTM_TEST_DOWNLOAD_SECONDS', '0.5')))
        runner_support.write_tiny_cifar100(download_root, num_train=32, num_test=16)
        _event('download end')

    original_init = cifar.CIFAR10.__init__

    def recording_init(self, root, train=True, *args, **kwargs):
        _event(f'build start {"train" if train else "test"}')
        original_init(self, root, train, *args, **kwargs)
        _event(f'build end {"train" if train else "test"}')

    cifar.download_and_extract_archive = fake_download_and_extract_archive
    cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)
    cifar.CIFAR10.__init__ = recording_init


def _install_rank_dirs_probe() -> None:
    from ttm_torchdistill.run import final_evaluation
    os.chdir(f'rank{RANK}')
    original_evaluate = final_evaluation.evaluate

    def recording_evaluate(model, loader, ctx, *args, **kwargs):
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, 'tested_student.pt')
        return original_evaluate(model, loader, ctx, *args, **kwargs)
    final_evaluation.evaluate = recording_evaluate


def _install_no_md5_probe() -> None:
    import torchvision.datasets.cifar as cifar
    cifar.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)


def _install_split_indices_probe() -> None:
    import json
    from ttm_torchdistill.run import prepare
    original_build = prepare.build_real_datasets

    def recording_build(loaded, only=None):
        datasets = original_build(loaded, only)
        parts = {name: [int(i) for i in data.indices] for name, data in datasets.items() if hasattr(data, 'indices')}
        path = f'split_indices_rank{RANK}.json'
        if os.path.isfile(path):  # the test set is built later, by another call
            with open(path) as fp:
                parts = {**json.load(fp), **parts}
        with open(path, 'w') as fp:
            json.dump(parts, fp)
        return datasets
    prepare.build_real_datasets = recording_build


def _install_device_indices_probe() -> None:
    import json
    from ttm_torchdistill.run.data import device_loader, fast_path
    make_loader, batches, seen = fast_path.DeviceData.loader, device_loader.DeviceLoader._batches, dict()

    def loader(self, loader_config, where):
        made = make_loader(self, loader_config, where)
        made.where = where
        return made

    def recorded_batches(self, epoch):
        indices = seen.setdefault(self.where, dict()).setdefault(str(epoch), [])
        for batch in batches(self, epoch):
            indices.extend(batch[2]['indices'].tolist())
            yield batch
        with open(f'device_indices_rank{RANK}.json', 'w') as fp:
            json.dump(seen, fp)
    fast_path.DeviceData.loader = loader
    device_loader.DeviceLoader._batches = recorded_batches


_PROBES = {'download': _install_download_probe, 'rank_dirs': _install_rank_dirs_probe, 'no_md5': _install_no_md5_probe,
           'split_indices': _install_split_indices_probe, 'device_indices': _install_device_indices_probe}
for _name in os.environ['TTM_TEST_PROBE'].split(','):  # several probes: comma-separated
    _PROBES[_name]()
