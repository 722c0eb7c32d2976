"""Slow float64 references of CRD and ITRD, written from the papers and the authors' code with Python loops.

Independent of ttm_torchdistill.feature_functional and of torchdistill's CRDLoss: scalar loops over samples,
negatives and feature columns, explicit square roots and logs.

* CRD: Tian, Krishnan & Isola, ICLR 2020, Eq. 18 (NCE with a memory bank), as RepDistiller's crd/memory.py and
  crd/criterion.py compute it: scores exp(<m_j, v_i> / T) against the other model's memory, divided by a constant
  Z = mean(scores of the first batch) * N, the NCE loss with noise m/N, and the momentum update of the memory rows
  of the batch followed by L2 normalisation.
* ITRD: Miles et al., BMVC 2022, as https://github.com/roymiles/ITRD distiller_zoo/IT.py computes it.
"""
import math

import torch


def _dot(a, b):
    return sum(a[k] * b[k] for k in range(len(a)))


def _normalize(v):
    return v / torch.sqrt(sum(v[k] * v[k] for k in range(len(v))))


def crd_scores(anchor, memory, contrast_idx, temperature):
    """exp(<memory[contrast_idx[i, j]], anchor[i]> / T) as a nested list [B][K + 1] of 0-dim tensors."""
    return [[torch.exp(_dot(memory[int(contrast_idx[i][j])], anchor[i]) / temperature)
             for j in range(contrast_idx.shape[1])] for i in range(anchor.shape[0])]


def crd_normaliser(scores, num_data):
    """Z = mean of every score of the batch times the memory size; a constant (no gradient)."""
    flat = [s.detach() for row in scores for s in row]
    return float(sum(flat) / len(flat)) * num_data


def nce_loss(scores, z, num_data, eps=1e-7):
    """-(1/B) sum_i [log P_i0 / (P_i0 + K/N + eps) + sum_{j>0} log (K/N) / (P_ij + K/N + eps)], P = score / Z."""
    batch = len(scores)
    k = len(scores[0]) - 1
    noise = k / num_data
    total = 0
    for row in scores:
        p = [s / z for s in row]
        total = total + torch.log(p[0] / (p[0] + noise + eps))
        for j in range(1, k + 1):
            total = total + math.log(noise) - torch.log(p[j] + noise + eps)
    return -total / batch


def crd(student, teacher, memory_student, memory_teacher, contrast_idx, temperature, num_data, z_student=None,
        z_teacher=None, eps=1e-7):
    """(loss, z_student, z_teacher): the student anchor against the teacher memory plus the teacher anchor against
    the student memory."""
    scores_s = crd_scores(student, memory_teacher, contrast_idx, temperature)
    scores_t = crd_scores(teacher, memory_student, contrast_idx, temperature)
    z_student = crd_normaliser(scores_s, num_data) if z_student is None else z_student
    z_teacher = crd_normaliser(scores_t, num_data) if z_teacher is None else z_teacher
    loss = nce_loss(scores_s, z_student, num_data, eps) + nce_loss(scores_t, z_teacher, num_data, eps)
    return loss, z_student, z_teacher


def crd_memory_update(memory, embeddings, indices, momentum):
    """Row idx[i] <- normalise(momentum * row + (1 - momentum) * v_i); returns a new bank."""
    out = memory.clone()
    for i, row in enumerate(indices):
        out[int(row)] = _normalize(momentum * memory[int(row)] + (1 - momentum) * embeddings[i].detach())
    return out


def _column_stats(x, k):
    n = x.shape[0]
    mean = sum(x[b][k] for b in range(n)) / n
    std = torch.sqrt(sum((x[b][k] - mean) ** 2 for b in range(n)) / (n - 1))
    return mean, std


def itrd_correlation(student, teacher, alpha, eps=0.0):
    n, d = student.shape
    total = 0
    for k in range(d):
        ms, ss = _column_stats(student, k)
        mt, st = _column_stats(teacher, k)
        c = sum((student[b][k] - ms) / (ss + eps) * (teacher[b][k] - mt) / (st + eps) for b in range(n)) / n
        total = total + torch.abs(1 - c) ** (2 * alpha)
    return torch.log(total) / math.log(2)


def itrd_mutual(student, teacher):
    n = student.shape[0]

    def unit(x):
        return [x[b] / torch.clamp(torch.sqrt(_dot(x[b], x[b])), min=1e-12) for b in range(n)]

    s, t = unit(student), unit(teacher)
    g_s = [[_dot(s[a], s[b]) for b in range(n)] for a in range(n)]
    g_st = [[g_s[a][b] * _dot(t[a], t[b]) for b in range(n)] for a in range(n)]
    tr_s = sum(g_s[a][a] for a in range(n))
    tr_st = sum(g_st[a][a] for a in range(n))
    return sum((g_s[a][b] / tr_s) ** 2 - (g_st[a][b] / tr_st) ** 2 for a in range(n) for b in range(n))
