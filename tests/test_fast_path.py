"""The fast path through the runner: device-resident data, the teacher cache, and sync-free training steps.

The device loader's own semantics (pixels, randomness, sharding) are tested in tests/test_device_data.py and the
cache format in tests/test_per_seed_cache.py; here they run inside real training runs on a tiny CIFAR-100 written
in torchvision's on-disk format.
"""
import os
import re
import sys

import pytest
import torch
import torchvision
from torchdistill.models.registry import get_model

import runner_support as support
from ttm_torchdistill.run.train import loop as training

pytestmark = pytest.mark.usefixtures('one_torch_thread')

CIFAR = os.path.join(support.CONFIG_DIR, 'runner_cifar100_wttm.yaml')
TINY = os.path.join(support.CONFIG_DIR, 'runner_tiny_kd.yaml')
DST = './resource/ckpt/cifar100/wttm/resnet20_from_resnet20.pt'
LAST = './resource/ckpt/cifar100/wttm/resnet20_from_resnet20.last.pt'
TEACHER = 'resource/ckpt/cifar100/teachers/resnet20_vanilla/ckpt_epoch_240.pth'


run_ok, run_error = support.cli_ok, support.cli_error


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """A tiny CIFAR-100 and a resnet20 teacher checkpoint under the config's paths."""
    monkeypatch.chdir(tmp_path)
    support.write_tiny_cifar100('resource/dataset/cifar100', num_train=40, num_test=20)
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda fpath, md5=None: os.path.isfile(fpath))
    os.makedirs(os.path.dirname(TEACHER))
    torch.manual_seed(1)
    torch.save({'model': get_model('resnet20', num_classes=100).state_dict(), 'epoch': 240}, TEACHER)
    return tmp_path


def _weights(path):
    return torch.load(path, weights_only=False)['model']


def test_device_data_run_trains_tests_and_records_it(tiny_cifar, capsys):
    out = run_ok(capsys, ['--config', CIFAR, '--seed', '0', '--device', 'cpu', '--device-data'])
    assert 'Start training (runtime: device_data)' in out
    assert 'Epoch 2/2  step 3/3' in out  # 40 images, batch 16, drop_last False: 3 steps, as the stock loader
    import json
    with open(os.path.splitext(DST)[0] + '.json') as fp:
        summary = json.load(fp)
    assert summary['runtime']['device_data'] is True
    assert summary['test']['student'] is not None and summary['test']['teacher'] is not None


def test_device_data_refuses_a_dataset_without_uint8_arrays(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict()}, 'teacher.pt')
    line = run_error(capsys, ['--config', TINY, '--device', 'cpu', '--seed', '0', '--device-data'])
    assert line == ("error: runtime.device_data: dataset 'tiny/train' (runner_support.TinyTensorDataset, "
                    "train.train_data_loader) is not supported by the device data path: expected "
                    "torchvision.datasets.CIFAR10 or CIFAR100 (in-memory uint8 images), or "
                    "ttm_torchdistill.datasets.CIFAR100Format/CIFAR10Format; run this config without --device-data")


def test_teacher_cache_in_float64_gives_the_live_teacher_trajectory(tiny_cifar, capsys):
    """float64 end to end: a run reading the cache ends with the same student as the run with the live teacher."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        run_ok(capsys, ['cache-teacher', '--config', CIFAR, '--seed', '0', '--out', 'cache', '--dtype', 'float64',
                        '--device', 'cpu'])
        assert sorted(os.listdir('cache')) == ['logits_epoch0000.npy', 'logits_epoch0001.npy', 'metadata.json']
        run_ok(capsys, ['--config', CIFAR, '--seed', '0', '--device', 'cpu', '--device-data'])
        live = _weights(LAST)
        out = run_ok(capsys, ['--config', CIFAR, '--seed', '0', '--device', 'cpu', '--device-data',
                              '--teacher-cache', 'cache'])
        assert 'Teacher logits read from the cache cache' in out
        cached = _weights(LAST)
    finally:
        torch.set_default_dtype(default)
    worst = max((cached[k] - v).abs().max().item() for k, v in live.items() if v.is_floating_point())
    for key, value in live.items():
        if value.is_floating_point():
            assert value.dtype == torch.float64
            torch.testing.assert_close(cached[key], value, rtol=0, atol=1e-10, msg=f'{key}: worst {worst}')
        else:
            assert torch.equal(cached[key], value), key


def test_teacher_cache_of_another_run_is_refused(tiny_cifar, capsys):
    run_ok(capsys, ['cache-teacher', '--config', CIFAR, '--seed', '0', '--out', 'cache', '--epochs', '1',
                    '--device', 'cpu'])
    line = run_error(capsys, ['--config', CIFAR, '--seed', '1', '--device', 'cpu', '--device-data',
                              '--teacher-cache', 'cache'])
    assert line == 'error: runtime.teacher_cache: teacher cache cache: seed differs: the cache has 0, the run has 1'
    line = run_error(capsys, ['--config', CIFAR, '--seed', '0', '--device', 'cpu', '--device-data',
                              '--teacher-cache', 'cache'])
    assert line == ('error: runtime.teacher_cache: teacher cache cache: the cache has fewer epochs than the run: '
                    'the cache has 1, the run has 2')
    line = run_error(capsys, ['--config', CIFAR, '--device', 'cpu', '--device-data', '--teacher-cache', 'cache'])
    assert re.fullmatch(r'error: runtime.teacher_cache: teacher cache cache: seed differs: the cache has 0, the run '
                        r'has \d{1,10}; no --seed was given, so the run drew seed \d{1,10}: add --seed 0 to use this '
                        r'cache', line), line
    line = run_error(capsys, ['--config', CIFAR, '--seed', '0', '--device', 'cpu', '--teacher-cache', 'cache'])
    assert 'runtime.teacher_cache needs runtime.device_data' in line


def test_cache_teacher_needs_a_local_teacher_checkpoint(tiny_cifar, capsys):
    line = run_error(capsys, ['cache-teacher', '--config', CIFAR, '--seed', '0', '--out', 'cache', '--device', 'cpu',
                              '--set', 'models.teacher_model.src_ckpt=https://example.org/t.pth'])
    assert "cache-teacher needs models.teacher_model with a local src_ckpt" in line


# ------------------------------------------------------------------------------------------------ host syncs

SYNC_METHODS = ('item', 'tolist', '__bool__', '__float__', '__int__', 'cpu', 'numpy', '__array__')


def _from_host_side_loader() -> bool:
    # torch's DataLoader/RandomSampler draw their seeds and permutation on the CPU generator (``.item()``,
    # ``.tolist()``) once per epoch, and collate host tensors: not a wait for the device. Everything else counts.
    frame = sys._getframe(2)
    while frame is not None:
        if f'torch{os.sep}utils{os.sep}data' in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def sync_counter(monkeypatch):
    """Counts tensor-to-host reads made while ``counter['on']`` is true, by method name (see above for what is
    left out)."""
    counter = {'on': False, 'calls': []}
    for name in SYNC_METHODS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            if counter['on'] and not _from_host_side_loader():
                counter['calls'].append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counting)
    return counter


def _counted(module, name, sync_counter, passes, monkeypatch):
    """Count host reads during each call of ``module.name`` (one list of calls per call)."""
    original = getattr(module, name)

    def counted(*args, **kwargs):
        sync_counter['on'] = True
        try:
            return original(*args, **kwargs)
        finally:
            sync_counter['on'] = False
            passes.append(list(sync_counter['calls']))
            sync_counter['calls'].clear()
    monkeypatch.setattr(module, name, counted)


SET_KD = '--set', 'train.criterion.kwargs.sub_terms.kd.criterion='
STEP_CASES = {
    'kd': (TINY, [], 1),
    'wttm-max-logit': (TINY, [SET_KD[0], SET_KD[1] + '{key: WTTMLoss, kwargs: {temperature: max_logit}}'], 1),
    'dkd': (TINY, [SET_KD[0], SET_KD[1] + '{key: DKDLoss, kwargs: {temperature: 4.0}}'], 1),
    'wttm-itrd': (os.path.join(support.CONFIG_DIR, 'runner_tiny_itrd.yaml'), [], 2),  # ITRD needs 2 per batch
    'wttm-crd': (os.path.join(support.CONFIG_DIR, 'runner_tiny_crd.yaml'), [], 2),
}
#: torchdistill's CRDLoss reads its five parameters with .item() on every step (and its two normalisers once more on
#: the first step): a known cost of using it as is (docs/crd_itrd.md).
CRD_ITEMS_PER_STEP, CRD_FIRST_STEP_ITEMS = 5, 2


@pytest.mark.parametrize('case', list(STEP_CASES))
def test_training_steps_and_evaluation_read_the_device_once_per_window(tmp_path, monkeypatch, capsys, sync_counter,
                                                                       case):
    """32 samples per epoch, log_freq 8 steps: one host read per window of 8 steps, and one per evaluation pass."""
    config, extra, batch_size = STEP_CASES[case]
    monkeypatch.chdir(tmp_path)
    torch.save({'model': support.TinyBNNet(10, width=16).state_dict()}, 'teacher.pt')
    epochs, evaluations, created = [], [], []
    _counted(training, 'train_one_epoch', sync_counter, epochs, monkeypatch)
    _counted(training, 'evaluate', sync_counter, evaluations, monkeypatch)
    original_tensor = torch.tensor

    def counted_tensor(*args, **kwargs):  # a host-to-device copy when made for the device (collate is host-side)
        created.append(sync_counter['on'] and not _from_host_side_loader())
        return original_tensor(*args, **kwargs)
    monkeypatch.setattr(torch, 'tensor', counted_tensor)
    run_ok(capsys, ['--config', config, '--device', 'cpu', '--seed', '0', '--set', 'train.num_epochs=2',
                    '--set', 'train.log_freq=8', '--set', f'train.train_data_loader.kwargs.batch_size={batch_size}']
           + extra)
    steps = 32 // batch_size
    assert len(epochs) == 2 and len(evaluations) == 2
    for epoch, calls in enumerate(epochs):
        expected = ['tolist'] * (steps // 8)  # the StepMeter's one read per window
        if case == 'wttm-crd':
            expected += ['item'] * (CRD_ITEMS_PER_STEP * steps + (CRD_FIRST_STEP_ITEMS if epoch == 0 else 0))
        assert sorted(calls) == sorted(expected), calls
    for calls in evaluations:
        assert calls == ['tolist'], calls  # one read per pass, nothing per batch
    assert not any(created)  # no host-to-device tensor per step or batch


def test_smoke_runs_the_device_data_path(tmp_path, monkeypatch, capsys):
    """--smoke stands in for CIFAR with torchvision's own class over random arrays, so --device-data runs too."""
    monkeypatch.chdir(tmp_path)
    config = os.path.join(support.REPO_ROOT, 'configs', 'cifar100', 'wttm', 'resnet8x4_from_resnet32x4.yaml')
    out = run_ok(capsys, ['--config', config, '--smoke', '--device', 'cpu', '--device-data', '--seed', '0'])
    assert 'Start training (runtime: device_data)' in out and 'Smoke run of' in out
    assert os.listdir(tmp_path) == []
