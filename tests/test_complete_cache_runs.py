"""The complete teacher cache through the command line: ``cache-teacher --views all`` and runs reading it.

On a tiny CIFAR-100 in torchvision's on-disk format (40 training images, 162 views each) with small BatchNorm
networks as teacher and student (the teacher forward over 6,480 views takes a second):

* one cache serves two seeds and more epochs than the config plans; each run ends with the student of the same run
  with the live teacher (float64: to 1e-10; float32: the relative difference is stated);
* refusals, each one line naming the field: another padding, crop size, normalisation, flip, teacher checkpoint,
  class count; an extra random transform (at the build and at the run); an unfinished build; wrong flags.
"""
import json
import os
import shutil

import pytest
import torch
import torchvision

import runner_support as support

pytestmark = pytest.mark.usefixtures('one_torch_thread')

CIFAR = os.path.join(support.CONFIG_DIR, 'runner_cifar100_wttm.yaml')
TEACHER = 'resource/ckpt/cifar100/teachers/resnet20_vanilla/ckpt_epoch_240.pth'
LAST = './resource/ckpt/cifar100/wttm/resnet20_from_resnet20.last.pt'
SUMMARY = './resource/ckpt/cifar100/wttm/resnet20_from_resnet20.json'
TINY_MODELS = ['--set', 'models.teacher_model.key=test_runner_tiny_bn_net',
               '--set', 'models.teacher_model.kwargs={num_classes: 100, width: 8}',
               '--set', 'models.student_model.key=test_runner_tiny_bn_net',
               '--set', 'models.student_model.kwargs={num_classes: 100, width: 8}']
FLIP = ("                - !import_call\n"
        "                  key: 'torchvision.transforms.RandomHorizontalFlip'\n"
        "                  init: {kwargs: {p: 0.5}}\n")


run_ok, run_error = support.cli_ok, support.cli_error


def save_teacher(path, seed):
    torch.manual_seed(seed)
    teacher = support.TinyBNNet(100, width=8)
    with torch.no_grad():  # running statistics that make eval mode differ from train mode
        teacher.bn.running_mean.uniform_(-0.2, 0.2)
        teacher.bn.running_var.uniform_(0.5, 2.0)
    torch.save({'model': teacher.state_dict()}, path)


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """A tiny CIFAR-100 and a teacher checkpoint under the config's paths."""
    monkeypatch.chdir(tmp_path)
    support.write_tiny_cifar100('resource/dataset/cifar100', num_train=40, num_test=20)
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda fpath, md5=None: os.path.isfile(fpath))
    os.makedirs(os.path.dirname(TEACHER))
    save_teacher(TEACHER, 1)
    return tmp_path


def config_variant(name, old, new):
    """The test config with ``old`` replaced by ``new``, written as ``name`` in the current folder."""
    with open(CIFAR) as fp:
        text = fp.read()
    assert old in text
    with open(name, 'w') as fp:
        fp.write(text.replace(old, new))
    return name


def cache_args(config=CIFAR, out='cache', *extra):
    return ['cache-teacher', '--config', config, '--views', 'all', '--out', out, '--device', 'cpu', *TINY_MODELS,
            *extra]


def run_args(seed, *extra, config=CIFAR):
    return ['--config', config, '--seed', str(seed), '--device', 'cpu', '--device-data', *TINY_MODELS, *extra]


def weights(path):
    return torch.load(path, weights_only=False)['model']


def relative_difference(a, b):
    """max over floating tensors of ||a - b|| / ||b||."""
    return max(((a[k] - v).norm() / v.norm().clamp_min(1e-30)).item() for k, v in b.items() if v.is_floating_point())


@pytest.mark.parametrize('dtype', ['float64', 'float32'])
def test_one_complete_cache_trains_the_live_teachers_student_for_two_seeds(tiny_cifar, capsys, dtype):
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    figures = {}
    try:
        out = run_ok(capsys, cache_args(CIFAR, 'cache', '--dtype', dtype, '--batch-size', '1000'))
        assert 'teacher cache [####################] 100.0%  6,480/6,480 views' in out
        assert sorted(os.listdir('cache')) == ['logits.npy', 'metadata.json']
        for seed in (0, 1):
            # 4 epochs where the config plans 2: the complete cache has no epoch count
            run_ok(capsys, run_args(seed, '--set', 'train.num_epochs=4'))
            live = weights(LAST)
            out = run_ok(capsys, run_args(seed, '--set', 'train.num_epochs=4', '--teacher-cache', 'cache'))
            assert 'Teacher cache cache: complete, 162 views of each of 40 images' in out
            assert 'Epoch 4/4' in out
            with open(SUMMARY) as fp:
                assert json.load(fp)['runtime']['teacher_cache'] == 'cache'
            cached = weights(LAST)
            for key, value in live.items():
                if value.is_floating_point():
                    assert value.dtype == getattr(torch, dtype)
                    if dtype == 'float64':
                        torch.testing.assert_close(cached[key], value, rtol=0, atol=1e-10, msg=key)
                else:
                    assert torch.equal(cached[key], value), key
            figures[seed] = relative_difference(cached, live)
    finally:
        torch.set_default_dtype(default)
    print(f'{dtype}: relative weight difference, cache vs live teacher: {figures}')
    # float32: the teacher's logits differ only by the rounding of another forward batch (1,000 views vs 16 images)
    assert all(figure <= (1e-12 if dtype == 'float64' else 1e-5) for figure in figures.values()), figures


def test_refusals_name_the_field(tiny_cifar, capsys):
    run_ok(capsys, cache_args())
    prefix = 'error: runtime.teacher_cache: teacher cache cache: '

    def refused(*extra, config=CIFAR):
        return run_error(capsys, run_args(0, '--teacher-cache', 'cache', *extra, config=config))
    padding = config_variant('padding2.yaml', '{size: 32, padding: 4}', '{size: 32, padding: 2}')
    assert refused(config=padding) == prefix + 'padding differs: the cache has [4, 4, 4, 4], the run has [2, 2, 2, 2]'
    crop = config_variant('crop28.yaml', '{size: 32, padding: 4}', '{size: 28, padding: 4}')
    assert refused(config=crop) == prefix + 'crop_size differs: the cache has [32, 32], the run has [28, 28]'
    mean = config_variant('mean.yaml', 'mean: [0.5071, 0.4865, 0.4409]', 'mean: [0.5, 0.5, 0.5]')
    assert refused(config=mean).startswith(prefix + 'normalize differs: the cache has {"mean": [0.5071, 0.4865, '
                                           '0.4409], "std": [')
    save_teacher('other_teacher.pt', 2)
    assert refused('--set', 'models.teacher_model.src_ckpt=other_teacher.pt').startswith(
        prefix + "teacher_sha256 differs: the cache has '")
    assert refused('--set', 'models.student_model.kwargs={num_classes: 10, width: 8}') == \
        prefix + 'num_classes differs: the cache has 100, the run has 10'
    no_flip = config_variant('no_flip.yaml', FLIP, '')
    run_ok(capsys, cache_args(no_flip, 'cache_no_flip'))
    assert run_error(capsys, run_args(0, '--teacher-cache', 'cache_no_flip')) == \
        'error: runtime.teacher_cache: teacher cache cache_no_flip: flip differs: the cache has False, the run has True'
    # an extra random transform: refused when building and when running, by name
    jitter = config_variant('jitter.yaml', FLIP, FLIP + "                - !import_call\n"
                            "                  key: 'torchvision.transforms.ColorJitter'\n"
                            "                  init: {kwargs: {brightness: 0.4}}\n")
    line = run_error(capsys, cache_args(jitter, 'cache_jitter'))
    assert line.startswith("error: runtime.device_data: dataset 'cifar100/train' (train.train_data_loader): "
                           "transform torchvision.transforms.transforms.ColorJitter is not supported"), line
    assert not os.path.exists('cache_jitter')
    assert 'ColorJitter is not supported' in refused(config=jitter)
    # an unfinished build (a kill before metadata.json) is refused with what to do
    shutil.copytree('cache', 'unfinished')
    os.rename('unfinished/metadata.json', 'unfinished/build.json')
    assert run_error(capsys, run_args(0, '--teacher-cache', 'unfinished')) == (
        'error: runtime.teacher_cache: teacher cache unfinished: the build did not finish (no metadata.json, a '
        'build.json): rerun the same cache-teacher --views all command to complete it')


def test_cache_teacher_flags(tiny_cifar, capsys):
    assert run_error(capsys, cache_args(CIFAR, 'c', '--seed', '0', '--epochs', '3')) == \
        'error: cache-teacher --views all takes no --seed or --epochs: the complete cache serves every seed and ' \
        'number of epochs'
    base = ['cache-teacher', '--config', CIFAR, '--out', 'c', '--device', 'cpu']
    assert run_error(capsys, base) == \
        'error: cache-teacher needs --seed (the seed of the runs that will read the cache), or --views all'
    assert run_error(capsys, base + ['--seed', '0', '--amp', 'bf16']) == \
        'error: cache-teacher --amp applies to --views all only'
    assert run_error(capsys, base + ['--seed', '0', '--save-every', '5']) == \
        'error: cache-teacher --save-every applies to --views all only'
    assert not os.path.exists('c')
    # the complete cache of a folder that holds another build is refused, and nothing is overwritten
    run_ok(capsys, cache_args(CIFAR, 'c', '--dtype', 'float16'))
    line = run_error(capsys, cache_args(CIFAR, 'c'))
    assert line == ("error: cache-teacher: c already holds a complete teacher cache of another build (dtype differs: "
                    "the cache has 'float16', this build has 'float32'): remove it or choose another --out")
    out = run_ok(capsys, cache_args(CIFAR, 'c', '--dtype', 'float16'))
    assert 'teacher cache c is complete already (162 views of 40 images): nothing to do' in out
