"""From shards to model inputs: the paper's image transforms and batching."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from torchvision.transforms import v2

from data_specs.shards import shard_paths

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def image_transform(size: int, train: bool) -> Callable:
    """Train: random resized crop (scale 0.8-1, ratio 0.75-1.3) and horizontal flip. Eval: resize to
    256/224 of the input size, centre crop. Both end in CLIP's normalisation."""
    if train:
        geometry = [v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.75, 1.3), antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size)]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(CLIP_MEAN, CLIP_STD)])


def samples(root: Path, subset: str) -> Iterator[dict[str, Any]]:
    """Every sample of a subset in shard order, images decoded to PIL."""
    urls = [str(path) for path in shard_paths(root, subset)]
    yield from wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil")


def batched(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
