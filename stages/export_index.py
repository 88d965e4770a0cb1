"""famevil export-index: an index's items and vectors as points of a Qdrant collection, for search there."""

from __future__ import annotations

from pathlib import Path

from data_specs.manifest import require_artifact
from famevil.qdrant_backend import Exported, parse_target
from famevil.qdrant_backend import export_index as export_points


def export_index(index: Path, to: str, batch_size: int = 256, overwrite: bool = False) -> Exported:
    """Export an index to a Qdrant collection, for famevil search and serve --backend to rank there.

    Each item becomes a point (id: its number in the index) with its vectors (image; composed, where
    the model has composed retrieval; cosine) and its path, sha256, product_id, title, category,
    subcategory, product number and the index's content id; product vectors (an index built with
    --text-weight) go to COLLECTION-products. --to is qdrant://HOST[:PORT]/COLLECTION (HTTP),
    qdrants://HOST[:PORT]/COLLECTION (TLS) or qdrant+local:FOLDER/COLLECTION (qdrant-client's
    embedded local mode, no server); a server's API key is read from QDRANT_API_KEY. Resumable batch
    by batch: rerun the same command after an interruption. A collection holding another index's
    points is refused (--overwrite replaces it). Items and thumbnails stay in INDEX, which search and
    serve still read (docs/serving.md, Qdrant).

    Example (seconds on a laptop CPU, after famevil index; local mode, no server):

        famevil export-index runs/example/index \\
            --to qdrant+local:runs/example/qdrant/catalogue
    """
    target = parse_target(to, "--to")
    manifest = require_artifact(index, "index")
    return export_points(index, manifest.content_id, target, batch_size, overwrite)
