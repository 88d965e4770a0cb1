"""What each task makes of a batch of decoded shard samples: the tensors its objective reads, and
the samples' keys (by which distillation finds a teacher's outputs).

Named by the task registry (famevil.model.tasks), so the training and evaluation loops never branch
on a task's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Sample = dict[str, Any]
Transform = Callable[[Any], torch.Tensor]
Tokenize = Callable[[list[str]], torch.Tensor]


def _images(samples: list[Sample], field: str, transform: Transform) -> torch.Tensor:
    return torch.stack([transform(sample[field]) for sample in samples])


def text_tokens(texts: list[str], tokenize: Tokenize) -> torch.Tensor:
    """Token ids cut after the batch's longest text: the padding columns beyond it change no real
    position's output (the text tower is causal, fusion masks padding), and cost half the text work
    on FashionGen's descriptions (about 32 of CLIP's 77 positions)."""
    tokens = tokenize(texts)
    longest = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token is the largest id
    return tokens[:, :longest]


def classification_text(record: dict[str, Any]) -> str:
    """SCR reads the title and the description, joined with a full stop as in the paper."""
    return f"{record['title']}. {record['description']}"


def caption_batch(samples: list[Sample], transform: Transform, tokenize: Tokenize) -> dict[str, Any]:
    """XMR and FIC: a product view and its description."""
    return {
        "keys": [sample["__key__"] for sample in samples],
        "images": _images(samples, "jpg", transform),
        "tokens": text_tokens([sample["json"]["description"] for sample in samples], tokenize),
    }


def classification_batch(samples: list[Sample], transform: Transform, tokenize: Tokenize) -> dict[str, Any]:
    """SCR: the view, its title and description, the subcategory id."""
    return {
        "keys": [sample["__key__"] for sample in samples],
        "images": _images(samples, "jpg", transform),
        "tokens": text_tokens([classification_text(sample["json"]) for sample in samples], tokenize),
        "labels": torch.tensor([sample["json"]["subcategory_id"] for sample in samples]),
    }


def triplet_batch(samples: list[Sample], transform: Transform, tokenize: Tokenize) -> dict[str, Any]:
    """TGIR: the reference image, the two relative captions joined with ", ", the target image."""
    return {
        "keys": [sample["__key__"] for sample in samples],
        "images": _images(samples, "reference.jpg", transform),
        "tokens": text_tokens([", ".join(sample["json"]["captions"]) for sample in samples], tokenize),
        "targets": _images(samples, "target.jpg", transform),
    }
