"""The losses the tasks are built from: contrastive InfoNCE over the global batch, and the soft
cross-entropy of distillation.

Under several processes a contrastive loss is taken over the global batch, as the authors' code does:
each process scores its own queries against every process's candidates (`gather_batch`), and the
gradient of every process's loss reaches the candidates it read, so that the processes' averaged
gradients equal one process's gradient on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _processes() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class _GatherWithGradient(torch.autograd.Function):
    """all_gather forward; backward sums the gradient every process computed for the gathered rows and
    hands each process the part for its own rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return _all_gather(tensor)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        gradient = gradient.contiguous()
        dist.all_reduce(gradient)
        rows = gradient.shape[0] // dist.get_world_size()
        start = dist.get_rank() * rows
        return gradient[start : start + rows]


def gather_batch(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's rows of `tensor` in process order (every process holds the same number; its own
    rows are `own_rows`); with one process, the tensor itself."""
    if _processes() == 1:
        return tensor
    return _GatherWithGradient.apply(tensor) if tensor.requires_grad else _all_gather(tensor)


def own_rows(count: int, device: torch.device) -> torch.Tensor:
    """The columns of the global batch that hold this process's `count` samples."""
    offset = dist.get_rank() * count if _processes() > 1 else 0
    return torch.arange(offset, offset + count, device=device)


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each query (a row: this process's samples) against the global batch's
    candidates (the columns), its positive being its own sample's candidate."""
    return F.cross_entropy(logits, own_rows(logits.shape[0], logits.device))


def symmetric_info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Both directions of a square (images x texts) similarity matrix, as CLIP trains."""
    return (info_nce(logits) + info_nce(logits.T)) / 2


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) over the last dimension at a temperature, times T squared (so that the
    gradient's size does not change with T), averaged over rows."""
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2
