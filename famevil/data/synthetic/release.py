"""Write a synthetic catalogue in the public release layouts, so `prepare` reads it like real data.

FashionGen: fashiongen_256_256_{train,validation}.h5 with the release's fields, quirks included
(fixed-width latin-1 byte strings, HTML entities, <br> tags). FashionIQ: captions/, image_splits/
and images/<asin>.png, with the release's missing images left out. Pixels are drawn in worker
processes and streamed into the h5 a block at a time, so memory stays flat at any size.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from data_specs.shards import FASHIONIQ_SPLITS
from famevil.data.fashiongen import RELEASE_FILES
from famevil.data.fashioniq import caption_file, image_split_file
from famevil.data.parallel import worker_map
from famevil.data.synthetic.products import STREAM_RENDER, FashionIQSplit, Product
from famevil.data.synthetic.render import render_garment
from famevil.data.synthetic.taxonomy import FASHIONIQ_GROUPS, Garment

RENDER_BLOCK = 64  # images per worker task: big enough to amortise IPC, small enough to stay flat
ProgressCallback = Callable[[int], None]


def release_text(text: str, rng: np.random.Generator) -> bytes:
    """Plain text as the release stores it: HTML-escaped, a <br> between some sentences, latin-1."""
    escaped = html.escape(text, quote=False)
    if rng.random() < 0.3:
        escaped = escaped.replace(". ", ".<br>", 1)
    return escaped.encode("latin-1")


def _render_block(task: tuple[list[tuple[Garment, str]], int, list[int]]) -> np.ndarray:
    items, size, seed = task
    return np.stack([render_garment(garment, view, size, np.random.default_rng([*seed, i])) for i, (garment, view) in enumerate(items)])


def write_fashiongen_h5(
    path: Path,
    products: list[Product],
    *,
    image_size: int,
    seed: list[int],
    workers: int,
    on_progress: ProgressCallback,
) -> int:
    """One h5 of the release layout, one row per product view; returns the number of rows."""
    rows = [(product, view) for product in products for view in product.views]
    rng = np.random.default_rng([*seed, 0])
    text = {
        "input_name": [release_text(p.title, rng) for p, _ in rows],
        "input_description": [release_text(p.description, rng) for p, _ in rows],
        "input_concatenated_description": [release_text(f"{p.description} {p.composition}", rng) for p, _ in rows],
        "input_category": [release_text(p.garment.spec.category, rng) for p, _ in rows],
        "input_subcategory": [release_text(p.garment.spec.name, rng) for p, _ in rows],
        "input_pose": [view.encode("latin-1") for _, view in rows],
        "input_gender": [p.gender.encode("latin-1") for p, _ in rows],
        "input_composition": [release_text(p.composition, rng) for p, _ in rows],
        "input_season": [p.season.encode("latin-1") for p, _ in rows],
    }
    blocks = [
        ([(p.garment, view) for p, view in rows[start : start + RENDER_BLOCK]], image_size, [*seed, 1, start]) for start in range(0, len(rows), RENDER_BLOCK)
    ]
    with h5py.File(path, "w") as h5:
        for field, values in text.items():
            h5.create_dataset(field, data=np.array(values, dtype=bytes).reshape(-1, 1))  # numpy picks the fixed width
        h5.create_dataset("input_productID", data=np.array([p.product_id for p, _ in rows], dtype=np.int64).reshape(-1, 1))
        images = h5.create_dataset("input_image", shape=(len(rows), image_size, image_size, 3), dtype=np.uint8)
        start = 0
        for block in worker_map(_render_block, blocks, workers):
            images[start : start + len(block)] = block
            start += len(block)
            on_progress(len(block))
    return len(rows)


def _write_images(task: tuple[list[tuple[Path, Garment]], int, list[int]]) -> int:
    items, size, seed = task
    for i, (path, garment) in enumerate(items):
        Image.fromarray(render_garment(garment, "id_gridfs_1", size, np.random.default_rng([*seed, i]))).save(path)
    return len(items)


def write_fashioniq(
    root: Path,
    catalogue: dict[tuple[str, str], FashionIQSplit],
    *,
    image_size: int,
    seed: int,
    workers: int,
    on_progress: ProgressCallback,
) -> None:
    """captions/, image_splits/ and images/ in the release layout; the test split has no targets."""
    for folder in ("captions", "image_splits", "images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    tasks = []
    for (group, split), part in catalogue.items():
        entries = [{"target": t.target, "candidate": t.candidate, "captions": list(t.captions)} for t in part.triplets]
        if split == "test":
            entries = [{k: v for k, v in entry.items() if k != "target"} for entry in entries]
        caption_file(root, group, split).write_text(json.dumps(entries, indent=1), encoding="utf-8")
        image_split_file(root, group, split).write_text(json.dumps([image.asin for image in part.images]), encoding="utf-8")
        present = [(root / "images" / f"{image.asin}.png", image.garment) for image in part.images if image.present]
        stream = [seed, STREAM_RENDER, 1000 + FASHIONIQ_GROUPS.index(group), FASHIONIQ_SPLITS.index(split)]
        tasks += [(present[s : s + RENDER_BLOCK], image_size, [*stream, s]) for s in range(0, len(present), RENDER_BLOCK)]
    for done in worker_map(_write_images, tasks, workers, ordered=False):
        on_progress(done)


def fashiongen_path(root: Path, split: str) -> Path:
    return root / RELEASE_FILES[split]
