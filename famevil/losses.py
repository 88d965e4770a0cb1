"""The losses the tasks are built from: contrastive InfoNCE and the soft cross-entropy of distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row against its diagonal: query i's positive is candidate i."""
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def symmetric_info_nce(logits: torch.Tensor) -> torch.Tensor:
    return (info_nce(logits) + info_nce(logits.T)) / 2


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) over the last dimension at a temperature, times T squared (so that the
    gradient's size does not change with T), averaged over rows."""
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2
