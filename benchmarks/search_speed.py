"""Indexing throughput, text-search latency and memory, and approximate search's recall, side by side.

1. Indexing: `famevil index` on --images against the same model's raw encoding rate on the same
   images (read, transform, both catalogue vectors; nothing written), images/s.
2. Text search over a large index (--size, a million items by default) whose vectors behave like
   trained ones: the model's embeddings of every --images image, each made into near copies
   (near_copies). Exact search, then FAISS's compact index (famevil index --approximate; --specs
   compares others): build seconds, seconds to open the index, bytes per item on disk (the FAISS file)
   and in private memory once opened and searched, p50/p95 ms of the search alone and with the text
   encoder, and recall@10 against exact search, on 120 text queries.

    python benchmarks/search_speed.py --model runs/demo/seed-0/student --images runs/demo/raw/fashioniq/images
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

import famevil
from data_specs.indexes import IMAGE_VECTORS, THUMBNAIL_BYTES, THUMBNAIL_OFFSETS, VECTORS_FILE
from famevil import approximate
from famevil.catalogue_index import CatalogueIndex, list_images, write_index_files
from stages.index import index

QUERIES = ["navy wool cardigan", "red slip dress", "black leather tote bag", "striped cotton shirt", "grey joggers", "white sneakers"]


def indexing(model_dir: Path, images: list[Path], batch_size: int, work: Path) -> None:
    model = famevil.load(model_dir)
    began = time.perf_counter()
    for start in range(0, len(images), batch_size):
        model.catalogue_vectors(images[start : start + batch_size])
    raw = len(images) / (time.perf_counter() - began)
    folder = work / "images"
    folder.mkdir()
    for image in images:
        (folder / image.name).symlink_to(image.resolve())
    result = index(model_dir, folder, work / "index", batch_size=batch_size)
    rate = result.items / result.seconds
    print(f"indexing {len(images)} images: raw encoding {raw:.1f} images/s, famevil index {rate:.1f} images/s ({100 * rate / raw:.0f}% of raw)")


def near_copies(sources: torch.Tensor, size: int) -> tuple[torch.Tensor, float]:
    """`size` vectors, each a source vector (in turn) plus Gaussian noise, L2-normalised. The noise is as
    strong as the demo images' own spread: a copy's cosine to its source is, on median, the cosine of a
    demo image to its nearest other demo image. Returns the vectors and that cosine."""
    similarity = sources @ sources.T
    similarity.fill_diagonal_(-1)
    nearest = float(similarity.max(1).values.median())
    sigma = ((1 / nearest**2 - 1) / sources.shape[1]) ** 0.5  # E|noise|^2 = sigma^2 d gives cosine 1 / sqrt(1 + sigma^2 d)
    generator = torch.Generator().manual_seed(0)
    copies = [
        torch.nn.functional.normalize(
            sources[torch.arange(start, min(start + 65_536, size)) % len(sources)]
            + sigma * torch.randn(min(65_536, size - start), sources.shape[1], generator=generator),
            dim=-1,
        ).half()
        for start in range(0, size, 65_536)
    ]
    return torch.cat(copies), nearest


def synthetic_index(root: Path, vectors: torch.Tensor, items: list[dict] | None = None) -> None:
    """An index folder of the given image vectors, without thumbnails; items: one per vector, by default
    each its own product (synthetic_item)."""
    size = len(vectors)
    items = items or [synthetic_item(number) for number in range(size)]
    root.mkdir()
    empty = {THUMBNAIL_BYTES: torch.zeros(0, dtype=torch.uint8), THUMBNAIL_OFFSETS: torch.zeros(size + 1, dtype=torch.int64)}
    write_index_files(root, {IMAGE_VECTORS: vectors} | empty, items, [])


def synthetic_item(number: int) -> dict:
    """An item as famevil index records an image listed without a catalogue: its own product."""
    path = f"catalogue/{number:07d}.jpg"
    return {"path": path, "sha256": f"{number:064x}", "product_id": path, "title": "", "description": "", "category": "", "subcategory": "", "payload": {}}


def anonymous_bytes() -> int:
    """This process's private resident memory (RssAnon): what it holds beyond the memory-mapped files' page cache."""
    return int(re.search(r"RssAnon:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def latencies(model: famevil.FashionModel, catalogue: CatalogueIndex, repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds of one text query: the search alone (on its encoded query) and with the text encoder."""
    for text in QUERIES:  # warm up
        catalogue.search(IMAGE_VECTORS, model.encode_texts([text])[0], 10)
    alone, encoded = [], []
    for i in range(repeats):
        began = time.perf_counter()
        query = model.encode_texts([QUERIES[i % len(QUERIES)] + f" {i}"])[0]
        between = time.perf_counter()
        catalogue.search(IMAGE_VECTORS, query, 10)
        ended = time.perf_counter()
        alone.append(1000 * (ended - between))
        encoded.append(1000 * (ended - began))
    return alone, encoded


def percentiles(milliseconds: list[float]) -> str:
    cuts = statistics.quantiles(milliseconds, n=20)
    return f"{statistics.median(milliseconds):7.2f}{cuts[18]:9.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint with both retrieval tasks (the student)")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=512, help="images to index with famevil index")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=1_000_000, help="items of the large index")
    parser.add_argument(
        "--specs", nargs="+", default=[None], help="FAISS index_factory strings of inverted files to compare, e.g. IVF4000,PQ32 (default: famevil's own choice)"
    )
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--probes", type=int, nargs="+", default=[approximate.PROBES], help="inverted-file cells searched per query, swept")
    parser.add_argument("--rerank", type=int, nargs="+", default=[approximate.RERANK], help="candidates reranked per wanted, swept")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        listed = list_images(args.images)
        files = [listed.root / item.path for item in listed.items]
        indexing(args.model, files[: args.count], args.batch_size, work)
        model = famevil.load(args.model)
        sources = torch.cat([model.catalogue_vectors(files[start : start + 128])[IMAGE_VECTORS] for start in range(0, len(files), 128)])
        vectors, nearest = near_copies(sources, args.size)
        print(
            f"{args.size} items: {len(sources)} demo images' vectors, about {args.size // len(sources)} near copies each "
            f"(noise as strong as a demo image's nearest neighbour: median cosine {nearest:.3f} to its source)"
        )
        root = work / "large"
        synthetic_index(root, vectors)
        exact = CatalogueIndex(root)
        queries = model.encode_texts([f"{text} {i}" for i in range(20) for text in QUERIES])
        truth = [{h.item for h in exact.search(IMAGE_VECTORS, q, 10)} for q in queries]
        alone, encoded = latencies(model, exact, 50)
        print(
            f"{'index probes/rerank':<36}{'build s':>8}{'open s':>8}{'B/item':>8}{'RAM B/item':>11}{'p50 ms':>8}{'p95 ms':>9}{'+text p50':>10}{'p95':>9}{'recall@10':>10}"
        )
        print(f"{'exact (float32)':<36}{'':>8}{'':>8}{2 * vectors.shape[1]:>8}{4 * vectors.shape[1]:>11}{percentiles(alone)}{percentiles(encoded)}{1.0:>10.3f}")
        del exact
        for spec in args.specs:
            for old in root.glob("*.faiss"):
                old.unlink()
            began = time.perf_counter()
            approximate.write(root, IMAGE_VECTORS, approximate.build(vectors, spec))
            built = time.perf_counter() - began
            on_disk = (root / approximate.APPROXIMATE_FILE.format(IMAGE_VECTORS)).stat().st_size / args.size
            with multiprocessing.get_context("spawn").Pool(1) as fresh:  # this process's heap holds the exact run's freed pages
                opened, private, cold = fresh.apply(opened_in_fresh_process, (root, queries))
            compact = CatalogueIndex(root, approximate=True)
            name = spec or approximate.factory_spec(len(vectors))
            for probes in args.probes:
                for rerank in args.rerank:
                    compact.ranker.probes, compact.ranker.rerank = probes, rerank
                    alone, encoded = latencies(model, compact, args.repeats)
                    found = sum(len({h.item for h in compact.search(IMAGE_VECTORS, q, 10)} & t) for q, t in zip(queries, truth, strict=True))
                    label = f"{name} {probes}/{rerank}"
                    print(
                        f"{label:<36}{built:>8.0f}{opened:>8.1f}{on_disk:>8.0f}{private / args.size:>11.0f}"
                        f"{percentiles(alone)}{percentiles(encoded)}{found / (10 * len(queries)):>10.3f}"
                    )
            print(f"  {name}: {percentiles(cold)}  ms p50/p95 in a fresh process, its vectors file not cached ({approximate.PROBES}/{approximate.RERANK})")
            del compact


def opened_in_fresh_process(root: Path, queries: torch.Tensor) -> tuple[float, int, list[float]]:
    """In a process that has held nothing else: seconds to open the approximate index, the private
    memory (RssAnon) it holds after searching every query once, and those searches' milliseconds with
    the exact vectors' file dropped from the page cache first, so that every vector the rerank reads
    comes from disk (the FAISS file stays cached: its cells are scanned by every query)."""
    with open(root / VECTORS_FILE, "rb") as vectors:
        os.posix_fadvise(vectors.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    before = anonymous_bytes()
    began = time.perf_counter()
    compact = CatalogueIndex(root, approximate=True)
    opened = time.perf_counter() - began
    cold = []
    for query in queries:
        began = time.perf_counter()
        compact.search(IMAGE_VECTORS, query, 10)
        cold.append(1000 * (time.perf_counter() - began))
    return opened, anonymous_bytes() - before, cold


if __name__ == "__main__":
    main()
