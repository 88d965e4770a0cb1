"""famevil evaluate-search: how well an index finds a shop's products for the shop's own queries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from data_specs.evaluations import METRICS_FILE, metrics_payload
from data_specs.manifest import InputRef, Manifest, file_sha256, read_manifest, write_manifest
from data_specs.staging import check_destination, staging
from famevil.progress import progress_bar
from famevil.search_quality import read_queries, search_ranking, summary
from famevil.serving import SearchSession

RANKINGS_FILE = "rankings.jsonl"  # per query: its line, search, relevant ids, rank and top 10


@dataclass(frozen=True)
class EvaluateSearchResult:
    out: Path
    manifest: Manifest
    metrics: dict[str, dict[str, float]]  # per kind of search, and "all"


def evaluate_search(index: Path, queries: Path, out: Path, model: Path | None = None, overwrite: bool = False) -> EvaluateSearchResult:
    """Measure search on your own queries: R@1/5/10, MRR and nDCG@10 over the index's products.

    --queries is a CSV or JSON Lines file, one query a row: `query` (text search), or `image` and
    `modify` (composed search), or `image` alone (similar items), and `relevant`, the product ids
    that answer it separated by "|". Image paths are relative to the queries file's folder. Each
    query ranks every product of the index (its best view, no filter); R@k is the percent of queries
    with a relevant product in the top k; MRR and nDCG@10 (binary relevance) are x100; ties count
    against the model. Per kind of search and over all queries, written to metrics.json with each
    query's ranking (rankings.jsonl). A row without a query or relevant id, or naming a product the
    index lacks, is refused in one line with its file and line (docs/shop.md).

    Example (seconds on a laptop CPU, after famevil index; queries.csv holds the header
    query,relevant and the row "navy wool cardigan,B002F7A5G2.png"):

        famevil evaluate-search runs/example/index \\
            --queries runs/example/queries.csv --out runs/example/eval/search
    """
    check_destination(out, overwrite, inputs=(index, queries, model))
    session = SearchSession(index, model)
    products = {product["product_id"] for product in session.index.products}
    asked = read_queries(queries, products, session.searches)
    built_with = read_manifest(index)
    model_ref = built_with.inputs[0]
    inputs = [
        InputRef("index", built_with.kind, built_with.content_id, str(index)),
        InputRef(model_ref.role, model_ref.kind, model_ref.id, str(session.model.source)),
    ]
    digest = file_sha256(queries)
    with staging(out, {"inputs": [ref.id for ref in inputs], "queries": digest}, resume=False) as stage:
        rankings = []
        with progress_bar("evaluate-search", len(asked), unit="queries") as advance:
            for query in asked:
                rankings.append(search_ranking(session, query))
                advance(1)
        metrics = summary(rankings)
        (stage.partial / METRICS_FILE).write_text(metrics_payload(metrics, []), encoding="utf-8")
        with open(stage.partial / RANKINGS_FILE, "w", encoding="utf-8") as lines:
            lines.writelines(json.dumps(ranked.record(), ensure_ascii=False) + "\n" for ranked in rankings)
        details = {"queries": str(queries), "queries_sha256": digest, "count": len(asked), "products": len(products)}
        manifest = write_manifest(stage.partial, "search-metrics", inputs=inputs, details=details)
        stage.publish()
    return EvaluateSearchResult(out, manifest, metrics)
