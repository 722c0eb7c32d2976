"""What a float16 teacher cache changes: each plugin loss and its student gradient, float32 vs float16-rounded
teacher logits.

A cache written with ``cache-teacher --dtype float16`` stores each teacher logit rounded to float16 and the run
reads it back as float32 (``CachedTeacher`` casts to the default dtype). So a run with such a cache trains on
``v16 = v.half().float()`` in place of ``v``. This script measures, per batch of 64, the relative difference of
the loss value ``|L(s, v16) - L(s, v)| / |L(s, v)|`` and of the gradient with respect to the student logits
``||dL/ds(v16) - dL/ds(v)|| / ||dL/ds(v)||`` (Frobenius norm over the batch; the gradient of the student's
parameters is this one pushed through the network, linear in it), for each plugin loss at the CIFAR-100
configs' settings (``configs/cifar100/*/resnet8x4_from_resnet32x4.yaml``). As a yardstick it also gives float32's
own error on the same computation (float32 logits and loss vs the float64 computation on the same values).

Teacher logits (``--source``):

* ``drawn`` (default): drawn to look like a trained CIFAR-100 teacher's (resnet32x4, about 79 % top-1): 100
  classes, background logits N(0, 2^2), the predicted class (the label in 79 % of the samples, another class
  otherwise) at U(10, 20), one confusable class at U(4, 10): max logit 10-20, max softmax probability about
  0.99 on average, as a trained teacher on its training images.
* ``checkpoint``: the logits of a trained model on images of a CIFAR-100-format folder, e.g. the
  ``cifar_resnet20`` teacher trained by ``benchmarks/synthetic_cifar100.py`` (``--teacher_ckpt``, ``--model``,
  ``--data_root``; training split, no augmentation, eval mode).

Student logits: 0.5 x the teacher's plus N(0, 2^2) noise (a student part-way through training); the student
only sets where the gradient is taken, float16 rounding touches the teacher side alone.

    python benchmarks/cache_dtype.py --batches 200
    python benchmarks/cache_dtype.py --source checkpoint --teacher_ckpt /tmp/synth/ckpt/teacher_resnet20.pt \\
        --model cifar_resnet20 --data_root /tmp/synth/data
"""
import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def drawn_logits(n: int, num_classes: int, generator):
    import torch
    logits = torch.randn(n, num_classes, generator=generator) * 2.0
    labels = torch.randint(num_classes, (n,), generator=generator)
    correct = torch.rand(n, generator=generator) < 0.79
    other = (labels + torch.randint(1, num_classes, (n,), generator=generator)) % num_classes
    top = torch.where(correct, labels, other)
    confusable = (top + torch.randint(1, num_classes, (n,), generator=generator)) % num_classes
    rows = torch.arange(n)
    logits[rows, confusable] = 4 + 6 * torch.rand(n, generator=generator)
    logits[rows, top] = 10 + 10 * torch.rand(n, generator=generator)
    return logits, labels


def checkpoint_logits(args):
    import pickle
    import numpy as np
    import torch
    from ttm_torchdistill.models import cifar_resnet  # noqa: F401 (registers the CIFAR models)
    from torchdistill.models.registry import get_model
    with open(Path(args.data_root) / 'cifar-100-python' / 'train', 'rb') as fp:
        entry = pickle.load(fp, encoding='latin1')
    images = torch.from_numpy(np.asarray(entry['data'], dtype=np.uint8).reshape(-1, 3, 32, 32)).float() / 255
    mean = torch.tensor([0.5071, 0.4867, 0.4408]).view(1, 3, 1, 1)
    std = torch.tensor([0.2675, 0.2565, 0.2761]).view(1, 3, 1, 1)
    images = (images - mean) / std
    model = get_model(args.model, num_classes=100)
    state = torch.load(args.teacher_ckpt, map_location='cpu', weights_only=True)
    model.load_state_dict(state['model'] if isinstance(state, dict) and 'model' in state else state)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(images[i:i + 500]) for i in range(0, len(images), 500)])
    return logits, torch.as_tensor(entry['fine_labels'])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--source', choices=('drawn', 'checkpoint'), default='drawn')
    parser.add_argument('--batches', type=int, default=200, help='batches of --batch_size (drawn logits)')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--teacher_ckpt', help='checkpoint of a trained model (--source checkpoint)')
    parser.add_argument('--model', default='cifar_resnet20', help='registry key of that model')
    parser.add_argument('--data_root', help='folder holding cifar-100-python/ (--source checkpoint)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    import torch
    from ttm_torchdistill import functional as F

    losses = [
        ('WTTM, T = 10 (gamma 0.1)', '`wttm/` config', lambda s, t, y: F.wttm_loss(s, t, temperature=10.0)),
        ('TTM, T = 10 (gamma 0.1)', '`ttm/` config', lambda s, t, y: F.ttm_loss(s, t, temperature=10.0)),
        ('DIST, tau = 4, beta = gamma = 1', '`dist/` config', lambda s, t, y: F.dist_loss(s, t, beta=1.0, gamma=1.0,
                                                                                 temperature=4.0)),
        ('DIST, tau = 1, beta = gamma = 2', 'DIST paper (ImageNet)',
         lambda s, t, y: F.dist_loss(s, t, beta=2.0, gamma=2.0, temperature=1.0)),
        ('KD, T = 4', '`kd/` config', lambda s, t, y: F.kd_loss(s, t, temperature=4.0)),
        ('ATKD, max-logit T, standardised', '`atkd/` config',
         lambda s, t, y: F.kd_loss(s, t, temperature='max_logit', standardize=True)),
        ('DKD, T = 4, alpha 1, beta 8', '`dkd/` config',
         lambda s, t, y: F.dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=4.0)),
    ]

    generator = torch.Generator().manual_seed(args.seed)
    if args.source == 'drawn':
        teacher, labels = drawn_logits(args.batches * args.batch_size, 100, generator)
    else:
        if not (args.teacher_ckpt and args.data_root):
            parser.error('--source checkpoint needs --teacher_ckpt and --data_root')
        teacher, labels = checkpoint_logits(args)
    n = teacher.shape[0] // args.batch_size * args.batch_size
    teacher, labels = teacher[:n].double(), labels[:n]
    student = 0.5 * teacher + 2.0 * torch.randn(teacher.shape, generator=generator, dtype=torch.float64)
    top_prob = torch.softmax(teacher, dim=1).max(dim=1).values
    rounding = (teacher.float().half().float() - teacher.float()).abs()
    print(f'teacher logits ({args.source}): {n} samples in batches of {args.batch_size}; max logit median '
          f'{teacher.max(dim=1).values.median():.1f} (5-95 %: {teacher.max(dim=1).values.quantile(0.05):.1f}-'
          f'{teacher.max(dim=1).values.quantile(0.95):.1f}), row std median {teacher.std(dim=1).median():.2f}, '
          f'max softmax probability mean {top_prob.mean():.3f}, agreement with labels '
          f'{(teacher.argmax(dim=1) == labels).double().mean() * 100:.1f} %; float16 rounding of the logits: '
          f'max {rounding.max():.2e}, mean {rounding.mean():.2e}\n')

    def value_and_grad(fn, s, t, y):
        s = s.clone().requires_grad_(True)
        loss = fn(s, t, y)
        grad, = torch.autograd.grad(loss, s)
        return loss.detach(), grad

    def rel(a, b):
        return (float((a - b).norm() / b.norm()) if b.norm() > 0 else 0.0)

    print('| loss | settings from | loss rel. diff, median | max | student-gradient rel. diff, median | max '
          '| yardstick: float32 vs float64 (gradient, median) | yardstick: student logits bf16-rounded (gradient, '
          'median) |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    for name, where, fn in losses:
        loss_diffs, grad_diffs, own, bf16 = [], [], [], []
        for begin in range(0, n, args.batch_size):
            s64, t64 = student[begin:begin + args.batch_size], teacher[begin:begin + args.batch_size]
            y = labels[begin:begin + args.batch_size]
            s32, t32 = s64.float(), t64.float()
            t16 = t32.half().float()  # what CachedTeacher returns from a float16 cache
            loss32, grad32 = value_and_grad(fn, s32, t32, y)
            loss16, grad16 = value_and_grad(fn, s32, t16, y)
            loss64, grad64 = value_and_grad(fn, s32.double(), t32.double(), y)
            loss_diffs.append(rel(loss16, loss32))
            grad_diffs.append(rel(grad16, grad32))
            own.append(rel(grad32.double(), grad64))
            # what bf16 autocast does to the student's side (its logits come out of a bf16 linear layer)
            bf16.append(rel(value_and_grad(fn, s32.bfloat16().float(), t32, y)[1], grad32))
        print(f'| {name} | {where} | {statistics.median(loss_diffs):.1e} | {max(loss_diffs):.1e} '
              f'| {statistics.median(grad_diffs):.1e} | {max(grad_diffs):.1e} | {statistics.median(own):.1e} '
              f'| {statistics.median(bf16):.1e} |')
    print('\ncommand: python benchmarks/cache_dtype.py ' + ' '.join(sys.argv[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
