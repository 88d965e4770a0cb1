"""Qdrant as famevil's search backend: export rate and query latency against exact search.

On a synthetic index (benchmarks/search_speed.py's: random vectors, --dim wide, four categories), the
points/s famevil export-index writes into the collection, then p50 and p95 latency of one ranked query
(no text encoder: a random query vector, top 10 products), unfiltered and filtered by category, through
the collection and through exact search, and whether the two agree on the top 10. With --to
qdrant+local:FOLDER/COLLECTION (the default, a temporary folder) it is qdrant-client's local mode: a
brute-force search in Python, no server, so its latency says nothing of a Qdrant server's.

    python benchmarks/qdrant_speed.py --size 2000
    python benchmarks/qdrant_speed.py --size 100000 --to qdrant://localhost:6333/benchmark
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from search_speed import synthetic_index, synthetic_item  # benchmarks/search_speed.py, beside this script

from data_specs.indexes import IMAGE_VECTORS
from famevil.catalogue_index import CatalogueIndex
from famevil.qdrant_backend import QdrantRanker, export_index, parse_target
from famevil.ranking import Among, ExactRanker

CATEGORIES = ("DRESSES", "TOPS", "SHOES", "BAGS")


def latencies(catalogue: CatalogueIndex, queries: torch.Tensor, among: Among) -> tuple[float, float, list[list[int]]]:
    catalogue.search(IMAGE_VECTORS, queries[0], 10, among=among)  # warm up
    seconds, found = [], []
    for query in queries:
        began = time.perf_counter()
        found.append([hit.item for hit in catalogue.search(IMAGE_VECTORS, query, 10, among=among)])
        seconds.append(time.perf_counter() - began)
    return 1000 * statistics.median(seconds), 1000 * statistics.quantiles(seconds, n=20)[18], found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2000, help="items in the synthetic index")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--to", help="the collection (default: local mode in a temporary folder)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "index"
        vectors = torch.nn.functional.normalize(torch.randn(args.size, args.dim, generator=torch.Generator().manual_seed(1)), dim=-1).half()
        synthetic_index(root, vectors, [synthetic_item(n) | {"category": CATEGORIES[n % len(CATEGORIES)]} for n in range(args.size)])
        target = parse_target(args.to or f"qdrant+local:{scratch}/qdrant/benchmark", "--to")
        content_id = f"sha256:benchmark-{args.size}-{args.dim}"
        exported = export_index(root, content_id, target, args.batch_size, overwrite=True)
        print(f"export: {exported.items} points in {exported.seconds:.1f} s, {exported.items / exported.seconds:,.0f} points/s ({target})")
        catalogue = CatalogueIndex(root)
        exact, qdrant = ExactRanker(catalogue), QdrantRanker(catalogue, target, content_id)
        queries = torch.nn.functional.normalize(torch.randn(args.queries, args.dim, generator=torch.Generator().manual_seed(2)), dim=-1)
        print(f"{'ranker':>8}{'filter':>10}{'p50 ms':>9}{'p95 ms':>9}{'same top 10':>13}")
        for among, named in ((Among(), "none"), (Among(category="TOPS"), "category")):
            found = {}
            for name, ranker in (("exact", exact), ("qdrant", qdrant)):
                catalogue.ranker = ranker
                p50, p95, found[name] = latencies(catalogue, queries, among)
                same = f"{sum(a == b for a, b in zip(found[name], found['exact'], strict=True))}/{len(queries)}"
                print(f"{name:>8}{named:>10}{p50:>9.2f}{p95:>9.2f}{same:>13}")


if __name__ == "__main__":
    main()
