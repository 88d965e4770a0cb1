"""What sits on top of the towers, one builder per task (the task registry names which)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from data_specs.errors import FamevilError

CLIP_INITIAL_LOG_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature


@dataclass(frozen=True)
class HeadSizes:
    embed_dim: int  # the projected image and text vectors
    text_width: int  # the text tower's hidden states
    vocab_size: int  # the tokenizer's vocabulary
    num_classes: int  # SCR classes; 0 if unknown


class Temperature(nn.Module):
    """A learnable logit scale, stored as its log like CLIP's."""

    def __init__(self, log_scale: float = CLIP_INITIAL_LOG_SCALE):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(log_scale))

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp()


def no_head(sizes: HeadSizes) -> None:
    """XMR uses the backbone's own projections and logit scale, as CLIP does."""
    return None


def temperature_head(sizes: HeadSizes) -> nn.Module:
    return Temperature()


def classifier_head(sizes: HeadSizes) -> nn.Module:
    if sizes.num_classes < 1:
        raise FamevilError("an SCR head needs num_classes: the size of the shards' subcategory vocabulary")
    return nn.Linear(sizes.embed_dim, sizes.num_classes)


def language_model_head(sizes: HeadSizes) -> nn.Module:
    return nn.Linear(sizes.text_width, sizes.vocab_size)  # untied from the token embedding
