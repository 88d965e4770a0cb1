"""Small modules that tasks put on top of the towers."""

from __future__ import annotations

import math

import torch
from torch import nn

from data_specs.errors import FamevilError

# The authors scale each L2-normalised embedding by a learnt s = 4, so similarities start at 16 x cosine
# (CLIP's own logit scale starts at 1 / 0.07 = 14.3 and ends near 100, which makes in-batch
# distributions, and the soft labels distilled from them, nearly one-hot).
INITIAL_SCALE = 16.0
RETRIEVAL_SCALES = ("log", "squared")


class Temperature(nn.Module):
    """A learnable logit scale, trained at the adapters' learning rate, in one of two forms.

    "log": stored as its log, like CLIP's. "squared": the authors' form, s x s with s starting at 4 (the
    one s by which they scale both sides' normalised vectors). The form decides how far the scale can
    travel: Adam moves its parameter by about the learning rate an update, so a log scale changes by a
    constant factor an update (16 x e^2 = 118 within 20k updates at 1e-4) and a squared one by a constant
    step of s (at most (4 + 2)^2 = 36 in the same updates)."""

    def __init__(self, form: str = "log"):
        super().__init__()
        if form not in RETRIEVAL_SCALES:
            raise FamevilError(f"retrieval_scale={form!r}: expected {' or '.join(RETRIEVAL_SCALES)}")
        if form == "log":
            self.log_scale = nn.Parameter(torch.tensor(math.log(INITIAL_SCALE)))
        else:
            self.root_scale = nn.Parameter(torch.tensor(math.sqrt(INITIAL_SCALE)))
        self.form = form

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp() if self.form == "log" else self.root_scale.square()
