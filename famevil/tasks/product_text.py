"""What the FashionGen tasks (XMR, SCR, FIC) read of a product view: its text and its batch."""

from __future__ import annotations

import torch

from famevil.data.examples import images, keys, text_tokens
from famevil.tasks.base import Batch, Sample, Tokenize, Transform


def product_text(record: dict) -> str:
    """The title and the description joined with a full stop, as the authors' code gives every
    FashionGen task, captioning's references included (CLIP's tokenizer splits the full stop from the
    words either way, so the space after it changes no token)."""
    return f"{record['title']}. {record['description']}"


def view_batch(samples: list[Sample], transform: Transform, tokenize: Tokenize) -> Batch:
    """A product view, its text, and its product (views of one product are not each other's negatives)."""
    return {
        "keys": keys(samples),
        "images": images(samples, "jpg", transform),
        "tokens": text_tokens([product_text(sample["json"]) for sample in samples], tokenize),
        "products": torch.tensor([sample["json"]["product_id"] for sample in samples]),
    }
