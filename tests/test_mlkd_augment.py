"""MLKD's strong augmentation against a reference written from the authors' RandAugment, op for op and on fixed
draws; the ranges it draws from; what the module says about torchvision's RandAugment."""
import numpy as np
import pytest
import torch
from PIL import Image

import slow_reference_mlkd as slow
from ttm_torchdistill.views import augment as SA

REFERENCE_OPS = {op.__name__: (op, low, high) for op, low, high in slow.AUGMENT_LIST}


def _images(count=3, size=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)) for _ in range(count)]
    # a low-contrast image too, where autocontrast, equalize and the enhancers do the most
    images.append(Image.fromarray(rng.integers(100, 140, size=(size[1], size[0], 3), dtype=np.uint8)))
    return images


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))


def test_the_op_list_and_ranges_are_the_authors():
    assert list(SA.OPS) == list(REFERENCE_OPS)
    for name, (_, low, high) in SA.OPS.items():
        assert (low, high) == REFERENCE_OPS[name][1:], name


@pytest.mark.parametrize('name', sorted(REFERENCE_OPS))
def test_each_op_equals_the_authors_op(name):
    _, low, high = REFERENCE_OPS[name]
    magnitudes = [low, high, low + 0.37 * (high - low), low + 0.999 * (high - low)]
    if name == 'Posterize':
        magnitudes += [4.0, 5.5, 7.99]
    for img in _images():
        for v in magnitudes:
            assert _same(SA.apply_op(img, name, v), REFERENCE_OPS[name][0](img, v)), (name, v)


@pytest.mark.parametrize('size', [(32, 32), (16, 24)])
def test_cutout_equals_the_authors_cutout(size):
    img = _images(1, size=size)[0]
    w, h = size
    for fraction in (0.0, 0.01, 0.2, 0.37, 0.5):
        for u_x, u_y in ((0.0, 0.0), (0.999, 0.999), (0.5, 0.1), (0.93, 0.41)):
            center = (w + (1 - w) * u_x, h + (1 - h) * u_y)
            expected = slow.Cutout(img, fraction, slow.FixedDraws([], [u_x, u_y]))
            assert _same(SA.cutout(img, fraction, center), expected), (fraction, u_x, u_y)


def _replay_draws(seed, num_ops):
    """The numbers StrongAugment(generator seeded with ``seed``) draws, in its order."""
    g = torch.Generator().manual_seed(seed)
    choices = torch.randint(len(SA.OPS), (num_ops,), generator=g).tolist()
    uniforms = torch.rand(num_ops + 3, generator=g, dtype=torch.float64).tolist()
    return choices, uniforms


@pytest.mark.parametrize('num_ops', [0, 1, 2, 3])
def test_whole_transform_equals_the_authors_on_the_same_draws(num_ops):
    """Fixed draws fed to the reference (op choices, magnitudes, Cutout's size and centre) give the same image."""
    for seed, img in enumerate(_images(count=6, seed=1) * 3):
        augment = SA.StrongAugment(num_ops, generator=torch.Generator().manual_seed(seed))
        got = augment(img)
        choices, uniforms = _replay_draws(seed, num_ops)
        # the reference draws the op magnitudes and Cutout's size from random(), then the centre from np.uniform
        expected = slow.rand_augment(img, num_ops, slow.FixedDraws(choices, uniforms))
        assert _same(got, expected), (seed, num_ops)


def test_sample_then_apply_is_the_call():
    img = _images(1)[0]
    plan = SA.StrongAugment(2, generator=torch.Generator().manual_seed(5)).sample(img.size)
    again = SA.StrongAugment(2, generator=torch.Generator().manual_seed(5))(img)
    assert _same(SA.StrongAugment.apply(img, plan), again)


def test_draws_stay_in_the_authors_ranges():
    augment = SA.StrongAugment(2, generator=torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(2000):
        plan = augment.sample((32, 32))
        assert len(plan.ops) == 2
        for name, v in plan.ops:
            _, low, high = SA.OPS[name]
            assert low <= v < high, (name, v)
            seen.add(name)
        assert 0.0 <= plan.cutout_fraction < 0.5
        assert all(1.0 < c <= 32.0 for c in plan.cutout_center)
    assert seen == set(SA.OPS)


def test_posterize_keeps_four_to_seven_bits():
    bits = {max(1, int(4.0 + 4.0 * u)) for u in np.linspace(0, 1, 1001)[:-1]}
    assert bits == {4, 5, 6, 7}


def test_global_torch_generator_by_default_so_seeding_reproduces_it():
    img = _images(1)[0]
    torch.manual_seed(3)
    first = SA.StrongAugment()(img)
    torch.manual_seed(3)
    assert _same(first, SA.StrongAugment()(img))


def test_torchvision_randaugment_numbers_quoted_in_the_docstring():
    from torchvision.transforms import RandAugment
    space = RandAugment(num_ops=2, magnitude=10)._augmentation_space(31, (32, 32))
    assert set(space) == set(SA.OPS)
    at = {name: float(m[10]) if m.ndim > 0 else 0.0 for name, (m, _) in space.items()}
    assert at['ShearX'] == pytest.approx(0.1) and at['Rotate'] == pytest.approx(10.0)
    assert at['Brightness'] == pytest.approx(0.3) and at['Sharpness'] == pytest.approx(0.3)
    assert int(at['TranslateX']) == 4 and at['Posterize'] == 7 and at['Solarize'] == pytest.approx(170.0)
    for line in ('factor 1 +/- 0.3', '7 bits', '+/- 10 degrees', '+/- 0.1', 'threshold 170', '+/- 4 px'):
        assert line in SA.__doc__


@pytest.mark.parametrize('call, error, message', [
    (lambda: SA.StrongAugment(num_ops=-1), ValueError, r'num_ops must be a non-negative integer, got -1'),
    (lambda: SA.StrongAugment(num_ops=2.0), ValueError, r'num_ops must be a non-negative integer, got 2\.0'),
    (lambda: SA.StrongAugment(generator=0), TypeError, r'generator must be a torch.Generator or None, got int'),
    (lambda: SA.StrongAugment()(torch.zeros(3, 8, 8)), TypeError,
     r'StrongAugment works on PIL images \(put it before ToTensor\), got Tensor'),
    (lambda: SA.apply_op(_images(1)[0], 'Invert', 0.0), ValueError,
     r"unknown strong-augmentation op 'Invert'; the ops are AutoContrast, "),
    (lambda: SA.cutout(_images(1)[0], 0.6, (3.0, 3.0)), ValueError,
     r'cutout fraction must be in \[0, 0\.5\], got 0\.6'),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
