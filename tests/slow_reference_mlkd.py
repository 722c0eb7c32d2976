"""Slow float64 reference of MLKD, written from the authors' ``MLKD.forward`` (kei813121/atkd, distiller_zoo/mlkd.py).

Independent of ttm_torchdistill: it follows the authors' structure term by term (five KD terms per view, the
batch- and class-level terms, the medians from ``numpy.percentile`` on the host, the masks applied to reduced
scalars), with Python loops over samples, Gram rows and temperatures, and probabilities rather than log space.
``quirk_free`` is a second reference for the reading without the quirks (masks select samples and classes, the
strong-view KD sum reads the strong view at every temperature). Inputs are float64 tensors; the result is
differentiable w.r.t. the student logits.
"""
import math

import numpy as np
import torch

FACTOR = (1 + math.sqrt(3)) / 2


def normalize(logits):
    """The authors' z-score: (z - mean) / (unbiased std + 1e-7), per row."""
    rows = []
    for row in logits:
        mean = sum(row) / len(row)
        std = torch.sqrt(sum((x - mean) ** 2 for x in row) / (len(row) - 1))
        rows.append((row - mean) / (std + 1e-7))
    return torch.stack(rows)


def maxlogit_temperature(zs, zt, teacher_only_max=False):
    """(N, 1) temperatures from z-scored logits (the authors' calc_maxlogit_temp), no gradient."""
    zs, zt = zs.detach(), zt.detach()
    temps = []
    for i in range(zs.shape[0]):
        peak = max(abs(float(x)) for x in zt[i])
        if not teacher_only_max:
            peak = max(peak, max(abs(float(x)) for x in zs[i]))
        temps.append([peak * FACTOR])
    return torch.tensor(temps, dtype=zs.dtype)


def _row_temperature(temperature, i):
    return temperature[i, 0] if isinstance(temperature, torch.Tensor) else temperature


def _softmax_rows(logits, temperature):
    return torch.stack([torch.softmax(logits[i] / _row_temperature(temperature, i), 0)
                        for i in range(logits.shape[0])])


def kd_per_sample(student, teacher, temperature):
    """[T_i^2 * KL(p_t || p_s)] per sample, from probabilities."""
    out = []
    for i in range(student.shape[0]):
        t = _row_temperature(temperature, i)
        p = torch.softmax(teacher[i] / t, 0)
        q = torch.softmax(student[i] / t, 0)
        out.append(t ** 2 * (p * (torch.log(p) - torch.log(q))).sum())
    return out


def kd(student, teacher, temperature):
    """The authors' kd_loss with reduce=True: batch mean."""
    values = kd_per_sample(student, teacher, temperature)
    return sum(values) / len(values)


def _gram_difference_rows(p_s, p_t):
    """Row sums of (P_t P_t^T - P_s P_s^T)^2, one row of dot products at a time."""
    return [((p_t @ p_t[i] - p_s @ p_s[i]) ** 2).sum() for i in range(p_s.shape[0])]


def bc_rows(student, teacher, temperature):
    return _gram_difference_rows(_softmax_rows(student, temperature), _softmax_rows(teacher, temperature))


def cc_rows(student, teacher, temperature):
    return _gram_difference_rows(_softmax_rows(student, temperature).t(), _softmax_rows(teacher, temperature).t())


def bc(student, teacher, temperature):
    """The authors' bc_loss: squared Frobenius norm of the N x N difference, divided by N."""
    return sum(bc_rows(student, teacher, temperature)) / student.shape[0]


def cc(student, teacher, temperature):
    """The authors' cc_loss: squared Frobenius norm of the C x C difference, divided by C."""
    return sum(cc_rows(student, teacher, temperature)) / student.shape[1]


def masks(teacher_weak):
    """The authors' masks: numpy percentiles (linear) on the host, compared with ``le``."""
    probs = torch.softmax(teacher_weak.detach(), dim=1)
    confidence = probs.max(dim=1)[0]
    mask = confidence.le(np.percentile(confidence.numpy().flatten(), 50))
    class_confidence = probs.sum(dim=0)
    class_mask = class_confidence.le(np.percentile(class_confidence.numpy().flatten(), 50))
    return mask, class_mask


def _prepare(sw, tw, ss, ts, temperature, standardize, teacher_only_max):
    if standardize:
        sw, tw, ss, ts = normalize(sw), normalize(tw.detach()), normalize(ss), normalize(ts.detach())
    if temperature == 'max_logit':
        # the authors' pair (--logit_stand --mlogit_temp) reads the logits standardised above; without
        # standardisation (this plugin's extension) the temperature still comes from z-scored logits
        zscored = (lambda x: x) if standardize else normalize
        t_weak = maxlogit_temperature(zscored(sw), zscored(tw), teacher_only_max)
        t_strong = maxlogit_temperature(zscored(ss), zscored(ts), teacher_only_max)
    else:
        t_weak = t_strong = float(temperature)
    return sw, tw.detach(), ss, ts.detach(), t_weak, t_strong


def mlkd(sw, tw, ss, ts, temperature=4.0, standardize=False, teacher_only_max=False):
    """What the authors' MLKD.forward returns (kd_weak + kd_strong + cc_weak + bc_weak)."""
    sw, tw, ss, ts, t_weak, t_strong = _prepare(sw, tw, ss, ts, temperature, standardize, teacher_only_max)
    mask, class_mask = masks(tw)
    weak_temps = [t_weak, 3.0, 5.0, 2.0, 6.0]
    loss_kd_weak = sum((kd(sw, tw, t) * mask).mean() for t in weak_temps)
    loss_kd_strong = kd(ss, ts, t_strong) + kd(ss, ts, 3.0) + kd(ss, ts, 5.0) + kd(sw, tw, 2.0) + kd(sw, tw, 6.0)
    loss_cc_weak = sum((cc(sw, tw, t) * class_mask).mean() for t in weak_temps)
    loss_bc_weak = sum((bc(sw, tw, t) * mask).mean() for t in weak_temps)
    # computed by the authors, then left out of the returned sum
    _unused_strong = [cc(ss, ts, t_strong), bc(ss, ts, t_strong)]
    return loss_kd_weak + loss_kd_strong + loss_cc_weak + loss_bc_weak


def quirk_free(sw, tw, ss, ts, temperature=4.0, standardize=False, teacher_only_max=False):
    """Masks select samples/classes (rows), the strong KD sum reads the strong view at all five temperatures."""
    sw, tw, ss, ts, t_weak, t_strong = _prepare(sw, tw, ss, ts, temperature, standardize, teacher_only_max)
    mask, class_mask = masks(tw)
    n, c = sw.shape
    total = 0
    for t in [t_weak, 3.0, 5.0, 2.0, 6.0]:
        per_sample = kd_per_sample(sw, tw, t)
        total = total + sum(per_sample[i] for i in range(n) if mask[i]) / n
        rows = bc_rows(sw, tw, t)
        total = total + sum(rows[i] for i in range(n) if mask[i]) / n
        rows = cc_rows(sw, tw, t)
        total = total + sum(rows[k] for k in range(c) if class_mask[k]) / c
    for t in [t_strong, 3.0, 5.0, 2.0, 6.0]:
        total = total + kd(ss, ts, t)
    return total


# ---------------------------------------------------------------------------------------------------------------
# The strong augmentation: the authors' RandAugment(2, 10) + Cutout (dataset/cifar100.py), op by op, with its
# random draws taken from a ``draws`` object instead of Python's ``random`` and numpy's global generator.
# ---------------------------------------------------------------------------------------------------------------
from PIL import Image, ImageDraw, ImageEnhance, ImageOps  # noqa: E402


def AutoContrast(img, _):
    return ImageOps.autocontrast(img)


def Brightness(img, v):
    assert v >= 0.0
    return ImageEnhance.Brightness(img).enhance(v)


def Color(img, v):
    assert v >= 0.0
    return ImageEnhance.Color(img).enhance(v)


def Contrast(img, v):
    assert v >= 0.0
    return ImageEnhance.Contrast(img).enhance(v)


def Equalize(img, _):
    return ImageOps.equalize(img)


def Identity(img, v):
    return img


def Posterize(img, v):
    return ImageOps.posterize(img, max(1, int(v)))


def Rotate(img, v):
    return img.rotate(v)


def Sharpness(img, v):
    assert v >= 0.0
    return ImageEnhance.Sharpness(img).enhance(v)


def ShearX(img, v):
    return img.transform(img.size, Image.AFFINE, (1, v, 0, 0, 1, 0))


def ShearY(img, v):
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, v, 1, 0))


def TranslateX(img, v):
    return img.transform(img.size, Image.AFFINE, (1, 0, v * img.size[0], 0, 1, 0))


def TranslateY(img, v):
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, v * img.size[1]))


def Solarize(img, v):
    assert 0 <= v <= 256
    return ImageOps.solarize(img, v)


def CutoutAbs(img, v, draws):
    w, h = img.size
    x0 = draws.np_uniform(w)
    y0 = draws.np_uniform(h)
    x0 = int(max(0, x0 - v / 2.0))
    y0 = int(max(0, y0 - v / 2.0))
    x1 = min(w, x0 + v)
    y1 = min(h, y0 + v)
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, x1, y1), (125, 123, 114))
    return img


def Cutout(img, v, draws):
    assert 0.0 <= v <= 0.5
    if v <= 0.0:
        return img
    return CutoutAbs(img, v * img.size[0], draws)


AUGMENT_LIST = [
    (AutoContrast, 0, 1), (Brightness, 0.05, 0.95), (Color, 0.05, 0.95), (Contrast, 0.05, 0.95),
    (Equalize, 0, 1), (Identity, 0, 1), (Posterize, 4, 8), (Rotate, -30, 30), (Sharpness, 0.05, 0.95),
    (ShearX, -0.3, 0.3), (ShearY, -0.3, 0.3), (Solarize, 0, 256), (TranslateX, -0.3, 0.3), (TranslateY, -0.3, 0.3),
]


class FixedDraws:
    """Stands for the authors' random sources: ``choices`` (random.choices), ``random`` (random.random) and
    ``np_uniform(low)`` (np.random.uniform(low), i.e. high=1.0), fed from fixed lists of numbers in [0, 1)."""

    def __init__(self, choice_indices, uniforms):
        self.choice_indices, self.uniforms = list(choice_indices), list(uniforms)

    def choices(self, population, k):
        return [population[self.choice_indices.pop(0)] for _ in range(k)]

    def random(self):
        return self.uniforms.pop(0)

    def np_uniform(self, low, high=1.0):
        return low + (high - low) * self.random()


def rand_augment(img, n, draws):
    """The authors' RandAugment(n, m).__call__ (m is unused there)."""
    ops = draws.choices(AUGMENT_LIST, k=n)
    for op, min_val, max_val in ops:
        val = min_val + float(max_val - min_val) * draws.random()
        img = op(img, val)
    cutout_val = draws.random() * 0.5
    return Cutout(img, cutout_val, draws)
