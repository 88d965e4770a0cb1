"""A search session: a catalogue index with the model that built it, answering text and composed
queries (famevil search and famevil serve), and a page of a query's hits."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from famevil.api import COMPOSED_SEARCH, TEXT_SEARCH, FashionModel
from famevil.catalogue_index import CatalogueIndex, Hit
from famevil.checkpoint import load_checkpoint, require_checkpoint


@dataclass(frozen=True)
class SearchResult:
    query: str  # as the user gave it
    kind: str  # text or composed
    hits: list[Hit]


class SearchSession:
    """An index with the model that built it, ready for queries."""

    def __init__(self, index: Path, model: Path | None = None, approximate: bool = False):
        manifest = require_artifact(index, "index")
        built_with = manifest.inputs[0]
        model = model or Path(built_with.path)
        if not model.exists():
            raise FamevilError(f"{index}: was built with the model at {built_with.path}, which is gone; pass --model DIR (the same model)")
        model_manifest = require_checkpoint(model)
        if model_manifest.content_id != built_with.id:
            raise FamevilError(f"--model {model}: is not the model {index} was built with ({built_with.id[:19]}…); use that model or rebuild the index")
        self.index = CatalogueIndex(index, approximate, images=Path(manifest.details["images"]))
        self.model = FashionModel(load_checkpoint(model, model_manifest), model)

    def search(self, text: str | None = None, image: Path | None = None, modify: str | None = None, top: int = 10) -> SearchResult:
        """Text search (`text`), or composed search (`image` and `modify`: how the wanted item differs)."""
        if image is not None:
            if not modify:
                raise FamevilError("--image: composed search also needs --modify TEXT (how the wanted item differs from the image)")
            query = self.model.compose([image], [modify])[0]
            return SearchResult(f"{image} + {modify!r}", COMPOSED_SEARCH, self.index.search(COMPOSED_SEARCH, query, top))
        if not text:
            raise FamevilError("give a text query, or --image REF --modify TEXT for composed search")
        return SearchResult(text, TEXT_SEARCH, self.index.search(TEXT_SEARCH, self.model.encode_texts([text])[0], top))


def results_page(session: SearchSession, result: SearchResult) -> str:
    """One self-contained HTML page: the query and its hits as thumbnails with their scores."""
    cards = []
    for hit in result.hits:
        picture = base64.b64encode(session.index.thumbnail(hit.item)).decode()
        cards.append(
            f'<figure><img src="data:image/jpeg;base64,{picture}" alt="{html.escape(hit.path)}">'
            f"<figcaption>#{hit.rank} · {hit.score:.3f}<br><small>{html.escape(hit.path)}</small></figcaption></figure>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>famevil search: {html.escape(result.query)}</title>
<style>body{{font-family:sans-serif;margin:2em}} main{{display:flex;flex-wrap:wrap;gap:1em}}
figure{{margin:0;width:10em;text-align:center}} img{{max-width:100%}} small{{color:#666;word-break:break-all}}</style></head>
<body><h1>{html.escape(result.kind)} search: {html.escape(result.query)}</h1><main>{"".join(cards)}</main></body></html>
"""
