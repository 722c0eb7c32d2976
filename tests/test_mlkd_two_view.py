"""MLKD's two views in torchdistill's pipeline: the dataset wrapper, per-view forwards (BatchNorm statistics per
view, a wrapped module that makes both views' outputs at once), and tiny runs through ``python -m ttm_torchdistill``
(training, --smoke, --resume). The device data path's two views: tests/test_mlkd_device_runs.py."""
import copy
import json
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchdistill.datasets.registry import get_dataset_wrapper
from torchdistill.models.registry import get_auxiliary_model_wrapper

import runner_support as support
from ttm_torchdistill import cli
from ttm_torchdistill.views.two_view import TwoViewDataset, TwoViewModel

pytestmark = pytest.mark.usefixtures('one_torch_thread')

CONFIG = os.path.join(support.CONFIG_DIR, 'runner_tiny_mlkd.yaml')
LAST = os.path.join('ckpt', 'tiny_mlkd', 'student.last.pt')


class RawImages(torch.utils.data.Dataset):
    """PIL images and labels, with torchvision's ``transform`` attribute (applied in ``__getitem__``)."""

    def __init__(self, n=6, size=8, transform=None):
        rng = np.random.default_rng(0)
        self.images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        return (self.transform(image) if self.transform is not None else image), index % 3


def test_dataset_wrapper_is_registered_and_stacks_the_two_views_of_one_raw_image():
    to_tensor = torchvision.transforms.ToTensor()
    dataset = RawImages(transform=to_tensor)
    wrapper = get_dataset_wrapper('TwoViewDataset')(dataset, strong_transform=lambda img: to_tensor(img.rotate(90)))
    views, target, supp = wrapper[4]
    assert views.shape == (2, 3, 8, 8) and target == 1 and supp == {} and len(wrapper) == 6
    assert torch.equal(views[0], dataset[4][0])
    assert torch.equal(views[1], to_tensor(dataset.images[4].rotate(90)))
    assert dataset.transform is to_tensor  # the wrapped dataset is left as it was


def test_each_view_draws_its_own_crop_and_flip_from_the_raw_image():
    crop = torchvision.transforms.Compose([torchvision.transforms.RandomCrop(8, padding=4),
                                           torchvision.transforms.ToTensor()])
    wrapper = TwoViewDataset(RawImages(transform=crop), strong_transform=crop)
    torch.manual_seed(0)
    different = sum(not torch.equal(*wrapper[i % 6][0]) for i in range(12))
    assert different > 6  # same pipeline on both views, independent draws


@pytest.mark.parametrize('make, error, message', [
    (lambda: TwoViewDataset(RawImages(transform=None), strong_transform=abs), TypeError,
     r'TwoViewDataset needs a dataset whose `transform` makes the weak view; .*RawImages has transform None'),
    (lambda: TwoViewDataset(RawImages(transform=torchvision.transforms.ToTensor()), strong_transform='crop'),
     TypeError, r'strong_transform must be a callable transform, got builtins.str'),
])
def test_dataset_wrapper_construction_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_dataset_wrapper_item_errors():
    to_tensor = torchvision.transforms.ToTensor()
    small = TwoViewDataset(RawImages(transform=to_tensor), strong_transform=lambda img: to_tensor(img.resize((4, 4))))
    with pytest.raises(ValueError, match=r'the weak and strong views must have the same shape to be batched '
                                         r'together, got \(3, 8, 8\) and \(3, 4, 4\)'):
        small[0]
    pil = TwoViewDataset(RawImages(transform=to_tensor), strong_transform=lambda img: img)
    with pytest.raises(TypeError, match=r'the strong \(strong_transform\) view must be a tensor \(end the pipeline '
                                        r'with ToTensor\), got Image'):
        pil[0]

    class Pretransformed(RawImages):  # transforms through another attribute: the raw image cannot be had
        def __getitem__(self, index):
            return torchvision.transforms.functional.to_tensor(self.images[index]), 0
    with pytest.raises(TypeError, match=r'returned a tensor with its `transform` set to None'):
        TwoViewDataset(Pretransformed(transform=to_tensor), strong_transform=to_tensor)[0]


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_two_view_forward_gives_per_view_batchnorm_statistics():
    torch.manual_seed(0)
    net = BNNet().train()
    initial = copy.deepcopy(net)
    reference = copy.deepcopy(net)
    wrapper = get_auxiliary_model_wrapper('TwoViewModel', student_model=net, device='cpu', device_ids=None,
                                          distributed=False)
    weak, strong = torch.randn(6, 3, 8, 8), torch.randn(6, 3, 8, 8) * 3 + 1  # different statistics per view
    seen = {}
    wrapper.weak.register_forward_hook(lambda m, i, o: seen.__setitem__('weak', o))
    wrapper.strong.register_forward_hook(lambda m, i, o: seen.__setitem__('strong', o))
    output = wrapper(torch.stack([weak, strong], dim=1))
    expected_weak, expected_strong = reference(weak), reference(strong)  # one pass per view, weak first
    assert torch.equal(output, expected_weak) and torch.equal(seen['weak'], expected_weak)
    assert torch.equal(seen['strong'], expected_strong)
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        assert torch.equal(getattr(net.bn, name), getattr(reference.bn, name)), name
    assert int(net.bn.num_batches_tracked) == 2
    # one concatenated batch would normalise both views with their mixed statistics
    assert not torch.allclose(initial(torch.cat([weak, strong]))[:6], expected_weak)


def test_two_view_model_gets_gradients_from_both_views():
    net = BNNet()
    wrapper = TwoViewModel(student_model=net)
    outputs = {}
    wrapper.strong.register_forward_hook(lambda m, i, o: outputs.__setitem__('strong', o))
    wrapper(torch.randn(4, 2, 3, 8, 8))
    outputs['strong'].sum().backward()
    assert net.conv.weight.grad is not None and net.conv.weight.grad.abs().sum() > 0
    assert list(wrapper.parameters()) == list(net.parameters())  # no parameters of its own


def test_a_wrapped_module_with_two_view_forward_makes_both_outputs_at_once():
    """The runner's cached teacher: the weak view's output from one source, the strong view's from another, in one
    call (TwoViewModel does not call the module itself then)."""
    class Both(nn.Module):
        def forward(self, x):
            raise AssertionError('TwoViewModel calls two_view_forward, not forward')

        def two_view_forward(self, weak, strong):
            return weak.sum((1, 2, 3))[:, None], strong.mean((1, 2, 3))[:, None]
    wrapper = TwoViewModel(teacher_model=Both())
    seen = {}
    wrapper.strong.register_forward_hook(lambda m, i, o: seen.__setitem__('strong', o))
    views = torch.randn(4, 2, 3, 8, 8)
    output = wrapper(views)
    assert torch.equal(output, views[:, 0].sum((1, 2, 3))[:, None])
    assert torch.equal(seen['strong'], views[:, 1].mean((1, 2, 3))[:, None])


@pytest.mark.parametrize('make, error, message', [
    (lambda: TwoViewModel(), ValueError, r'TwoViewModel wraps exactly one model: give teacher_model or student_model'),
    (lambda: TwoViewModel(teacher_model=BNNet(), student_model=BNNet()), ValueError, r'wraps exactly one model'),
    (lambda: TwoViewModel(student_model='net'), TypeError, r'the wrapped model must be an nn.Module, got str'),
    (lambda: TwoViewModel(student_model=BNNet())(torch.randn(4, 3, 8, 8)), ValueError,
     r'TwoViewModel expects a batch of two views of shape \(N, 2, \.\.\.\) from the TwoViewDataset dataset wrapper, '
     r'got \(4, 3, 8, 8\)'),
    (lambda: TwoViewModel(student_model=BNNet())([torch.randn(4, 3, 8, 8)] * 2), ValueError, r'got list'),
])
def test_two_view_model_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


# ---- through the runner ----

def _run(capsys, args):
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    folder = support.prepare_tiny_run_folder(str(tmp_path / 'run'))
    monkeypatch.chdir(folder)
    return folder


def test_tiny_two_view_run_trains_with_ce_on_both_views_and_mlkd(run_folder, capsys):
    code, out, err = _run(capsys, ['--config', CONFIG, '--device', 'cpu', '--seed', '0'])
    assert code == 0, err[-20:]
    assert 'Epoch 2/2  step 4/4' in out  # 32 images of two views, batch 8: 4 steps, images counted once
    assert '(ce_weak ' in out and ' ce_strong ' in out and ' mlkd ' in out and ' T mean ' in out
    with open(os.path.join('ckpt', 'tiny_mlkd', 'student.json')) as fp:
        summary = json.load(fp)
    assert [e['epoch'] for e in summary['epochs']] == [1, 2] and summary['test']['student'] is not None
    best = torch.load(os.path.join('ckpt', 'tiny_mlkd', 'student.pt'), weights_only=True)
    assert set(best['model']) == set(support.TinyBNNet(10, width=8).state_dict())  # the student alone


def test_tiny_two_view_smoke(run_folder, capsys):
    code, out, err = _run(capsys, ['--config', CONFIG, '--device', 'cpu', '--smoke'])
    assert code == 0, err[-20:]
    assert 'Smoke run of' in out and not os.path.exists('ckpt')


def test_two_view_run_resumes_bitwise(tmp_path, monkeypatch, capsys):
    """Ended before epoch 2 and resumed: the same weights, BatchNorm statistics and history as one run (the strong
    augmentation draws from torch's generator, whose state the last checkpoint holds)."""
    args = ['--config', CONFIG, '--device', 'cpu', '--seed', '0']
    killed = support.prepare_tiny_run_folder(str(tmp_path / 'killed'))
    result = support.run_cli(args, cwd=killed, extra_env={'TTM_TEST_EXIT_AT_EPOCH': '1'})  # a process of its own
    assert result.returncode == 3, result.stderr[-2000:]
    monkeypatch.chdir(killed)
    code, out, err = _run(capsys, args + ['--resume'])
    assert code == 0, err[-20:]
    assert f'Resuming from {LAST} at epoch 2/2' in out
    full = support.prepare_tiny_run_folder(str(tmp_path / 'uninterrupted'))
    monkeypatch.chdir(full)
    code, out, err = _run(capsys, args)
    assert code == 0, err[-20:]
    expected = torch.load(os.path.join(full, LAST), weights_only=False)
    resumed = torch.load(os.path.join(killed, LAST), weights_only=False)
    for key, value in expected['model'].items():
        assert torch.equal(value, resumed['model'][key]), key
    summaries = []
    for folder in (full, killed):
        with open(os.path.join(folder, 'ckpt', 'tiny_mlkd', 'student.json')) as fp:
            summaries.append([(e['epoch'], e['train_loss'], e['val_top1'], e['lr']) for e in json.load(fp)['epochs']])
    assert summaries[0] == summaries[1] and len(summaries[0]) == 2
