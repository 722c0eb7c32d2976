"""MLKD's strong view on the device (ttm_torchdistill.views.device_augment) against the PIL version
(ttm_torchdistill.views.augment, itself checked against the authors' functions in test_mlkd_augment.py): every op,
Cutout and whole plans pixel for pixel on fixed and random draws; one draw per sample; the draws' distribution;
its place in the device pipeline (translation, refusals, the PIL pipeline on the same draws); no host reads."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from ttm_torchdistill.run.data.device_transforms import translate_transform
from ttm_torchdistill.run.data.view_space import ViewSpace
from ttm_torchdistill.views import augment as SA
from ttm_torchdistill.views import device_augment as DA

pytestmark = pytest.mark.usefixtures('one_torch_thread')

MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


def _images(count: int, size=(32, 32), seed: int = 0) -> np.ndarray:
    """uint8 count x H x W x 3 of four kinds: uniform noise, low contrast, smooth (clipped normal), nearly constant
    (one odd pixel): the cases where autocontrast, equalize and the enhancers branch."""
    rng = np.random.default_rng(seed)
    height, width = size
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            image = rng.integers(0, 256, (height, width, 3))
        elif kind == 1:
            image = rng.integers(100, 140, (height, width, 3))
        elif kind == 2:
            image = np.clip(rng.normal(128, 60, (height, width, 3)), 0, 255)
        else:
            image = np.full((height, width, 3), rng.integers(0, 256))
            image[rng.integers(0, height), rng.integers(0, width)] = rng.integers(0, 256, 3)
        out.append(image.astype(np.uint8))
    return np.stack(out)


def _device_op(images: np.ndarray, name: str, magnitudes) -> np.ndarray:
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    ops = torch.full((len(images),), DA.OP_NAMES.index(name))
    out = DA.apply_ops(batch, ops, torch.as_tensor(magnitudes, dtype=torch.float64))
    return out.permute(0, 2, 3, 1).to(torch.uint8).numpy()


def _magnitudes(name: str, count: int, seed: int) -> torch.Tensor:
    """Fixed points of the op's range (both ends, the inside) and then uniform draws."""
    _, low, high = SA.OPS[name]
    fixed = [low, low + 0.37 * (high - low), low + 0.5 * (high - low), low + 0.999 * (high - low)]
    if name == 'Posterize':
        fixed += [4.0, 5.5, 7.99]
    if name == 'Rotate':
        fixed += [0.0, -0.0, 15.0, -29.99]
    if name in ('ShearX', 'ShearY', 'TranslateX', 'TranslateY'):
        fixed += [0.0, 0.1, -0.1]
    drawn = low + (high - low) * torch.rand(count, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.tensor(fixed, dtype=torch.float64), drawn])[:count]


@pytest.mark.parametrize('size', [(32, 32), (20, 24)], ids=['32x32', '20x24'])
@pytest.mark.parametrize('name', DA.OP_NAMES)
def test_each_op_equals_strong_augment_pixel_for_pixel(name, size):
    """Every op on 96 images, each with its own magnitude (the range's ends, fixed points, uniform draws): the same
    bytes as StrongAugment's PIL op. Also non-square images (PIL's rotation centre and translations use W and H)."""
    images = _images(96, size=size, seed=DA.OP_NAMES.index(name))
    magnitudes = _magnitudes(name, len(images), seed=1)
    got = _device_op(images, name, magnitudes)
    for i, v in enumerate(magnitudes.tolist()):
        expected = np.asarray(SA.apply_op(Image.fromarray(images[i]), name, v))
        assert np.array_equal(got[i], expected), (name, i, v, np.abs(got[i].astype(int) - expected).max())


def test_cutout_equals_strong_augments_cutout():
    """Plans of no op: Cutout alone, at fractions 0 (none) to just below 0.5 and centres from near 1 to W."""
    images = _images(1)
    cases = [(f, ux, uy) for f in (0.0, 0.01, 0.2, 0.37, 0.4999) for ux, uy in ((0.0, 0.0), (0.999, 0.999),
                                                                               (0.5, 0.1), (0.93, 0.41))]
    plans = torch.tensor([[f, 32 + (1 - 32) * ux, 32 + (1 - 32) * uy] for f, ux, uy in cases], dtype=torch.float64)
    batch = torch.from_numpy(images).expand(len(cases), -1, -1, -1)
    got = DA.strong_augment(batch, plans).to(torch.uint8).numpy()
    for i, (f, _, _) in enumerate(cases):
        expected = np.asarray(SA.cutout(Image.fromarray(images[0]), f, (float(plans[i, 1]), float(plans[i, 2]))))
        assert np.array_equal(got[i], expected), cases[i]


def _plan_of(row: torch.Tensor, num_ops: int) -> SA.StrongAugmentPlan:
    values = row.tolist()
    ops = tuple((DA.OP_NAMES[int(values[i])], values[num_ops + i]) for i in range(num_ops))
    return SA.StrongAugmentPlan(ops, values[2 * num_ops], (values[2 * num_ops + 1], values[2 * num_ops + 2]))


@pytest.mark.parametrize('num_ops', [0, 1, 2, 3])
def test_whole_plans_equal_strong_augment(num_ops):
    """StrongAugment's own draws replayed on the batch (plans_tensor), and the batch's draws replayed through
    StrongAugment.apply: the same images, byte for byte."""
    images = _images(64, seed=10 + num_ops)
    sampler = SA.StrongAugment(num_ops, generator=torch.Generator().manual_seed(num_ops))
    plans = [sampler.sample((32, 32)) for _ in range(len(images))]
    got = DA.strong_augment(torch.from_numpy(images), DA.plans_tensor(plans)).to(torch.uint8).numpy()
    drawn = DA.draw_plans(len(images), num_ops, (32, 32), torch.Generator().manual_seed(100 + num_ops))
    got_drawn = DA.strong_augment(torch.from_numpy(images), drawn).to(torch.uint8).numpy()
    for i, image in enumerate(images):
        pil = Image.fromarray(image)
        assert np.array_equal(got[i], np.asarray(SA.StrongAugment.apply(pil, plans[i]))), (i, plans[i])
        replayed = _plan_of(drawn[i], num_ops)
        assert np.array_equal(got_drawn[i], np.asarray(SA.StrongAugment.apply(pil, replayed))), (i, replayed)


def test_every_sample_gets_its_own_draw_and_no_other_sample_changes_it():
    """One image 64 times: 64 different strong views; each equals the same plan applied to that image alone."""
    image = _images(1)[0]
    batch = torch.from_numpy(image).expand(64, -1, -1, -1).contiguous()
    plans = DA.draw_plans(64, 2, (32, 32), torch.Generator().manual_seed(3))
    assert len({tuple(row.tolist()) for row in plans}) == 64
    out = DA.strong_augment(batch, plans)
    assert len({bytes(view.to(torch.uint8).numpy()) for view in out}) == 64
    for i in (0, 17, 63):
        assert torch.equal(DA.strong_augment(batch[i:i + 1], plans[i:i + 1])[0], out[i])


def test_draws_have_strong_augments_distribution():
    """Op indices uniform over the 14 ops (chi-square, p = 0.001), each magnitude inside its op's range and spread
    over it (the quartiles of u), Cutout's fraction in [0, 0.5) and centre in (1, W] x (1, H], as
    StrongAugment.sample draws them."""
    n, num_ops = 28000, 2
    plans = DA.draw_plans(n, num_ops, (32, 24), torch.Generator().manual_seed(0))
    assert plans.shape == (n, DA.plan_width(num_ops)) and plans.dtype == torch.float64
    ops = plans[:, :num_ops].long()
    counts = torch.bincount(ops.flatten(), minlength=14).double()
    expected = n * num_ops / 14
    assert ((counts - expected) ** 2 / expected).sum().item() < 34.53  # 13 degrees of freedom, p = 0.001
    for index, name in enumerate(DA.OP_NAMES):
        _, low, high = SA.OPS[name]
        v = plans[:, num_ops:2 * num_ops][ops == index]
        assert (v >= low).all() and (v < high).all(), name
        u = (v - low) / (high - low)
        assert abs(u.mean().item() - 0.5) < 0.02 and abs((u < 0.25).double().mean().item() - 0.25) < 0.02, name
    fraction, cx, cy = plans[:, 2 * num_ops:].unbind(1)
    assert (fraction >= 0).all() and (fraction < 0.5).all() and abs(fraction.mean().item() - 0.25) < 0.005
    assert (cx > 1).all() and (cx <= 32).all() and (cy > 1).all() and (cy <= 24).all()


def test_rotation_fixed_point_equals_pils_for_many_angles():
    """Image.rotate's matrix in Python (math.cos, round to 15 decimals) and PIL's 16.16 coefficients of it, against
    the device's float64 computation: the float64 matrix may differ in its last bit, the integers PIL uses do not."""
    angles = torch.rand(20000, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 60 - 30
    ops = torch.full((len(angles),), DA.OP_NAMES.index('Rotate'))
    fixed = DA.affine_coefficients(ops, angles, 32, 32).tolist()
    fix = lambda value: math.floor(value * 65536.0 + 0.5)  # noqa: E731
    for angle, coefficients in zip(angles.tolist(), fixed):
        theta = -math.radians(angle % 360.0)
        a, b, d, e = (round(math.cos(theta), 15), round(math.sin(theta), 15), round(-math.sin(theta), 15),
                      round(math.cos(theta), 15))
        c = a * -16.0 + b * -16.0 + 0.0 + 16.0
        f = d * -16.0 + e * -16.0 + 0.0 + 16.0
        assert coefficients == [fix(a), fix(b), fix(c + a * 0.5 + b * 0.5), fix(d), fix(e), fix(f + d * 0.5 + e * 0.5)]


def _authors_strong(normalize: bool = True) -> T.Compose:
    ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), SA.StrongAugment(2), T.ToTensor()]
    return T.Compose(ops + ([T.Normalize(MEAN, STD)] if normalize else []))


@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last], ids=['nchw', 'nhwc'])
def test_the_authors_strong_pipeline_translates_and_equals_pil_on_the_same_draws(memory_format):
    from torchvision.transforms import functional as TF
    images = _images(40, seed=4)
    pipeline = translate_transform(_authors_strong(), image_shape=(32, 32, 3))
    assert [op['op'] for op in pipeline.describe()] == ['RandomCrop', 'RandomHorizontalFlip', 'StrongAugment',
                                                        'ToTensor', 'Normalize']
    params = pipeline.draw(len(images), torch.Generator().manual_seed(2))
    prepared = pipeline.prepare(torch.from_numpy(images), memory_format)
    out = pipeline.run(prepared, torch.arange(len(images)), params, memory_format=memory_format)
    batch = pipeline.apply(torch.from_numpy(images), params, memory_format=memory_format)
    assert torch.equal(out, batch) and out.is_contiguous(memory_format=memory_format)
    for i, image in enumerate(images):
        img = TF.crop(TF.pad(Image.fromarray(image), 4), int(params[0][i, 0]), int(params[0][i, 1]), 32, 32)
        img = TF.hflip(img) if bool(params[1][i]) else img
        img = SA.StrongAugment.apply(img, _plan_of(params[2][i], 2))
        expected = TF.normalize(TF.to_tensor(img), MEAN, STD)
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)
        if i < 5:  # before Normalize: bit for bit
            unnormalized = translate_transform(_authors_strong(False), image_shape=(32, 32, 3))
            rows = [None if p is None else p[i:i + 1] for p in params[:4]]
            assert torch.equal(unnormalized.apply(torch.from_numpy(images[i:i + 1]), rows)[0], TF.to_tensor(img))


@pytest.mark.parametrize('transform, message', [
    (T.Compose([T.ToTensor(), SA.StrongAugment(2)]),
     r'StrongAugment after ToTensor is not supported \(it works on PIL images and rejects tensors\): expected it '
     r'before ToTensor'),
    (T.Compose([SA.StrongAugment(2, generator=torch.Generator()), T.ToTensor()]),
     r'StrongAugment with a generator of its own is not supported by the device data path'),
])
def test_translation_refusals(transform, message):
    with pytest.raises(ValueError, match=message):
        translate_transform(transform, image_shape=(32, 32, 3))


def test_grey_images_and_the_complete_cache_are_refused():
    with pytest.raises(ValueError, match=r'StrongAugment works on RGB images; the images have 1 channels: expected 3'):
        translate_transform(T.Compose([SA.StrongAugment(2), T.ToTensor()]), image_shape=(32, 32, 1))
    with pytest.raises(ValueError, match=r'StrongAugment draws per-sample parameters whose views the complete teacher '
                                         r'cache cannot enumerate'):
        ViewSpace(translate_transform(_authors_strong(), image_shape=(32, 32, 3)))


@pytest.mark.parametrize('images, plans, message', [
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 7, dtype=torch.float64),
     r'expects uint8 RGB images B x H x W x 3, got torch.uint8 \(2, 3, 8, 8\)'),
    (torch.zeros(2, 8, 8, 3), torch.zeros(2, 7, dtype=torch.float64), r'got torch.float32'),
    (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), torch.zeros(3, 7, dtype=torch.float64),
     r'expected one program row per image \(2 images\), got a program of shape \(3, 44\)'),
    (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), torch.zeros(2, 6, dtype=torch.float64),
     r'plans of 6 columns: expected 3, 5, 7, ... \(0, 1, 2, ... ops\)'),
])
def test_strong_augment_errors(images, plans, message):
    with pytest.raises(ValueError, match=message):
        DA.strong_augment(images, plans)


def test_programs_are_made_on_the_host():
    with pytest.raises(ValueError, match=r'programs are made on the host from CPU plans N x \(2k \+ 3\), got 1-d'):
        DA.programs(torch.zeros(7, dtype=torch.float64), (32, 32))


SYNC_METHODS = ('item', 'tolist', '__bool__', '__float__', '__int__', 'cpu', 'numpy', '__array__')


def test_a_batch_reads_nothing_back_to_the_host(monkeypatch):
    """Every op, the tables and Cutout run from the batch's program rows without a value read back from the device
    (counted on the CPU, where a read would be a CUDA synchronisation) and without a tensor made from host values:
    the batch is not sorted by op on the host, and the programs are made once per epoch."""
    images = torch.from_numpy(_images(28, seed=6))
    plans = DA.draw_plans(28, 2, (32, 32), torch.Generator().manual_seed(6))
    plans[:14, 0] = torch.arange(14, dtype=torch.float64)  # every op in the first slot
    program = DA.programs(plans, (32, 32))
    DA.apply_programs(images, program)  # the constants are made (once per device) here
    reads = []
    for name in SYNC_METHODS:
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: reads.append(_n) or
                            _o(self, *a, **k))
    created = []
    original_tensor = torch.tensor
    monkeypatch.setattr(torch, 'tensor', lambda *a, **k: created.append(1) or original_tensor(*a, **k))
    DA.apply_programs(images, program)
    assert reads == [] and created == []
