"""What a teacher hands its student, per task: the per-sample signals `famevil dump` stores, and the
distillation loss that compares a student's logits with the teacher's, rebuilt from those signals
for whatever batch the student draws.

XMR and TGIR store embeddings (and the teacher's temperature), not similarity rows: a similarity
distribution depends on the batch, and the student's batches are not the teacher's. SCR stores class
logits. FIC stores, per position, the teacher's top-k next-token log-probabilities and their ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from famevil.model.objectives import caption_targets

if TYPE_CHECKING:  # the model imports the task registry, which imports these functions
    from famevil.model.fame_vil import FameVil

Batch = dict[str, torch.Tensor]
Signals = dict[str, torch.Tensor]  # per sample: every tensor's first dimension is the batch


def _scale(value: torch.Tensor, batch: int) -> torch.Tensor:
    return value.detach().float().reshape(1).expand(batch)


def xmr_signals(model: FameVil, batch: Batch, top_k: int) -> Signals:
    images, texts = model.encode_image(batch["images"], "xmr"), model.encode_text(batch["tokens"], "xmr")
    return {"image": images.half(), "text": texts.half(), "scale": _scale(model.backbone.logit_scale.exp(), len(images))}


def tgir_signals(model: FameVil, batch: Batch, top_k: int) -> Signals:
    queries = F.normalize(model.composed(batch["images"], batch["tokens"], "tgir"), dim=-1)
    targets = model.encode_image(batch["targets"], "tgir")
    return {"query": queries.half(), "target": targets.half(), "scale": _scale(model.head("tgir")(), len(queries))}


def scr_signals(model: FameVil, batch: Batch, top_k: int) -> Signals:
    return {"logits": model.head("scr")(model.composed(batch["images"], batch["tokens"], "scr")).half()}


def fic_signals(model: FameVil, batch: Batch, top_k: int) -> Signals:
    """Top-k log-probabilities and ids at each position whose next token is real, in rows padded to
    the tokenizer's context (other positions stay zero and are never read: the student's own tokens
    say which positions are real)."""
    inputs, real, _ = caption_targets(batch["tokens"])
    logprobs, ids = model.caption_logits(batch["images"], inputs, where=real).log_softmax(dim=-1).topk(top_k, dim=-1)
    positions = model.backbone.context_length - 1
    stored_logprobs = torch.zeros(len(inputs), positions, top_k, dtype=torch.half, device=inputs.device)
    stored_ids = torch.zeros(len(inputs), positions, top_k, dtype=torch.int32, device=inputs.device)
    stored_logprobs[:, : inputs.shape[1]][real] = logprobs.half()
    stored_ids[:, : inputs.shape[1]][real] = ids.int()
    return {"logprobs": stored_logprobs, "ids": stored_ids}


def xmr_teacher_logits(signals: Signals) -> torch.Tensor:
    return signals["scale"][0] * signals["image"].float() @ signals["text"].float().T


def tgir_teacher_logits(signals: Signals) -> torch.Tensor:
    return signals["scale"][0] * signals["query"].float() @ signals["target"].float().T


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) over the last dimension at a temperature, times T squared (so that the
    gradient's size does not change with T), averaged over rows."""
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def xmr_distillation(student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
    """Image-to-text and text-to-image in-batch similarity distributions."""
    teacher = xmr_teacher_logits(signals)
    return (soft_cross_entropy(student_logits, teacher, temperature) + soft_cross_entropy(student_logits.T, teacher.T, temperature)) / 2


def tgir_distillation(student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
    """Query-to-target in-batch similarity distributions."""
    return soft_cross_entropy(student_logits, tgir_teacher_logits(signals), temperature)


def scr_distillation(student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
    return soft_cross_entropy(student_logits, signals["logits"].float(), temperature)


def fic_distillation(student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
    """Per-token soft labels over the teacher's top-k: the teacher's distribution renormalised on its
    top k tokens, against the student's full-vocabulary distribution at those tokens (student logits
    packed at the positions whose next token is real, as famevil.model.objectives.fic_logits gives)."""
    inputs, real, _ = caption_targets(batch["tokens"])
    length = inputs.shape[1]
    ids = signals["ids"][:, :length][real].long()
    teacher = F.softmax(signals["logprobs"][:, :length][real].float() / temperature, dim=-1)
    # The student's FIC logits are log-probabilities already; at temperature 1 they need no second softmax.
    student = (student_logits if temperature == 1 else F.log_softmax(student_logits / temperature, dim=-1)).gather(1, ids)
    return (teacher * (teacher.clamp_min(1e-12).log() - student)).sum(dim=-1).mean() * temperature**2
