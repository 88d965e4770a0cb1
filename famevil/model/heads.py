"""Small modules that tasks put on top of the towers."""

from __future__ import annotations

import math

import torch
from torch import nn

CLIP_INITIAL_LOG_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature


class Temperature(nn.Module):
    """A learnable logit scale, stored as its log like CLIP's."""

    def __init__(self, log_scale: float = CLIP_INITIAL_LOG_SCALE):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(log_scale))

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp()
