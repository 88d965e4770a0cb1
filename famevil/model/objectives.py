"""Each task's training loss, given the model and a batch of tensors.

Batches are dicts: images (B, 3, H, W), tokens (B, L) from open_clip's tokenizer, and per task
labels (SCR, class ids) or reference and target images (TGIR: `images` is the reference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # the model imports the task registry, which imports these objectives
    from famevil.model.fame_vil import FameVil

Batch = dict[str, torch.Tensor]
PAD_TOKEN = 0  # open_clip's tokenizer pads with 0; start and end of text are its two largest ids


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row against its diagonal: query i's positive is candidate i."""
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def symmetric_info_nce(logits: torch.Tensor) -> torch.Tensor:
    return (info_nce(logits) + info_nce(logits.T)) / 2


def caption_targets(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher forcing: the input positions (all but the last), where the next token is a real one
    (padding neither trains nor counts), and those next tokens, packed."""
    inputs, following = tokens[:, :-1], tokens[:, 1:]
    real = following != PAD_TOKEN
    return inputs, real, following[real]


# Each task in two halves: its logits (what the model computes; distillation compares these with a
# teacher's) and its loss on those logits.


def xmr_logits(model: FameVil, batch: Batch) -> torch.Tensor:
    """Image-to-text similarities, scaled by CLIP's temperature (B images x B texts)."""
    images = model.encode_image(batch["images"], "xmr")
    texts = model.encode_text(batch["tokens"], "xmr")
    return model.backbone.logit_scale.exp() * images @ texts.T


def xmr_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    return symmetric_info_nce(logits)


def tgir_logits(model: FameVil, batch: Batch) -> torch.Tensor:
    """Composed-query-to-target similarities (B queries x B targets)."""
    queries = F.normalize(model.composed(batch["images"], batch["tokens"], "tgir"), dim=-1)
    targets = model.encode_image(batch["targets"], "tgir")
    return model.head("tgir")() * queries @ targets.T


def tgir_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    return info_nce(logits)


def scr_logits(model: FameVil, batch: Batch) -> torch.Tensor:
    return model.head("scr")(model.composed(batch["images"], batch["tokens"], "scr"))


def scr_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(logits, batch["labels"])


def fic_logits(model: FameVil, batch: Batch) -> torch.Tensor:
    """Teacher-forced next-token log-probabilities at the positions whose next token is real, packed
    (N, vocabulary). Normalised once here, since the cross-entropy and the distillation term both
    read them and the vocabulary-wide softmax is the costliest step of a small model."""
    inputs, real, _ = caption_targets(batch["tokens"])
    return F.log_softmax(model.caption_logits(batch["images"], inputs, where=real), dim=-1)


def fic_loss(log_probs: torch.Tensor, batch: Batch) -> torch.Tensor:
    return F.nll_loss(log_probs, caption_targets(batch["tokens"])[2])
