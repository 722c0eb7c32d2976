"""The views of a translated pipeline (ttm_torchdistill.run.data.view_space) and the device dataset's view of each
sample.

* counting: (H' - h + 1) x (W' - w + 1) crop offsets times 2 flip states, for every pipeline the device path takes;
* indexing: view index <-> (top, left, flip) is a bijection, and the index of what the pipeline draws gives back
  those very parameters;
* pixels: the image rendered for view v equals torchvision's PIL pipeline for that crop offset and flip, for every
  view, and equals what the device loader yields whenever it draws that view;
* refusals: a random op whose views cannot be enumerated, or a crop/flip/normalise given twice.
"""
import numpy as np
import pytest
import torch
from torchvision import transforms as T

from test_device_data import MEAN, PIPELINES, STD, images, torchvision_reference
from ttm_torchdistill.run.data.device_dataset import DeviceDataset
from ttm_torchdistill.run.data.device_transforms import DevicePipeline, NormalizeOp, ToTensorOp, translate_transform
from ttm_torchdistill.run.data.view_space import ViewSpace

pytestmark = pytest.mark.usefixtures('one_torch_thread')

#: Views per image of each pipeline of tests/test_device_data.py, counted by hand from its arguments.
EXPECTED_VIEWS = {
    'cifar': 9 * 9 * 2,                      # RandomCrop(32, padding=4) + flip
    'cifar_normalized': 9 * 9 * 2,
    'crop28_ltrb_padding': 11 * 7,           # (28, 30) from 32 + (2 + 4) rows x 32 + (1 + 3) columns, no flip
    'two_value_padding_flip_first': 2 * 3 * 7,  # flip, then 32 from 32 + 1 + 1 rows x 32 + 3 + 3 columns
    'tensor_mode_after_totensor': 7 * 7 * 2,  # 30 from 32 + 2 + 2, then flip
    'no_padding': 9 * 9,                     # 24 from 32
    'eval': 1,                               # nothing random
}


@pytest.mark.parametrize('name', sorted(PIPELINES))
def test_view_count_and_index_are_a_bijection(name):
    pipeline = translate_transform(PIPELINES[name]())
    space = ViewSpace(pipeline)
    assert space.num_views == EXPECTED_VIEWS[name]
    every = torch.arange(space.num_views)
    params = space.params(every)
    assert torch.equal(space.index(params, space.num_views), every)
    # one distinct (offsets, flip) combination per view
    columns = [p.reshape(space.num_views, -1).long() for p in params if p is not None]
    if columns:
        assert torch.unique(torch.cat(columns, dim=1), dim=0).shape[0] == space.num_views


@pytest.mark.parametrize('name', sorted(PIPELINES))
def test_index_of_drawn_parameters_gives_them_back(name):
    pipeline = translate_transform(PIPELINES[name]())
    space = ViewSpace(pipeline)
    drawn = pipeline.draw(500, torch.Generator().manual_seed(3))
    views = space.index(drawn, 500)
    assert views.dtype == torch.int64 and views.shape == (500,)
    assert int(views.min()) >= 0 and int(views.max()) < space.num_views
    for got, want in zip(space.params(views), drawn):
        assert (got is None) == (want is None)
        if want is not None:
            assert got.dtype == want.dtype and torch.equal(got, want)


def test_cifar_view_index_formula_and_description():
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    space = ViewSpace(translate_transform(transform))
    assert space.formula() == '(top * 9 + left) * 2 + flip'
    # view (top * 9 + left) * 2 + flip, by hand for a few
    for top, left, flip in ((0, 0, False), (0, 0, True), (0, 1, False), (8, 8, True), (3, 5, True)):
        params = space.params(torch.tensor([(top * 9 + left) * 2 + int(flip)]))
        assert params[0].tolist() == [[top, left]] and params[1].tolist() == [flip]
    assert space.describe() == {
        'image_shape': [32, 32, 3], 'crop_size': [32, 32], 'padding': [4, 4, 4, 4], 'fill': 0, 'flip': True,
        'normalize': {'mean': list(MEAN), 'std': list(STD)},
        'transform_order': ['RandomCrop', 'RandomHorizontalFlip', 'ToTensor', 'Normalize'], 'num_views': 162}
    flip_first = ViewSpace(translate_transform(PIPELINES['two_value_padding_flip_first']()))
    assert flip_first.formula() == '(flip) * 21 + top * 7 + left'
    assert ViewSpace(translate_transform(PIPELINES['eval']())).formula() == '0'


def test_flip_probability_does_not_change_the_views():
    def space(p):
        return ViewSpace(translate_transform(T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(p),
                                                        T.ToTensor()])))
    assert space(0.5).describe() == space(0.3).describe() == space(1.0).describe()
    assert space(0.5).num_views == space(1.0).num_views == 162


@pytest.mark.parametrize('name', ['cifar_normalized', 'two_value_padding_flip_first', 'tensor_mode_after_totensor'])
def test_every_view_equals_torchvisions_pil_pipeline_for_that_crop_and_flip(name):
    transform = PIPELINES[name]()
    n = 3
    data_np = images(n, seed=8)
    data = DeviceDataset(data_np, [0] * n, translate_transform(transform), seed=0)
    space = ViewSpace(data.pipeline)
    views = torch.arange(space.num_views).repeat(n)
    samples = torch.arange(n).repeat_interleave(space.num_views)
    params = space.params(views)
    rendered = data.render(samples, params)
    for row in range(samples.numel()):
        ref = torchvision_reference(data_np[samples[row]], transform, [None if p is None else p[row] for p in params])
        torch.testing.assert_close(rendered[row], ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize('seed', [0, 1])
def test_view_indices_render_what_the_loader_yields(seed):
    data = DeviceDataset(images(40, seed=2), [0] * 40,
                         translate_transform(PIPELINES['cifar_normalized']()), seed=seed)
    space = ViewSpace(data.pipeline)
    idx = torch.tensor([39, 0, 7, 7, 22])
    seen = set()
    for epoch in (0, 1, 250):
        views = data.view_indices(epoch)
        assert views.device.type == 'cpu' and views.shape == (40,)
        assert torch.equal(views, space.index(data.augmentation_params(epoch), 40))
        params = [None if p is None else p.to(data.device) for p in space.params(views[idx])]
        assert torch.equal(data.render(idx, params), data.augment(epoch, idx))  # bit for bit
        seen.add(tuple(views.tolist()))
    assert len(seen) == 3, 'epochs draw different views'


class _DrawingOp:
    """A random op the device path might gain one day, without an enumeration of its views."""
    name = 'RandomGrayscale'

    def describe(self):
        return {'op': self.name}

    def out_hw(self, hw):
        return hw

    def draw(self, num_samples, hw, generator):
        return torch.rand(num_samples, generator=generator) < 0.1

    def apply(self, x, flags):
        return x


def test_refusals():
    with pytest.raises(ValueError, match=r'RandomGrayscale draws per-sample parameters whose views the complete '
                                         r'teacher cache cannot enumerate: expected only RandomCrop and '
                                         r'RandomHorizontalFlip as random transforms'):
        ViewSpace(DevicePipeline([_DrawingOp(), ToTensorOp()], (32, 32, 3)))
    two_crops = translate_transform(T.Compose([T.RandomCrop(32, padding=4), T.RandomCrop(30), T.ToTensor()]))
    with pytest.raises(ValueError, match=r"the pipeline has 2 RandomCrop: the complete teacher cache takes at most "
                                         r"one \(pipeline: \['RandomCrop', 'RandomCrop', 'ToTensor'\]\)"):
        ViewSpace(two_crops)
    two_flips = translate_transform(T.Compose([T.RandomHorizontalFlip(), T.RandomHorizontalFlip(), T.ToTensor()]))
    with pytest.raises(ValueError, match=r'the pipeline has 2 RandomHorizontalFlip'):
        ViewSpace(two_flips)
    with pytest.raises(ValueError, match=r'the pipeline has 2 Normalize'):
        ViewSpace(DevicePipeline([ToTensorOp(), NormalizeOp(MEAN, STD), NormalizeOp(MEAN, STD)], (32, 32, 3)))
    space = ViewSpace(translate_transform(PIPELINES['cifar']()))
    with pytest.raises(ValueError, match=r'view indices must lie in 0..161, got 0..162'):
        space.params(torch.tensor([0, 162]))
    with pytest.raises(ValueError, match=r'view indices must lie in 0..161, got -1..3'):
        space.params(np.array([-1, 3]))
