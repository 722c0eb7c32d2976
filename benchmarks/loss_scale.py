"""How large each distillation term is next to cross-entropy, at the papers' settings and with 'max_logit'.

A weight copied from a paper fits that paper's temperature only: every loss here changes scale with the
temperature (TTM/WTTM have no T^2 factor; DIST, KD/ATKD and DKD multiply by T^2). This script measures the terms on
synthetic CIFAR-100-like logits and derives, for the plugin's own combinations, the weight that keeps the term at
the paper setting's ratio to the CE term:

    w_new = w_paper * L_paper / L_new      (so that w_new * L_new / CE == w_paper * L_paper / CE)

Logits (100 classes, 2048 samples, 5 seeds): a confident teacher (class-wise N(0, 2) plus a +10 margin on the label;
one sample in five also has a +6 runner-up class, the "dark knowledge"), and a student at three stages of training:
``start`` (uninformed, N(0, 0.5)), ``mid`` (0.5 * teacher + N(0, 1.5)) and ``late`` (0.8 * teacher + N(0, 1)).
These are stand-ins: re-run the measurement on logits of your own teacher and student to refine a weight.

    python benchmarks/loss_scale.py            # the tables of docs/losses.md
    python benchmarks/loss_scale.py --markdown
"""
import argparse
import math
import statistics
from typing import Callable, Dict, List, Tuple

import torch
from torch.nn import functional as torch_F

import ttm_torchdistill.functional as F

NUM_CLASSES = 100
NUM_SAMPLES = 2048
SEEDS = (0, 1, 2, 3, 4)
STAGES = ('start', 'mid', 'late')
TEMPERATURE_SWEEP = (1.0, 2.0, 4.0, 8.0, 10.0, 16.0)

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object], torch.Tensor]

#: name -> (loss of (student, teacher, labels, temperature), paper temperature, paper weight, paper CE weight, source)
LOSSES: Dict[str, Tuple[Loss, object, float, float, str]] = {
    'TTMLoss': (lambda s, t, y, T: F.ttm_loss(s, t, temperature=T), 10.0, 100.0, 1.0,
                'TTM Table 8, resnet32x4 -> resnet8x4 (gamma 0.1, beta 100)'),
    'WTTMLoss': (lambda s, t, y, T: F.wttm_loss(s, t, temperature=T), 10.0, 3.0, 1.0,
                 'TTM Table 8, resnet32x4 -> resnet8x4 (gamma 0.1, beta 3)'),
    'ATDISTLoss': (lambda s, t, y, T: F.dist_loss(s, t, temperature=T), 4.0, 2.0, 1.0,
                   'DIST dist_cifar.yaml (tau 4, weight 2)'),
    'ATKDLoss': (lambda s, t, y, T: F.kd_loss(s, t, temperature=T, standardize=True), 'max_logit', 9.0, 0.1,
                 'ATKD README (max_logit, standardised, weight 9 with CE 0.1)'),
    'DKDLoss': (lambda s, t, y, T: F.dkd_loss(s, t, y, temperature=T, standardize=T == 'max_logit', epoch=100,
                                              warmup_epochs=20), 4.0, 1.0, 1.0,
                'DKD, resnet32x4 -> resnet8x4 (T 4, alpha 1, beta 8, weight 1)'),
}


def logits(seed: int, stage: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(student, teacher, labels)`` of one synthetic batch (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=g)
    teacher = 2.0 * torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=g)
    teacher[torch.arange(NUM_SAMPLES), labels] += 10.0
    runner_up = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=g)
    has_runner_up = torch.rand(NUM_SAMPLES, generator=g) < 0.2
    teacher[torch.arange(NUM_SAMPLES)[has_runner_up], runner_up[has_runner_up]] += 6.0
    noise = torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=g)
    student = {'start': 0.5 * noise, 'mid': 0.5 * teacher + 1.5 * noise, 'late': 0.8 * teacher + noise}[stage]
    return student.double(), teacher.double(), labels


def measure() -> Dict[str, Dict[str, Dict[object, float]]]:
    """``{stage: {'CE': {None: value}, loss: {temperature: value}}}``, means over the seeds."""
    temperatures = list(TEMPERATURE_SWEEP) + ['max_logit']
    result: Dict[str, Dict[str, Dict[object, float]]] = {}
    for stage in STAGES:
        sums: Dict[str, Dict[object, List[float]]] = {'CE': {None: []}}
        for seed in SEEDS:
            s, t, y = logits(seed, stage)
            sums['CE'][None].append(torch_F.cross_entropy(s, y).item())
            for name, (loss, *_rest) in LOSSES.items():
                for T in temperatures:
                    sums.setdefault(name, {}).setdefault(T, []).append(loss(s, t, y, T).item())
        result[stage] = {name: {T: statistics.fmean(v) for T, v in by_t.items()} for name, by_t in sums.items()}
    return result


def _significant(x: float, digits: int = 2) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def weight_rows(values) -> List[Tuple[str, str, str, str, str, str]]:
    """For each loss: the paper setting's term/CE ratio and the weight for the other temperature choice."""
    rows = []
    for name, (_loss, paper_t, paper_w, ce_w, source) in LOSSES.items():
        other_t = 4.0 if paper_t == 'max_logit' else 'max_logit'
        ratios, weights = [], []
        for stage in STAGES:
            ce = values[stage]['CE'][None] * ce_w
            ratios.append(paper_w * values[stage][name][paper_t] / ce)
            weights.append(paper_w * values[stage][name][paper_t] / values[stage][name][other_t])
        copied = [paper_w * values[stage][name][other_t] / (values[stage]['CE'][None] * ce_w) for stage in STAGES]
        rows.append((name, f'{paper_t} (w {paper_w:g}; {source})', ' / '.join(f'{r:.2g}' for r in ratios),
                     f'{other_t}: ' + ' / '.join(f'{r:.2g}' for r in copied),
                     ' / '.join(f'{w:.3g}' for w in weights), f'{_significant(statistics.median(weights)):g}'))
    return rows


def sweep_rows(values, stage: str = 'mid') -> List[List[str]]:
    """Each loss at each temperature, relative to its value at the paper temperature (``stage`` student)."""
    rows = []
    for name, (_loss, paper_t, *_rest) in LOSSES.items():
        ref = values[stage][name][paper_t]
        rows.append([name] + [f'{values[stage][name][T] / ref:.2g}' for T in list(TEMPERATURE_SWEEP) + ['max_logit']])
    return rows


def _table(header: List[str], rows) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--markdown', action='store_true', help='print markdown tables (the default prints them too)')
    parser.parse_args(argv)
    torch.set_num_threads(1)
    values = measure()
    print('CE of the student (start / mid / late): '
          + ' / '.join(f'{values[s]["CE"][None]:.3f}' for s in STAGES) + '\n')
    print(_table(['loss', 'paper setting', 'weighted term / weighted CE at the paper setting (start / mid / late)',
                  'same weight, other temperature: term / CE', 'weight keeping the paper ratio (start / mid / late)',
                  'starting weight (median)'], weight_rows(values)))
    print('\nValue at each temperature relative to the paper temperature (mid-training student):\n')
    print(_table(['loss'] + [f'T={T:g}' for T in TEMPERATURE_SWEEP] + ['max_logit'], sweep_rows(values)))


if __name__ == '__main__':
    main()
