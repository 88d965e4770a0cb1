"""A catalogue index (the folder data_specs.indexes lays out) and search over it by product, ranked
exactly (famevil.ranking), through FAISS (famevil.approximate) or elsewhere (any famevil.ranking.Ranker)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from data_specs.errors import FamevilError
from data_specs.indexes import (
    COMPOSED_VECTORS,
    GROUPS_METADATA,
    IMAGE_VECTORS,
    ITEM_PRODUCT,
    ITEM_SHA256,
    ITEMS_FILE,
    PRODUCT_GROUP,
    PRODUCT_VECTORS,
    SKIPPED_FILE,
    THUMBNAIL_BYTES,
    THUMBNAIL_OFFSETS,
    VECTORS_FILE,
)
from data_specs.manifest import InputRef
from famevil.api import FashionModel, load
from famevil.approximate import ApproximateRanker
from famevil.bases import resolve_base
from famevil.checkpoint import require_checkpoint
from famevil.data.catalogue import CATALOGUE, CATALOGUE_COLUMNS, OPTIONAL_CATALOGUE_COLUMNS, View, leaves_folder, read_catalogue, read_table
from famevil.data.images import decode_image
from famevil.limits import Bound
from famevil.mapped import JsonLines, mapped_safetensors
from famevil.model.backbone import LOCAL_DIR
from famevil.ranking import EVERYTHING, Among, ExactRanker, Ranker

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# The most bytes the server reads of one catalogue image: a product photo is a few MiB, and an items.jsonl
# pointed at /dev/zero or a huge file must cost no more than this.
MAX_ORIGINAL_BYTES = 64 * 1024 * 1024
# How deep a search pages (with TOP in famevil.limits): each page ranks all the products before it again.
OFFSET = Bound(10_000, "each page ranks every product before it again; past this, a narrower query or a filter finds it sooner")


OUTSIDE_THE_LISTING = "outside the CSV's folder"  # the skipped reason of a listed path that leaves it
KNOWN_COLUMNS = frozenset(CATALOGUE_COLUMNS + OPTIONAL_CATALOGUE_COLUMNS)  # a catalogue's other columns are an item's payload


@dataclass(frozen=True)
class Listed:
    """One image to index: where it is and what the listing says of its product."""

    path: str  # relative to the images root, as items.jsonl records it
    row: int | None  # its line in the listing (a CSV's header is line 1); None for a folder's file
    product: dict[str, Any]  # data_specs.indexes.PRODUCT_FIELDS and "payload"


@dataclass(frozen=True)
class ImageList:
    root: Path  # absolute: every listed path is relative to it
    listing: Path | None  # the CSV or catalogue read, None for a folder
    items: list[Listed]
    refused: list[dict[str, Any]]  # skipped entries (skipped_entry) of the rows never read


def skipped_entry(listing: Path | None, row: int | None, path: str, reason: str) -> dict[str, Any]:
    """One line of skipped.jsonl: the file and row that listed it (None for a folder's file), the image as listed, the reason."""
    return {"file": None if listing is None else str(listing), "row": row, "path": path, "reason": reason}


def _own_product(path: str) -> dict[str, Any]:
    """An image listed without a catalogue row: a product of its own, named by its path (as catalogue.py
    names a row without product_id by its image)."""
    return {"product_id": path, "title": "", "description": "", "category": "", "subcategory": "", "payload": {}}


def list_images(source: Path) -> ImageList:
    """A folder's image files (recursively, sorted), or the `image` column of a CSV (read as prepare
    reads a catalogue: byte order mark dropped, column names in any case), each path relative to the
    CSV's folder and kept inside it. Each image is its own product."""
    if source.is_dir():
        root = _absolute(source)
        files = sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
        paths = [file.relative_to(root).as_posix() for file in files]
        return ImageList(root, None, [Listed(path, None, _own_product(path)) for path in paths], [])
    if source.suffix.lower() != ".csv" or not source.is_file():
        raise FamevilError(f"--images {source}: expected a folder of images or a .csv file with an 'image' column")
    records, _, columns = read_table(source, "images")
    if "image" not in columns:
        raise FamevilError(f"{source}: no 'image' column (found: {', '.join(sorted(columns)) or 'none'}); name the column of image paths 'image'")
    listed = [(line, posixpath.normpath(path) if (path := str(record.get("image") or "").strip()) else "") for line, record in records]
    items = [Listed(path, line, _own_product(path)) for line, path in listed if path and not leaves_folder(path)]
    refused = [skipped_entry(source, line, path, OUTSIDE_THE_LISTING if path else "no image") for line, path in listed if not path or leaves_folder(path)]
    return ImageList(_absolute(source.parent), source, items, refused)


def list_catalogue(catalogue: Path, images: Path) -> ImageList:
    """A catalogue's usable rows (read exactly as prepare --catalogue reads it), each image relative to
    the images folder, with its product's fields and its other columns; the rows it skips, listed."""
    if not images.is_dir():
        raise FamevilError(f"--images {images}: with --catalogue, give the folder its 'image' column is relative to")
    read = read_catalogue(catalogue)
    records, _, _ = read_table(catalogue, CATALOGUE)  # again, for the columns a View leaves out
    payloads = {line: {name: value for name, value in record.items() if name not in KNOWN_COLUMNS and name} for line, record in records}
    items = [Listed(view.image, view.line, _product(view, payloads[view.line])) for view in read.views]
    refused = [skipped_entry(catalogue, row.line, row.detail, row.reason) for row in read.skipped]
    return ImageList(_absolute(images), catalogue, items, refused)


def _product(view: View, payload: dict[str, Any]) -> dict[str, Any]:
    described = {"product_id": view.product, "title": view.title, "description": view.description, "category": view.category, "subcategory": view.subcategory}
    return described | {"payload": payload}


def open_model(source: str | Path, device: str | torch.device = "cpu") -> tuple[FashionModel, InputRef]:
    """The model an index is built or searched with (famevil.load: a famevil checkpoint, or a plain base as
    --base names it) on `device`, and how the index names it: a checkpoint by its content id and absolute
    path, a plain base by the fingerprint --base gives it, a local-dir: folder made absolute."""
    loaded = load(_absolute_source(str(source)), device)
    if isinstance(loaded.source, Path):
        manifest = require_checkpoint(loaded.source)  # its manifest only: load has read and checked the weights
        return loaded, InputRef("model", manifest.kind, manifest.content_id, str(loaded.source))
    named = resolve_base(loaded.source, architecture=loaded.source).ref
    return loaded, InputRef("model", named.kind, named.id, loaded.source)


def _absolute_source(source: str) -> str | Path:
    """A model named so that it is found from any folder: a path made absolute, local-dir:DIR's folder too."""
    if source.startswith(LOCAL_DIR):
        return LOCAL_DIR + str(_absolute(Path(source[len(LOCAL_DIR) :])))
    return _absolute(Path(source)) if Path(source).exists() else source


def catalogue_tensors(items: list[dict[str, Any]], views: list[list[int]] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """What an index keeps beside its vectors so that it is searched without items.jsonl in memory: each
    item's product number and image SHA-256, each product's group; and the "groups" metadata naming them.
    `views`: product_views(items)' values, where the caller has them already."""
    views = list(product_views(items).values()) if views is None else views
    item_product = torch.empty(len(items), dtype=torch.int32)
    groups: dict[tuple[str, str], int] = {}
    product_group = []
    for product, numbers in enumerate(views):
        item_product[numbers] = product
        first = items[numbers[0]]
        product_group.append(groups.setdefault((first["category"], first["subcategory"]), len(groups)))
    digests = bytearray(b"".join(bytes.fromhex(item["sha256"]) for item in items))
    tensors = {
        ITEM_PRODUCT: item_product,
        ITEM_SHA256: torch.frombuffer(digests, dtype=torch.uint8).reshape(len(items), 32),
        PRODUCT_GROUP: torch.tensor(product_group, dtype=torch.int32),
    }
    return tensors, {GROUPS_METADATA: json.dumps([list(group) for group in groups], ensure_ascii=False)}


def write_index_files(
    out: Path, tensors: dict[str, torch.Tensor], items: list[dict[str, Any]], skipped: list[dict[str, Any]], views: list[list[int]] | None = None
) -> None:
    """An index folder's files but its manifest (data_specs.indexes): the vectors and thumbnails (`tensors`)
    with catalogue_tensors' (`views` as it takes them), the items and the skipped entries."""
    listing, metadata = catalogue_tensors(items, views)
    save_file(tensors | listing, out / VECTORS_FILE, metadata=metadata)
    with open(out / ITEMS_FILE, "w", encoding="utf-8") as lines:
        lines.writelines(json.dumps(item | {"id": i}, ensure_ascii=False) + "\n" for i, item in enumerate(items))
    with open(out / SKIPPED_FILE, "w", encoding="utf-8") as lines:
        lines.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in skipped)


class _Lazy(Sequence):
    """A sequence whose elements are made when asked for (the index's products and their views)."""

    def __init__(self, length: int, element: Callable[[int], Any]):
        self.length, self.element = length, element

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, number: int) -> Any:  # type: ignore[override]
        if not -self.length <= number < self.length:
            raise IndexError(number)
        return self.element(number % self.length)


def product_views(items: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Each product's items (its views), products in order of first appearance: the order of an index's product vectors."""
    views: dict[str, list[int]] = {}
    for number, item in enumerate(items):
        views.setdefault(item["product_id"], []).append(number)
    return views


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
    """A product found: its best view (the item shown) and what the catalogue says of it."""

    rank: int  # 1 is the best
    item: int  # the best view's position in the index
    path: str  # the best view's image file (absolute where the index knows its images root)
    score: float  # cosine similarity
    product_id: str
    title: str
    category: str
    subcategory: str
    views: int  # how many of the product's images the index holds


class CatalogueIndex:
    """An index folder read for search: its vectors and thumbnails memory-mapped, its items.jsonl read a line at a time.
    Search ranks products: a product scores as its best view (or as its product vector, where the index
    has them) and comes back once, as that view. `ranker` ranks them: exact (famevil.ranking), FAISS's
    inverted files with approximate=True, or any other Ranker put in its place.
    images: the absolute root the items' paths are relative to; their own files are read only from
    under it, and never without it."""

    def __init__(self, root: Path, approximate: bool = False, images: Path | None = None):
        self.root = root
        self.images_folder = None if images is None else _absolute(images)
        self.items = JsonLines(root / ITEMS_FILE)
        tensors, metadata = mapped_safetensors(root / VECTORS_FILE)
        self.vectors = {name: tensors[name] for name in (IMAGE_VECTORS, COMPOSED_VECTORS, PRODUCT_VECTORS) if name in tensors}
        self.offsets, self.thumbnails, self.sha256 = tensors[THUMBNAIL_OFFSETS], tensors[THUMBNAIL_BYTES], tensors[ITEM_SHA256]
        self.product_of, self.product_group = tensors[ITEM_PRODUCT], tensors[PRODUCT_GROUP]  # int32, memory-mapped
        self.groups: list[tuple[str, str]] = [tuple(group) for group in json.loads(metadata[GROUPS_METADATA])]
        # Each product's views, as runs of the items ordered by product (in index order within a product);
        # int32, as these are the index's only private arrays but items.jsonl's line offsets (4 bytes an item each).
        by_product = torch.argsort(self.product_of, stable=True).int()
        counts = torch.bincount(self.product_of, minlength=len(self.product_group))
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]).int()
        self.views: Sequence[list[int]] = _Lazy(len(counts), lambda product: by_product[starts[product] : starts[product + 1]].tolist())
        first_views = by_product[starts[:-1]]
        self.products: Sequence[dict[str, Any]] = _Lazy(len(counts), lambda product: self.items[int(first_views[product])])  # as its first view describes it
        self.most_views = int(counts.max())
        self.ranker: Ranker = ApproximateRanker(self) if approximate else ExactRanker(self)

    @property
    def product_count(self) -> int:
        return len(self.products)

    def __len__(self) -> int:
        return len(self.items)

    def categories(self) -> dict[str, list[str]]:
        """{category: its subcategories, sorted}, of the products that have one (a catalogue's)."""
        found: dict[str, set[str]] = {}
        for category, subcategory in self.groups:
            if category:
                found.setdefault(category, set()).add(subcategory)
        return {category: sorted(found[category]) for category in sorted(found)}

    def allowed(self, among: Among) -> torch.Tensor:
        """A mask (products,) of those `among` lets through."""
        groups = torch.tensor([among.category in (None, category) and among.subcategory in (None, sub) for category, sub in self.groups], dtype=torch.bool)
        mask = groups[self.product_group]
        if among.excluded is not None:
            mask[among.excluded] = False
        return mask

    def allowed_ids(self, among: Among, per_item: bool) -> np.ndarray:
        """The numbers (int64) of the items (per_item) or products `among` lets through."""
        mask = self.allowed(among)
        return (mask[self.product_of] if per_item else mask).nonzero().flatten().numpy()

    def product_with_image(self, sha256: str) -> int | None:
        """The product one of whose views is the image with this SHA-256, if the index holds it."""
        found = (self.sha256 == torch.frombuffer(bytearray(bytes.fromhex(sha256)), dtype=torch.uint8)).all(1).nonzero()
        return int(self.product_of[found[0, 0]]) if len(found) else None

    def search(self, vectors: str, query: torch.Tensor, top: int, offset: int = 0, among: Among = EVERYTHING) -> list[Hit]:
        """The products ranked offset+1 to offset+top for one query vector (D,) against the `vectors` of
        data_specs.indexes, among those `among` lets through (filtered before ranking)."""
        query = query.float().cpu()
        ranked = self.ranker.ranked(vectors, query, offset + top, among)[offset:]
        # Product vectors score a product as a whole; the view shown is still the one whose image matches best.
        shown = IMAGE_VECTORS if vectors == PRODUCT_VECTORS else vectors
        return [self._hit(rank, product, score, shown, query) for rank, (product, score) in enumerate(ranked, offset + 1)]

    def _hit(self, rank: int, product: int, score: float, shown: str, query: torch.Tensor) -> Hit:
        views = self.views[product]
        item = views[int((self.vectors[shown][views].float() @ query).argmax())]
        described = self.products[product]
        fields = {name: described[name] for name in ("product_id", "title", "category", "subcategory")}
        return Hit(rank, item, self.path(item), score, views=len(views), **fields)

    def path(self, item: int) -> str:
        """The item's image file: under the images root when the index knows it, else as items.jsonl lists it."""
        listed = self.items[item]["path"]
        return listed if self.images_folder is None else str(self.images_folder / listed)

    def original(self, item: int) -> bytes | None:
        """The item's own image file as the index recorded it, or None when it is gone, changed, too large or
        outside the folder the index was built from (an edited items.jsonl must not open other files)."""
        listed = self.items[item]
        if self.images_folder is None or leaves_folder(listed["path"]):
            return None
        return read_unchanged(self.images_folder / listed["path"], listed["sha256"])

    def image(self, item: int) -> Image.Image:
        """The item's own image when its file is still there unchanged and decodes, else its thumbnail."""
        original = self.original(item)
        if original is not None:
            try:
                return decode_image(original, self.items[item]["path"])
            except FamevilError:  # past the pixel limit, or unreadable: the thumbnail stands in
                pass
        return Image.open(io.BytesIO(self.thumbnail(item))).convert("RGB")

    def thumbnail(self, item: int) -> bytes:
        """The item's thumbnail, JPEG bytes."""
        if not 0 <= item < len(self.items):
            raise FamevilError(f"{self.root}: no item {item} (the index holds {len(self.items)})")
        return bytes(self.thumbnails[int(self.offsets[item]) : int(self.offsets[item + 1])].numpy())
