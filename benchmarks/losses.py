"""Forward+backward time and memory saved for backward: plugin losses vs the authors' formulation.

The "authors'" column re-states, from the papers' pseudo-code and the behaviour of the authors' code
(softmax, pow, renormalise, kl_div, the -1000 mask of DKD), the straightforward formulation; both are
measured in the same process on the same inputs, float32 on the CPU.

    python benchmarks/losses.py [--repeats 50] [--sizes 256x100,256x1000,1024x1000]
"""
import argparse
import math
import statistics
import time

import torch
from torch.nn import functional as torch_F

import ttm_torchdistill.functional as F


# --- the straightforward formulations --------------------------------------------------------------------

def authors_ttm(s, t, gamma, weighted):
    log_q = torch_F.log_softmax(s, dim=1)
    p_t = torch.pow(torch_F.softmax(t, dim=1), gamma)
    norm = p_t.sum(dim=1)
    p_t = p_t / norm.unsqueeze(1)
    kl = torch_F.kl_div(log_q, p_t, reduction='none').sum(dim=1)
    return (norm * kl).mean() if weighted else kl.mean()


def authors_dist(s, t, tau, beta=1.0, gamma=1.0, eps=1e-8):
    def pearson(a, b):
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)
    ys, yt = (s / tau).softmax(dim=1), (t / tau).softmax(dim=1)
    inter = 1 - pearson(ys, yt).mean()
    intra = 1 - pearson(ys.transpose(0, 1), yt.transpose(0, 1)).mean()
    return tau ** 2 * (beta * inter + gamma * intra)


def _normalize(x):
    return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-7)


def authors_atkd(s, t):
    s, t = _normalize(s), _normalize(t)
    with torch.no_grad():
        T = torch.max(torch.maximum(s.abs(), t.abs()), dim=1, keepdim=True)[0] * (1 + math.sqrt(3)) / 2
    kl = torch_F.kl_div(torch_F.log_softmax(s / T, 1), torch_F.softmax(t / T, 1), reduction='none')
    return (kl * T ** 2).sum() / s.shape[0]


def authors_dkd(s, t, y, alpha=1.0, beta=8.0, T=4.0):
    gt = torch.zeros_like(s).scatter_(1, y.unsqueeze(1), 1).bool()
    ps, pt = torch_F.softmax(s / T, 1), torch_F.softmax(t / T, 1)

    def split(p):
        return torch.cat([(p * gt).sum(1, keepdim=True), (p * ~gt).sum(1, keepdim=True)], dim=1)
    tckd = torch_F.kl_div(torch.log(split(ps)), split(pt), reduction='sum') * T ** 2 / s.shape[0]
    nckd = torch_F.kl_div(torch_F.log_softmax(s / T - 1000.0 * gt, 1), torch_F.softmax(t / T - 1000.0 * gt, 1),
                          reduction='sum') * T ** 2 / s.shape[0]
    return alpha * tckd + beta * nckd


CASES = {
    'TTM (gamma 0.1)': (lambda s, t, y: F.ttm_loss(s, t, temperature=10.0),
                        lambda s, t, y: authors_ttm(s, t, 0.1, weighted=False)),
    'WTTM (gamma 0.1)': (lambda s, t, y: F.wttm_loss(s, t, temperature=10.0),
                         lambda s, t, y: authors_ttm(s, t, 0.1, weighted=True)),
    'DIST (tau 4)': (lambda s, t, y: F.dist_loss(s, t, temperature=4.0), lambda s, t, y: authors_dist(s, t, 4.0)),
    'ATKD (max_logit)': (lambda s, t, y: F.kd_loss(s, t, temperature='max_logit', standardize=True),
                         lambda s, t, y: authors_atkd(s, t)),
    'DKD (T 4)': (lambda s, t, y: F.dkd_loss(s, t, y, temperature=4.0), lambda s, t, y: authors_dkd(s, t, y)),
}


def _saved_bytes(fn, s, t, y):
    """Bytes of distinct storages autograd keeps for the backward pass."""
    storages = {}

    def pack(x):
        storages[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn(s, t, y)
    return sum(storages.values())


def _median_ms(fns, s, t, y, repeats):
    """Median forward+backward time of each function, calls interleaved so drifts in machine load hit all alike."""
    times = [[] for _ in fns]
    for i in range(repeats + 5):
        for fn, bucket in zip(fns, times):
            s.grad = None
            start = time.perf_counter()
            fn(s, t, y).backward()
            if i >= 5:  # warm-up
                bucket.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(bucket) for bucket in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=50)
    parser.add_argument('--sizes', default='256x100,256x1000,1024x1000')
    args = parser.parse_args()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, float32 CPU, '
          f'median of {args.repeats} forward+backward passes\n')
    print('| loss | N x C | plugin ms | authors\' ms | speed-up | plugin saved KiB | authors\' saved KiB |')
    print('|---|---|---|---|---|---|---|')
    for size in args.sizes.split(','):
        n, c = map(int, size.split('x'))
        g = torch.Generator().manual_seed(0)
        s = (torch.randn(n, c, generator=g) * 4).requires_grad_()
        t = torch.randn(n, c, generator=g) * 4
        y = torch.randint(0, c, (n,), generator=g)
        for name, (plugin, authors) in CASES.items():
            torch.testing.assert_close(plugin(s, t, y), authors(s, t, y), rtol=1e-4, atol=1e-5)
            ours, theirs = _median_ms([plugin, authors], s, t, y, args.repeats)
            print(f'| {name} | {n} x {c} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x | '
                  f'{_saved_bytes(plugin, s, t, y) / 1024:.0f} | {_saved_bytes(authors, s, t, y) / 1024:.0f} |')


if __name__ == '__main__':
    main()
