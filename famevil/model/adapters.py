"""The two adapter kinds. Both end in a zero-initialised projection, so a fresh model is exactly its backbone
(unless training opens the cross-attention ones: FameVil.open_cross_attention, TrainConfig.xaa_init)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Adapter(nn.Module):
    """LayerNorm -> down -> ReLU -> dropout -> up, times a learnable scale (FAME-ViL's building block)."""

    def __init__(self, dim: int, bottleneck: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = nn.Parameter(torch.ones(()))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.dropout(F.relu(self.down(self.norm(x)))))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Multi-head scaled dot-product attention on (batch, length, dim) projections.

    mask: additive float or boolean (True = may attend), broadcastable to (batch, heads, q_len, k_len).
    """
    batch, q_len, dim = q.shape
    split = lambda t: t.view(batch, t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return out.transpose(1, 2).reshape(batch, q_len, dim)


class CrossAttentionAdapter(nn.Module):
    """Queries from this stream, keys and values from the other stream's same layer, then an adapter.

    As in the authors' code, the attended values go straight into the adapter, with no output
    projection between them (the adapter's own projections do that work): a projection there would
    add width x width parameters per layer and tower, 10.2 M at ViT-B-16.

    Keys and values are projections of the other stream alone, so during caption decoding they are
    computed once per image (`context_keys_values`) and reused for every new token.
    """

    def __init__(self, dim: int, context_dim: int, heads: int, bottleneck: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"cross-attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(context_dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(context_dim, dim)
        self.value = nn.Linear(context_dim, dim)
        self.adapter = Adapter(dim, bottleneck, dropout)

    def context_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context_norm(context)
        return self.key(context), self.value(context)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """context_mask: (batch, context_len) booleans, True where the context token is real (not padding)."""
        keys, values = keys_values if keys_values is not None else self.context_keys_values(context)
        mask = context_mask[:, None, None, :] if context_mask is not None else None
        attended = attend(self.query(self.norm(x)), keys, values, self.heads, mask)
        return self.adapter(attended)
