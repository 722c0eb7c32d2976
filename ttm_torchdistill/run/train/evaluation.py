"""Top-1/top-5 accuracy of a model over a loader, counted on the device and reduced over ranks."""
from typing import Tuple

import torch
from torch import nn

from ..machine.context import DistContext
from .step import mark_batch_static


@torch.no_grad()
def evaluate(model: nn.Module, data_loader, ctx: DistContext, static_batches: bool = False) -> Tuple[float, float, int]:
    """Top-1/top-5 accuracy (%) of ``model`` over ``data_loader``, summed over all ranks.

    :param static_batches: mark each batch's size static for a compiled model (:func:`.step.mark_batch_static`).
    :return: ``(top1, top5, number of samples seen)``.
    """
    was_training = model.training
    model.eval()
    # hits counted on the device and read once at the end (no synchronisation per batch); sizes known on the host
    hits1 = torch.zeros((), dtype=torch.float64, device=ctx.device)
    hits5 = torch.zeros((), dtype=torch.float64, device=ctx.device)
    seen = 0
    non_blocking = ctx.device.type == 'cuda'  # from pinned host memory only
    for batch in data_loader:
        images, targets = batch[0], batch[1]
        images = images.to(ctx.device, non_blocking=non_blocking)
        targets = targets.to(ctx.device, non_blocking=non_blocking)
        if static_batches:
            mark_batch_static(images)
        outputs = model(images)
        k = min(5, outputs.shape[1])
        hits = outputs.topk(k, dim=1).indices.eq(targets.view(-1, 1))
        hits1 += hits[:, :1].sum()
        hits5 += hits.sum()
        seen += targets.shape[0]
    counts = torch.stack([hits1, hits5, hits1.new_tensor(float(seen))])
    if ctx.distributed:
        torch.distributed.all_reduce(counts)  # on the device: NCCL reduces CUDA tensors, gloo CPU ones
    correct1, correct5, seen = counts.tolist()
    model.train(was_training)
    if seen == 0:
        return 0.0, 0.0, 0
    return 100.0 * correct1 / seen, 100.0 * correct5 / seen, int(seen)
