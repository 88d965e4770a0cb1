"""A search session: a catalogue index with the model that built it, answering text, similar-item and
composed queries by product (famevil search and famevil serve), and a page of a query's hits."""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from data_specs.errors import FamevilError
from data_specs.indexes import (
    APPROXIMATE_BACKEND,
    COMPOSED_SEARCH,
    COMPOSED_VECTORS,
    EXACT_BACKEND,
    IMAGE_VECTORS,
    PRODUCT_VECTORS,
    SIMILAR_SEARCH,
    TEXT_SEARCH,
)
from data_specs.manifest import require_artifact
from famevil.api import ImageInput, image_file_bytes, read_image
from famevil.catalogue_index import CatalogueIndex, Hit, open_model, thumbnail_jpeg
from famevil.data.images import decode_image
from famevil.qdrant_backend import FORMS, QdrantRanker, is_qdrant, parse_target
from famevil.ranking import EVERYTHING, Among

REFERENCE_THUMBNAIL = 160  # pixels: the reference image atop a results page


@dataclass(frozen=True)
class SearchResult:
    query: str  # as the user gave it
    kind: str  # text, similar or composed (data_specs.indexes.SEARCHES)
    hits: list[Hit]  # products, best first, ranked offset + 1 onwards
    offset: int  # how many better products came before these
    more: bool  # whether products past these match too (the next page)


@dataclass(frozen=True)
class _Reference:
    picture: Image.Image | torch.Tensor
    product: int | None  # the indexed product it shows, if any: similar-item search leaves it out
    named: str  # the reference as the query names it


class SearchSession:
    """An index with the model that built it, ready for queries.

    search(text=...) finds products by words; search(image=...) alone finds visually similar products
    (similar items), and with modify=... the products that differ from the image as the words say
    (composed search, where the model has composed retrieval: `searches` lists what the index answers).
    The reference may be an indexed item instead (item=N), as the page offers it. Each hit is a product
    as its best view; category and subcategory (of `categories()`) filter before ranking; offset pages on.
    `backend` ranks: "exact" (every item), "approximate" (FAISS) or a Qdrant collection famevil
    export-index wrote of this index (famevil.qdrant_backend's FORMS).
    """

    def __init__(self, index: Path, model: Path | str | None = None, backend: str = EXACT_BACKEND):
        if backend not in (EXACT_BACKEND, APPROXIMATE_BACKEND) and not is_qdrant(backend):
            raise FamevilError(f"--backend {backend}: expected {EXACT_BACKEND}, {APPROXIMATE_BACKEND} or a Qdrant collection, {FORMS}")
        target = parse_target(backend, "--backend") if is_qdrant(backend) else None
        manifest = require_artifact(index, "index")
        built_with = manifest.inputs[0]
        try:
            self.model, given = open_model(model or built_with.path)
        except FamevilError as error:
            if model is not None:
                raise
            raise FamevilError(
                f"{index}: was built with the model at {built_with.path}, which cannot be opened ({error}); pass --model DIR (the same model)"
            ) from None
        if given.id != built_with.id:
            raise FamevilError(f"--model {model}: is not the model {index} was built with ({built_with.id[:19]}…); use that model or rebuild the index")
        self.root = index
        self.searches: tuple[str, ...] = tuple(manifest.details["searches"])
        self.index = CatalogueIndex(index, backend == APPROXIMATE_BACKEND, images=Path(manifest.details["images"]))
        if target is not None:
            self.index.ranker = QdrantRanker(self.index, target, manifest.content_id)

    def categories(self) -> dict[str, list[str]]:
        """{category: its subcategories, sorted} of the indexed products (empty for an index without a catalogue)."""
        return self.index.categories()

    def search(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        modify: str | None = None,
        top: int = 10,
        offset: int = 0,
        category: str | None = None,
        subcategory: str | None = None,
        item: int | None = None,
    ) -> SearchResult:
        """Text search (`text`), similar items (`image` or indexed `item` alone) or composed search
        (`image` or `item`, and `modify`: how the wanted product differs from it)."""
        among = self._among(category, subcategory)
        reference = self._reference(image, item)
        if reference is None:
            if modify:
                raise FamevilError("--modify: composed search needs a reference image too (--image REF)")
            if not text:
                raise FamevilError("give a text query, --image REF for similar items, or --image REF --modify TEXT for composed search")
            vectors = PRODUCT_VECTORS if PRODUCT_VECTORS in self.index.vectors else IMAGE_VECTORS
            return self._found(text, TEXT_SEARCH, vectors, self.model.encode_texts([text])[0], top, offset, among)
        if text:
            raise FamevilError(f"{text!r}: give a text query or --image, not both; to change the image, say how with --modify TEXT")
        if modify:
            if COMPOSED_SEARCH not in self.searches:
                raise FamevilError(
                    f"{self.root}: composed search needs a model with composed retrieval; {self.model.source} lacks it (its tasks: {', '.join(self.model.tasks)})"
                )
            query = self.model.compose([reference.picture], [modify])[0]
            return self._found(f"{reference.named} + {modify!r}", COMPOSED_SEARCH, COMPOSED_VECTORS, query, top, offset, among)
        among = replace(among, excluded=reference.product)  # the product itself is no similar item of its own
        return self._found(f"like {reference.named}", SIMILAR_SEARCH, IMAGE_VECTORS, self.model.encode_images([reference.picture])[0], top, offset, among)

    def _found(self, query: str, kind: str, vectors: str, vector: torch.Tensor, top: int, offset: int, among: Among) -> SearchResult:
        hits = self.index.search(vectors, vector, top + 1, offset, among)  # one more than shown: whether a next page exists
        return SearchResult(query, kind, hits[:top], offset, len(hits) > top)

    def _reference(self, image: ImageInput | None, item: int | None) -> _Reference | None:
        """The query image, and the indexed product it is (an item's, or a file whose bytes an item has)."""
        if item is not None:
            if image is not None:
                raise FamevilError("give a reference image or an indexed item, not both")
            self.index.thumbnail(item)  # one line when there is no such item
            return _Reference(self.index.image(item), int(self.index.product_of[item]), f"item {item}")
        if image is None:
            return None
        if not isinstance(image, (str, Path)):
            return _Reference(image, None, "the image")
        data = image_file_bytes(image)  # read once: decoded as the query, hashed to find it among the indexed images
        return _Reference(decode_image(data, str(image)), self.index.product_with_image(hashlib.sha256(data).hexdigest()), str(image))

    def _among(self, category: str | None, subcategory: str | None) -> Among:
        """The products the filters let through; an unknown name is one line with the closest known ones."""
        if category is None and subcategory is None:
            return EVERYTHING
        known = self.categories()
        if category is not None:
            category = _known_name("--category", category, list(known), f"the categories of {self.root}")
        if subcategory is not None:
            within = known[category] if category is not None else sorted({name for names in known.values() for name in names})
            where = f"the subcategories of {category}" if category is not None else f"the subcategories of {self.root}"
            subcategory = _known_name("--subcategory", subcategory, within, where)
        return Among(category, subcategory)


def _known_name(flag: str, given: str, names: list[str], where: str) -> str:
    """The catalogue's name for `given`, whatever its case; else one line with the closest names, or all of them."""
    by_folded = {name.casefold(): name for name in names}
    if given.casefold() in by_folded:
        return by_folded[given.casefold()]
    if not names:
        raise FamevilError(f"{flag} {given!r}: there are no {where} (famevil index --catalogue gives an index its products' categories)")
    close = [by_folded[name] for name in difflib.get_close_matches(given.casefold(), list(by_folded), n=3)]
    suggestion = f"did you mean {' or '.join(close)}?" if close else f"choose one of {', '.join(names[:20])}"
    raise FamevilError(f"{flag} {given!r}: not among {where}; {suggestion}")


def results_page(session: SearchSession, result: SearchResult, reference: Path | None = None) -> str:
    """One self-contained HTML page: the query, its reference image (for an image search) and its hits
    as thumbnails with their titles, product ids and scores."""
    cards = []
    for hit in result.hits:
        picture = base64.b64encode(session.index.thumbnail(hit.item)).decode()
        views = f" · {hit.views} views" if hit.views > 1 else ""
        cards.append(
            f'<figure><img src="data:image/jpeg;base64,{picture}" alt="{html.escape(hit.title or hit.path)}">'
            f"<figcaption>#{hit.rank} · {hit.score:.3f}{views}<br><b>{html.escape(hit.title)}</b><br>"
            f"<small>{html.escape(hit.product_id)}</small></figcaption></figure>"
        )
    shown = "" if reference is None else _reference_figure(reference)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>famevil search: {html.escape(result.query)}</title>
<style>body{{font-family:sans-serif;margin:2em}} main{{display:flex;flex-wrap:wrap;gap:1em}}
figure{{margin:0;width:10em;text-align:center}} img{{max-width:100%}} small{{color:#666;word-break:break-all}}
.reference{{margin-bottom:1.5em}}</style></head>
<body><h1>{html.escape(result.kind)} search: {html.escape(result.query)}</h1>{shown}<main>{"".join(cards)}</main></body></html>
"""


def _reference_figure(reference: Path) -> str:
    picture = base64.b64encode(thumbnail_jpeg(read_image(reference), REFERENCE_THUMBNAIL)).decode()
    return f'<figure class="reference"><img src="data:image/jpeg;base64,{picture}" alt="the reference image"><figcaption>reference</figcaption></figure>'
