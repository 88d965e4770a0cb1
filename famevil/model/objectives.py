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


def caption_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over real tokens only: padding neither trains nor counts."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_TOKEN)


def xmr_loss(model: FameVil, batch: Batch) -> torch.Tensor:
    images = model.encode_image(batch["images"], "xmr")
    texts = model.encode_text(batch["tokens"], "xmr")
    return symmetric_info_nce(model.backbone.logit_scale.exp() * images @ texts.T)


def tgir_loss(model: FameVil, batch: Batch) -> torch.Tensor:
    queries = F.normalize(model.composed(batch["images"], batch["tokens"], "tgir"), dim=-1)
    targets = model.encode_image(batch["targets"], "tgir")
    return info_nce(model.head("tgir")() * queries @ targets.T)


def scr_loss(model: FameVil, batch: Batch) -> torch.Tensor:
    return F.cross_entropy(model.head("scr")(model.composed(batch["images"], batch["tokens"], "scr")), batch["labels"])


def fic_loss(model: FameVil, batch: Batch) -> torch.Tensor:
    tokens = batch["tokens"]
    return caption_cross_entropy(model.caption_logits(batch["images"], tokens[:, :-1]), tokens[:, 1:])
