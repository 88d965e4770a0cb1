"""Small modules that tasks put on top of the towers."""

from __future__ import annotations

import math

import torch
from torch import nn

# The authors scale each L2-normalised embedding by a learnt s = 4, so similarities start at 16 x cosine
# (CLIP's own logit scale starts at 1 / 0.07 = 14.3 and ends near 100, which makes in-batch
# distributions, and the soft labels distilled from them, nearly one-hot).
INITIAL_SCALE = 16.0


class Temperature(nn.Module):
    """A learnable logit scale, stored as its log like CLIP's (trained at the adapters' learning rate)."""

    def __init__(self, log_scale: float = math.log(INITIAL_SCALE)):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(log_scale))

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp()
