"""A catalogue index in Qdrant: its items exported as points of a collection (famevil export-index), and
its search ranked there (famevil search/serve --backend), items and thumbnails still read from the index.

Where, one string (--to, --backend):
  qdrant://HOST[:PORT]/COLLECTION    a server over HTTP (port 6333 unless given)
  qdrants://HOST[:PORT]/COLLECTION   the same over TLS (a cloud cluster)
  qdrant+local:FOLDER/COLLECTION     qdrant-client's embedded local mode: a folder, no server; it searches
                                     by brute force in Python, for tests and small catalogues
A server's API key is read from the environment variable QDRANT_API_KEY, never from the command line.

What it holds: COLLECTION, one point per item (id: its number in items.jsonl) with the index's per-item
vectors under their names (image; composed, where the model has composed retrieval), cosine distance, and
payload path, sha256, product_id, title, category, subcategory, product (its number) and index (the index's
content id). COLLECTION-products, for an index with product vectors only: one point per product (id: its
number) with its product vector and the same payload less path and sha256. Each collection's metadata
names the index (famevil_index) and how many points are complete (famevil_points, Qdrant 1.16 or later):
an export resumes after it, and search checks it.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from data_specs.errors import FamevilError
from data_specs.indexes import COMPOSED_VECTORS, IMAGE_VECTORS, ITEM_PRODUCT, ITEMS_FILE, PRODUCT_VECTORS, VECTORS_FILE
from famevil.optional import optional_module
from famevil.progress import progress_bar
from famevil.ranking import Among

SCHEMES = {"qdrant": "http", "qdrants": "https"}
LOCAL = "qdrant+local:"
FORMS = "qdrant://HOST[:PORT]/COLLECTION, qdrants://HOST[:PORT]/COLLECTION (TLS) or qdrant+local:FOLDER/COLLECTION"
DEFAULT_PORT = 6333
API_KEY_VARIABLE = "QDRANT_API_KEY"
PRODUCTS_SUFFIX = "-products"
INDEX_KEY, POINTS_KEY = "famevil_index", "famevil_points"  # a collection's metadata
PRODUCT_PAYLOAD = ("product_id", "title", "category", "subcategory")
ITEM_PAYLOAD = ("path", "sha256", *PRODUCT_PAYLOAD)
FILTERED = {"category": "keyword", "subcategory": "keyword", "product": "integer"}  # a server's payload indexes


def qdrant_module() -> Any:
    return optional_module("qdrant_client", "a qdrant:// collection", "qdrant-client", "pip install qdrant-client (or famevil[qdrant])")


def is_qdrant(given: str) -> bool:
    """Whether a --backend names a Qdrant collection (of any form), not a backend of famevil's own."""
    return given.startswith(LOCAL) or urllib.parse.urlsplit(given).scheme in SCHEMES


@dataclass(frozen=True)
class QdrantTarget:
    """A collection and where it lives: a server's URL, or local mode's folder."""

    given: str  # as written: every message names it so
    collection: str
    url: str | None = None
    folder: Path | None = None

    def __str__(self) -> str:
        return self.given

    @property
    def products(self) -> str:
        """The collection of the index's product vectors."""
        return self.collection + PRODUCTS_SUFFIX

    def client(self) -> Any:
        """A qdrant_client.QdrantClient; local mode's folder is locked until it closes."""
        qdrant = qdrant_module()
        if self.folder is None:
            # No version check: it asks the server at once and warns when unreachable; the first request says so in one line.
            return qdrant.QdrantClient(url=self.url, api_key=os.environ.get(API_KEY_VARIABLE) or None, check_compatibility=False)
        try:
            return qdrant.QdrantClient(path=str(self.folder))
        except RuntimeError:  # its lock: local mode lets one client at a time open a folder
            raise FamevilError(f"{self}: {self.folder} is open in another process (local mode allows one at a time); stop it, or run a Qdrant server") from None


def parse_target(given: str, flag: str) -> QdrantTarget:
    """The collection a --to or --backend string names, in one of FORMS; anything else is one line."""
    if given.startswith(LOCAL):
        where = Path(given[len(LOCAL) :])
        if where.name and where.parent != where:
            return QdrantTarget(given, where.name, folder=where.parent)
    else:
        parts = urllib.parse.urlsplit(given)
        collection = parts.path.strip("/")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:  # a port that is no number, or past 65535
            port = None
        if parts.scheme in SCHEMES and parts.hostname and port and collection and "/" not in collection:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            return QdrantTarget(given, collection, url=f"{SCHEMES[parts.scheme]}://{host}:{port}")
    raise FamevilError(f"{flag} {given}: expected {FORMS}")


@contextmanager
def answering(target: QdrantTarget, flag: str) -> Iterator[None]:
    """A server that cannot be reached or refuses the key, as one line."""
    exceptions = importlib.import_module("qdrant_client.http.exceptions")
    try:
        yield
    except exceptions.UnexpectedResponse as error:
        said = " ".join(error.content.decode(errors="replace").split())[:200]
        key = f"; check {API_KEY_VARIABLE}" if error.status_code in (401, 403) else f" ({said}); famevil needs Qdrant 1.16 or later"
        raise FamevilError(f"{flag} {target}: Qdrant answered {error.status_code} {error.reason_phrase}{key}") from None
    except exceptions.ResponseHandlingException as error:
        raise FamevilError(f"{flag} {target}: cannot reach Qdrant at {target.url} ({error.source}); check the address and that the server runs") from None


@dataclass(frozen=True)
class Exported:
    items: int
    products: int  # 0 for an index without product vectors
    resumed: int  # points an earlier run had completed, not written again
    seconds: float


def export_index(root: Path, content_id: str, target: QdrantTarget, batch_size: int = 256, overwrite: bool = False) -> Exported:
    """Write an index's items (and its product vectors) as points of `target`'s collections, batch by
    batch: each collection's metadata records how many points are complete, and a rerun continues after
    them. A collection holding another index's points is refused unless `overwrite` replaces it."""
    started = time.perf_counter()
    client = target.client()
    try:
        with answering(target, "--to"), safe_open(root / VECTORS_FILE, framework="pt") as tensors:
            held = set(tensors.keys())  # a safe_open answers no `in`
            named = [name for name in (IMAGE_VECTORS, COMPOSED_VECTORS, PRODUCT_VECTORS) if name in held]
            if overwrite:
                for collection in (target.collection, target.products):
                    client.delete_collection(collection)
            item_product = tensors.get_tensor(ITEM_PRODUCT).tolist()  # the index's own product numbers, not recounted here
            items = len(item_product)
            products = tensors.get_slice(PRODUCT_VECTORS).get_shape()[0] if PRODUCT_VECTORS in named else 0
            with progress_bar("export", items + products, unit="points") as advance:
                writer = _Writer(client, target, tensors, content_id, batch_size, advance)
                resumed = writer.fill(target.collection, [name for name in named if name != PRODUCT_VECTORS], _rows(root, item_product), items)
                if products:
                    resumed += writer.fill(target.products, [PRODUCT_VECTORS], _first_views(root, item_product), products)
    finally:
        client.close()
    return Exported(items, products, resumed, time.perf_counter() - started)


def _rows(root: Path, item_product: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each item of the index (read line by line, never all at once) as its point's id and payload, with
    its product's number (data_specs.indexes.ITEM_PRODUCT)."""
    with open(root / ITEMS_FILE, encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            item = json.loads(line)
            yield number, {name: item[name] for name in ITEM_PAYLOAD} | {"product": item_product[number]}


def _first_views(root: Path, item_product: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each product (by number, as its product vectors go) as its first view describes it, less the view's own file."""
    seen = -1
    for _, payload in _rows(root, item_product):
        if payload["product"] > seen:
            seen = payload["product"]
            yield seen, {name: payload[name] for name in (*PRODUCT_PAYLOAD, "product")}


class _Writer:
    def __init__(self, client: Any, target: QdrantTarget, tensors: Any, content_id: str, batch_size: int, advance: Callable[..., None]):
        self.client, self.target, self.tensors = client, target, tensors
        self.content_id, self.batch_size, self.advance = content_id, batch_size, advance
        self.models = qdrant_module().models

    def fill(self, collection: str, names: list[str], rows: Iterator[tuple[int, dict[str, Any]]], total: int) -> int:
        """`rows` (id, payload), in id order from 0, into `collection` after the points it has complete; returns how many it had."""
        done = self._opened(collection, names)
        self.advance(done)
        rows = itertools.islice(rows, done, None)
        while batch := list(itertools.islice(rows, self.batch_size)):
            start, end = batch[0][0], batch[-1][0] + 1
            vectors = {name: self.tensors.get_slice(name)[start:end].float().tolist() for name in names}
            payloads = [payload | {"index": self.content_id} for _, payload in batch]
            self.client.upsert(collection, self.models.Batch(ids=[number for number, _ in batch], vectors=vectors, payloads=payloads), wait=True)
            self.client.update_collection(collection, metadata={POINTS_KEY: end})  # only once the batch is in
            self.advance(len(batch))
        if (count := self.client.count(collection, exact=True).count) != total:
            raise FamevilError(f"--to {self.target}: collection {collection} holds {count} points, not the index's {total}; rerun with --overwrite")
        return done

    def _opened(self, collection: str, names: list[str]) -> int:
        """How many points `collection` has complete of this index: 0 once made; another index's is refused."""
        models = self.models
        if self.client.collection_exists(collection):
            metadata = self.client.get_collection(collection).config.metadata or {}
            if metadata.get(INDEX_KEY) != self.content_id:
                whose = f"another index's points ({metadata[INDEX_KEY][:19]}…)" if INDEX_KEY in metadata else "points famevil export-index did not write"
                raise FamevilError(
                    f"--to {self.target}: collection {collection} holds {whose}; pass --overwrite to replace it, or export to another collection"
                )
            return int(metadata.get(POINTS_KEY, 0))
        width = self.tensors.get_slice(names[0]).get_shape()[1]
        vectors = {name: models.VectorParams(size=width, distance=models.Distance.COSINE) for name in names}
        self.client.create_collection(collection, vectors_config=vectors, metadata={INDEX_KEY: self.content_id, POINTS_KEY: 0})
        if self.target.folder is None:  # local mode filters without them (and warns that they do nothing)
            for field, schema in FILTERED.items():
                self.client.create_payload_index(collection, field, field_schema=schema)
        return 0


class QdrantRanker:
    """famevil.ranking.Ranker in the collections famevil export-index wrote of this index (checked at
    start: its content id, every point complete). Per-item vectors: `wanted` products' best views lie among
    the best wanted x most_views points, as in famevil.approximate; the filter is Qdrant's, on the payload."""

    def __init__(self, index, target: QdrantTarget, content_id: str):  # a famevil.catalogue_index.CatalogueIndex
        self.index, self.target = index, target
        self.models = qdrant_module().models
        self.collections = {name: target.products if name == PRODUCT_VECTORS else target.collection for name in index.vectors}
        self.client = target.client()
        with answering(target, "--backend"):
            self._check(target.collection, content_id, len(index.product_of))
            if PRODUCT_VECTORS in index.vectors:
                self._check(target.products, content_id, index.product_count)

    def _check(self, collection: str, content_id: str, total: int) -> None:
        export = f"famevil export-index {self.index.root} --to {self.target}"
        if not self.client.collection_exists(collection):
            raise FamevilError(f"--backend {self.target}: no collection {collection}; export the index first: {export}")
        metadata = self.client.get_collection(collection).config.metadata or {}
        if metadata.get(INDEX_KEY) != content_id:
            raise FamevilError(f"--backend {self.target}: collection {collection} holds another index's points, not {self.index.root}'s; {export} --overwrite")
        held = min(self.client.count(collection, exact=True).count, int(metadata.get(POINTS_KEY, 0)))  # complete, and all there
        if held != total:
            raise FamevilError(f"--backend {self.target}: collection {collection} holds {held} of the index's {total} points; finish the export: {export}")

    def ranked(self, vectors: str, query: torch.Tensor, wanted: int, among: Among) -> list[tuple[int, float]]:
        per_item = vectors != PRODUCT_VECTORS
        found = self.client.query_points(
            self.collections[vectors],
            query=query.tolist(),
            using=vectors,
            query_filter=self._filter(among),
            limit=max(1, wanted * (self.index.most_views if per_item else 1)),
            with_payload=False,
        ).points
        best: dict[int, float] = {}
        for point in found:  # best first
            best.setdefault(int(self.index.product_of[point.id]) if per_item else int(point.id), point.score)
        return list(best.items())[:wanted]

    def _filter(self, among: Among) -> Any:
        if among.everything:
            return None
        match = self.models.FieldCondition
        wanted = {"category": among.category, "subcategory": among.subcategory}
        must = [match(key=key, match=self.models.MatchValue(value=value)) for key, value in wanted.items() if value is not None]
        excluded = [] if among.excluded is None else [match(key="product", match=self.models.MatchValue(value=among.excluded))]
        return self.models.Filter(must=must or None, must_not=excluded or None)
