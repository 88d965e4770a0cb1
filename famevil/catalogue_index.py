"""A catalogue index (the folder data_specs.indexes lays out) and search over it: an inner product
against every item on the CPU, or FAISS inverted files (approximate)."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors import safe_open

from data_specs.errors import FamevilError
from data_specs.indexes import ITEMS_FILE, THUMBNAIL_BYTES, THUMBNAIL_OFFSETS, VECTORS_FILE
from famevil.api import COMPOSED_SEARCH, TEXT_SEARCH
from famevil.data.catalogue import leaves_folder, read_table
from famevil.data.images import decode_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# The most bytes the server reads of one catalogue image: a product photo is a few MiB, and an items.jsonl
# pointed at /dev/zero or a huge file must cost no more than this.
MAX_ORIGINAL_BYTES = 64 * 1024 * 1024


OUTSIDE_THE_LISTING = "outside the CSV's folder"  # the skipped reason of a listed path that leaves it


@dataclass(frozen=True)
class ImageList:
    files: list[Path]
    refused: list[dict[str, str]]  # {"path", "reason"} of each listed path that is never read: it leaves the CSV's folder


def list_images(source: Path) -> ImageList:
    """A folder's image files (recursively, sorted), or the `image` column of a CSV (read as prepare
    reads a catalogue: byte order mark dropped, column names in any case), each path relative to the
    CSV's folder and kept inside it."""
    if source.is_dir():
        return ImageList(sorted(path for path in source.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()), [])
    if source.suffix.lower() != ".csv" or not source.is_file():
        raise FamevilError(f"--images {source}: expected a folder of images or a .csv file with an 'image' column")
    records, _, columns = read_table(source, "images")
    if "image" not in columns:
        raise FamevilError(f"{source}: no 'image' column (found: {', '.join(sorted(columns)) or 'none'}); name the column of image paths 'image'")
    listed = [str(record.get("image") or "").strip() for _, record in records]
    files = [source.parent / path for path in listed if path and not leaves_folder(path)]
    return ImageList(files, [{"path": path, "reason": OUTSIDE_THE_LISTING} for path in listed if path and leaves_folder(path)])


def read_image_and_hash(path: Path) -> tuple[Image.Image, str]:
    """A catalogue image as RGB and upright (famevil.data.images.decode_image), and the SHA-256 of its
    file (what an index records of it). An unreadable file raises OSError, an undecodable image ImageError."""
    data = path.read_bytes()
    return decode_image(data, str(path)), hashlib.sha256(data).hexdigest()


def read_unchanged(path: Path, sha256: str, limit: int = MAX_ORIGINAL_BYTES) -> bytes | None:
    """The file's bytes when they still hash to `sha256`; None when it is gone, not a regular file, larger
    than `limit` or changed. At most limit + 1 bytes are read, whatever the path names."""
    try:
        # O_NONBLOCK: a FIFO put in the image's place would block a plain open until a writer came
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with open(descriptor, "rb") as file:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode) or found.st_size > limit:
            return None
        data = file.read(limit + 1)  # the file may have grown since fstat
    return data if len(data) <= limit and hashlib.sha256(data).hexdigest() == sha256 else None


def _absolute(path: Path) -> Path:
    """The path made absolute with its `..` resolved, symbolic links kept: a catalogue folder of links
    to the photos stays readable, and a link to a device or a huge file is refused when read."""
    return Path(os.path.abspath(path))


def thumbnail_jpeg(image: Image.Image, size: int) -> bytes:
    """The image shrunk to fit a size x size box, as JPEG."""
    small = image.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@dataclass(frozen=True)
class Hit:
    rank: int  # 1 is the best
    item: int  # the item's position in the index
    path: str  # the image as the index lists it
    score: float  # cosine similarity


def approximate_index(vectors: torch.Tensor, probes: int = 16) -> Any:
    """A FAISS inverted-file index over L2-normalised vectors (inner product): about 4 sqrt(N) cells,
    `probes` of them searched per query. For catalogues too large to search exactly at the speed wanted."""
    try:
        faiss = importlib.import_module("faiss")  # optional: pip install 'famevil[faiss]'
    except ImportError:
        raise FamevilError("--approximate needs FAISS: pip install faiss-cpu (or famevil[faiss])") from None
    data = vectors.float().contiguous().numpy()
    cells = max(1, min(int(4 * len(data) ** 0.5), len(data) // 39))  # FAISS wants about 39 training points per cell
    quantizer = faiss.IndexFlatIP(data.shape[1])
    inverted = faiss.IndexIVFFlat(quantizer, data.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
    inverted.train(data)
    inverted.add(data)
    inverted.nprobe = min(probes, cells)
    return inverted


class CatalogueIndex:
    """An index folder read for search: vectors in memory (float32, for fast exact search), thumbnails
    read from the file when asked for. approximate: search FAISS inverted-file indexes instead.
    images: the folder (or CSV) the index was built from; the items' own files are read only from under
    it, and never without it."""

    def __init__(self, root: Path, approximate: bool = False, images: Path | None = None):
        self.root = root
        self.images_folder = None if images is None else _absolute(images.parent if images.suffix.lower() == ".csv" else images)
        with open(root / ITEMS_FILE, encoding="utf-8") as lines:
            self.items = [json.loads(line) for line in lines]
        with safe_open(root / VECTORS_FILE, framework="pt") as tensors:
            self.vectors = {kind: tensors.get_tensor(kind).float() for kind in (TEXT_SEARCH, COMPOSED_SEARCH)}
            self.offsets = tensors.get_tensor(THUMBNAIL_OFFSETS)
        self.approximate = {kind: approximate_index(vectors) for kind, vectors in self.vectors.items()} if approximate else None

    def __len__(self) -> int:
        return len(self.items)

    def search(self, kind: str, query: torch.Tensor, top: int) -> list[Hit]:
        """The `top` items nearest to one query vector (D,) among the `kind` vectors."""
        query = query.float().cpu()
        if self.approximate is not None:
            values, indices = (torch.from_numpy(found[0]) for found in self.approximate[kind].search(query[None].numpy(), min(top, len(self.items))))
            kept = indices >= 0  # FAISS pads with -1 when the probed cells hold fewer than `top` items
            values, indices = values[kept], indices[kept]
        else:
            values, indices = (self.vectors[kind] @ query).topk(min(top, len(self.items)))
        return [Hit(rank, item, self.items[item]["path"], score) for rank, (item, score) in enumerate(zip(indices.tolist(), values.tolist(), strict=True), 1)]

    def original(self, item: int) -> bytes | None:
        """The item's own image file as the index recorded it, or None when it is gone, changed, too large or
        outside the folder the index was built from (an edited items.jsonl must not open other files)."""
        listed = self.items[item]
        path = _absolute(Path(listed["path"]))
        if self.images_folder is None or not path.is_relative_to(self.images_folder):
            return None
        return read_unchanged(path, listed["sha256"])

    def thumbnail(self, item: int) -> bytes:
        """The item's thumbnail, JPEG bytes."""
        if not 0 <= item < len(self.items):
            raise FamevilError(f"{self.root}: no item {item} (the index holds {len(self.items)})")
        start, end = int(self.offsets[item]), int(self.offsets[item + 1])
        with safe_open(self.root / VECTORS_FILE, framework="pt") as tensors:
            return bytes(tensors.get_slice(THUMBNAIL_BYTES)[start:end].numpy())
