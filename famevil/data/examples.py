"""Pieces the tasks build their batches from: images through a transform, and token ids cut after the
batch's longest text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Sample = dict[str, Any]
Transform = Callable[[Any], torch.Tensor]
Tokenize = Callable[[list[str]], torch.Tensor]  # a famevil.model.tokenizer.TextTokenizer


def images(samples: list[Sample], field: str, transform: Transform) -> torch.Tensor:
    """One image field of every sample ("jpg", "reference.jpg", ...), transformed and stacked."""
    return torch.stack([transform(sample[field]) for sample in samples])


def keys(samples: list[Sample]) -> list[str]:
    return [sample["__key__"] for sample in samples]


def text_tokens(texts: list[str], tokenize: Tokenize) -> torch.Tensor:
    """Token ids, cut after the batch's longest text where the tower allows it (TextTokenizer.trims): the
    padding columns beyond it change no real position's output of a causal tower pooled at the end
    token (fusion masks padding), and cost half the text work on FashionGen's descriptions (about 32
    of CLIP's 77 positions). A bidirectional tower (SigLIP's) reads its padding, so it keeps it all."""
    tokens = tokenize(texts)
    if not tokenize.trims:
        return tokens
    return tokens[:, : int(tokenize.ends(tokens).max()) + 1]
