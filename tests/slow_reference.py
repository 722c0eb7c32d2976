"""Slow, per-sample float64 references written directly from the papers' formulas.

Deliberately independent of ttm_torchdistill.functional: Python loops over samples, probabilities
rather than log space, pow on probabilities (TTM Algorithm 1), the authors' -1000 masking for DKD.
Inputs are float64 tensors; the returned loss is differentiable w.r.t. the student logits.
"""
import math

import torch

FACTOR = (1 + math.sqrt(3)) / 2


def _kl(p, q):
    return sum(p[j] * (torch.log(p[j]) - torch.log(q[j])) for j in range(len(p)) if p[j] > 0)


def _zscore(row):
    mean = sum(row) / len(row)
    var = sum((x - mean) ** 2 for x in row) / (len(row) - 1)
    return (row - mean) / (torch.sqrt(var) + 1e-7)


def _temperatures(s, t, temperature, teacher_only_max=False):
    if temperature != 'max_logit':
        return [torch.tensor(float(temperature), dtype=s.dtype)] * s.shape[0]
    out = []
    for i in range(s.shape[0]):
        m = max(abs(x) for x in _zscore(t[i].detach()))
        if not teacher_only_max:
            m = max(m, max(abs(x) for x in _zscore(s[i].detach())))
        out.append(FACTOR * m)
    return out


def ttm(s, t, temperature, weighted=False):
    total = 0
    for i, T in enumerate(_temperatures(s, t, temperature)):
        p = torch.softmax(t[i], 0) ** (1 / T)
        u = p.sum()
        p = p / u
        kl = _kl(p, torch.softmax(s[i], 0))
        total = total + (u * kl if weighted else kl)
    return total / s.shape[0]


def kd(s, t, temperature, standardize=False):
    total = 0
    temps = _temperatures(s, t, temperature)
    for i, T in enumerate(temps):
        zs, zt = (_zscore(s[i]), _zscore(t[i])) if standardize else (s[i], t[i])
        total = total + T ** 2 * _kl(torch.softmax(zt / T, 0), torch.softmax(zs / T, 0))
    return total / s.shape[0]


def _pearson(u, v):
    u, v = u - u.mean(), v - v.mean()
    return (u * v).sum() / (torch.sqrt((u * u).sum()) * torch.sqrt((v * v).sum()) + 1e-8)


def dist(s, t, beta, gamma, tau):
    ys, yt = torch.softmax(s / tau, 1), torch.softmax(t / tau, 1)
    inter = 1 - sum(_pearson(ys[i], yt[i]) for i in range(ys.shape[0])) / ys.shape[0]
    intra = 1 - sum(_pearson(ys[:, j], yt[:, j]) for j in range(ys.shape[1])) / ys.shape[1]
    return tau ** 2 * (beta * inter + gamma * intra)


def dkd(s, t, targets, alpha, beta, temperature, standardize=False):
    total = 0
    for i, T in enumerate(_temperatures(s, t, temperature)):
        zs, zt = (_zscore(s[i]), _zscore(t[i])) if standardize else (s[i], t[i])
        y = int(targets[i])
        ps, pt = torch.softmax(zs / T, 0), torch.softmax(zt / T, 0)
        bs = torch.stack([ps[y], ps.sum() - ps[y]])
        bt = torch.stack([pt[y], pt.sum() - pt[y]])
        mask = torch.zeros_like(zs)
        mask[y] = 1000.0
        ns, nt = torch.softmax(zs / T - mask, 0), torch.softmax(zt / T - mask, 0)
        keep = [j for j in range(len(zs)) if j != y]
        total = total + T ** 2 * (alpha * _kl(bt, bs) + beta * _kl(nt[keep], ns[keep]))
    return total / s.shape[0]
