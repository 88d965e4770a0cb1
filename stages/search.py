"""famevil search: text, similar-item or composed search over a catalogue index, by product, as rows or as a page of thumbnails."""

from __future__ import annotations

from pathlib import Path

from data_specs.indexes import EXACT_BACKEND
from data_specs.staging import check_file_destination, write_file
from famevil.serving import SearchResult, SearchSession, results_page


def search(
    index: Path,
    text: str | None = None,
    image: Path | None = None,
    modify: str | None = None,
    top: int = 10,
    offset: int = 0,
    category: str | None = None,
    subcategory: str | None = None,
    model: Path | None = None,
    backend: str = EXACT_BACKEND,
    html: Path | None = None,
) -> SearchResult:
    """Search a catalogue index by text, by an image alone (similar products), or by a reference image
    and a modification (composed search, where the index's model has composed retrieval).

    Each result is a product, shown as its best view, with its id and title. --category and
    --subcategory filter before ranking; --offset skips the first results (the next page). Similar
    items leave out the reference's own product when the index holds it. Exact search over every item;
    --approximate: FAISS inverted files; --backend qdrant://HOST:PORT/COLLECTION: a Qdrant collection
    famevil export-index wrote, items and thumbnails still read from INDEX (docs/serving.md). Results
    as a table, --json, or --html FILE, a page of thumbnails with titles, product ids and scores, and
    the reference image for an image search.

    Example (seconds on a laptop CPU, after famevil index; the last after famevil export-index):

        famevil search runs/example/index "navy wool cardigan" --top 5
        famevil search runs/example/index \\
            --image runs/example/raw/fashioniq/images/B002F7A5G2.png
        famevil search runs/example/index \\
            --image runs/example/raw/fashioniq/images/B002F7A5G2.png \\
            --modify "is red with short sleeves"
        famevil search runs/example/index "navy wool cardigan" \\
            --backend qdrant+local:runs/example/qdrant/catalogue
    """
    session = SearchSession(index, model, backend)
    if html is not None:  # once the session has found the model, which the page may not overwrite either
        check_file_destination(html, "--html", [index, session.model.source, image])
    result = session.search(text, image, modify, top, offset, category, subcategory)
    if html is not None:
        write_file(html, results_page(session, result, image), "--html")
    return result
