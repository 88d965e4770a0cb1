"""Pieces the tasks build their batches from: images through a transform, and token ids cut after the
batch's longest text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Sample = dict[str, Any]
Transform = Callable[[Any], torch.Tensor]
Tokenize = Callable[[list[str]], torch.Tensor]


def images(samples: list[Sample], field: str, transform: Transform) -> torch.Tensor:
    """One image field of every sample ("jpg", "reference.jpg", ...), transformed and stacked."""
    return torch.stack([transform(sample[field]) for sample in samples])


def keys(samples: list[Sample]) -> list[str]:
    return [sample["__key__"] for sample in samples]


def text_tokens(texts: list[str], tokenize: Tokenize) -> torch.Tensor:
    """Token ids cut after the batch's longest text: the padding columns beyond it change no real
    position's output (the text tower is causal, fusion masks padding), and cost half the text work
    on FashionGen's descriptions (about 32 of CLIP's 77 positions)."""
    tokens = tokenize(texts)
    longest = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token is the largest id
    return tokens[:, :longest]
