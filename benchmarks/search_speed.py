"""Indexing throughput, text-search latency and memory, and approximate search's recall, side by side.

1. Indexing: `famevil index` on --images against the same model's raw encoding rate on the same
   images (read, transform, both catalogue vectors; nothing written), images/s.
2. Text search, warm, exact, on the CPU: p50 and p95 latency of one query (the text encoder
   included) against catalogues of 10k and 100k items, and the memory one item takes once loaded.
   The catalogue's vectors are the indexed images' own, repeated with a little noise up to the size.
3. Approximate search (FAISS inverted files, `--approximate`): the same latencies, and its recall@10
   against exact search.

    python benchmarks/search_speed.py --model runs/demo/seed-0/student --images runs/demo/raw/fashioniq/images
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import famevil
from data_specs.indexes import COMPOSED_VECTORS, IMAGE_VECTORS, ITEMS_FILE, THUMBNAIL_BYTES, THUMBNAIL_OFFSETS, VECTORS_FILE
from famevil.catalogue_index import CatalogueIndex, list_images
from stages.index import index

QUERIES = ["navy wool cardigan", "red slip dress", "black leather tote bag", "striped cotton shirt", "grey joggers", "white sneakers"]


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def indexing(model_dir: Path, images: list[Path], batch_size: int, work: Path) -> torch.Tensor:
    model = famevil.load(model_dir)
    began = time.perf_counter()
    vectors = [model.catalogue_vectors(images[start : start + batch_size])[IMAGE_VECTORS] for start in range(0, len(images), batch_size)]
    raw = len(images) / (time.perf_counter() - began)
    folder = work / "images"
    folder.mkdir()
    for image in images:
        (folder / image.name).symlink_to(image.resolve())
    result = index(model_dir, folder, work / "index", batch_size=batch_size)
    rate = result.items / result.seconds
    print(f"indexing {len(images)} images: raw encoding {raw:.1f} images/s, famevil index {rate:.1f} images/s ({100 * rate / raw:.0f}% of raw)")
    return torch.cat(vectors)


def synthetic_index(root: Path, seed_vectors: torch.Tensor, size: int) -> None:
    """An index folder of `size` items: the given vectors repeated with noise, 3 kB thumbnails."""
    generator = torch.Generator().manual_seed(0)
    rows = seed_vectors[torch.arange(size) % len(seed_vectors)]
    vectors = torch.nn.functional.normalize(rows + 0.05 * torch.randn(rows.shape, generator=generator), dim=-1).half()
    root.mkdir()
    thumbnail = 3000
    save_file(
        {
            IMAGE_VECTORS: vectors,
            COMPOSED_VECTORS: vectors.clone(),
            THUMBNAIL_BYTES: torch.zeros(size * thumbnail, dtype=torch.uint8),
            THUMBNAIL_OFFSETS: torch.arange(size + 1, dtype=torch.int64) * thumbnail,
        },
        root / VECTORS_FILE,
    )
    with open(root / ITEMS_FILE, "w", encoding="utf-8") as lines:
        lines.writelines(json.dumps(synthetic_item(i)) + "\n" for i in range(size))


def synthetic_item(number: int) -> dict:
    """An item as famevil index records an image listed without a catalogue: its own product."""
    path = f"catalogue/{number:07d}.jpg"
    return {
        "path": path,
        "sha256": f"{number:064x}",
        "product_id": path,
        "title": "",
        "description": "",
        "category": "",
        "subcategory": "",
        "payload": {},
        "id": number,
    }


def latencies(model: famevil.FashionModel, catalogue: CatalogueIndex, repeats: int) -> tuple[float, float]:
    for text in QUERIES:  # warm up
        catalogue.search(IMAGE_VECTORS, model.encode_texts([text])[0], 10)
    seconds = []
    for i in range(repeats):
        began = time.perf_counter()
        catalogue.search(IMAGE_VECTORS, model.encode_texts([QUERIES[i % len(QUERIES)] + f" {i}"])[0], 10)
        seconds.append(time.perf_counter() - began)
    cuts = statistics.quantiles(seconds, n=20)
    return 1000 * statistics.median(seconds), 1000 * cuts[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint with both retrieval tasks (the student)")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=512, help="images to index")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        listed = list_images(args.images)
        vectors = indexing(args.model, [listed.root / item.path for item in listed.items[: args.count]], args.batch_size, work)
        model = famevil.load(args.model)
        print(f"{'items':>8}{'search':>13}{'p50 ms':>9}{'p95 ms':>9}{'memory/item':>13}{'recall@10':>11}")
        for size in args.sizes:
            root = work / f"synthetic-{size}"
            synthetic_index(root, vectors, size)
            before = resident_bytes()
            exact = CatalogueIndex(root)
            per_item = (resident_bytes() - before) / size
            p50, p95 = latencies(model, exact, args.repeats)
            print(f"{size:>8}{'exact':>13}{p50:>9.1f}{p95:>9.1f}{per_item:>11.0f} B{'':>11}")
            approximate = CatalogueIndex(root, approximate=True)
            p50, p95 = latencies(model, approximate, args.repeats)
            queries = model.encode_texts([f"{text} {i}" for i in range(20) for text in QUERIES])
            found = sum(len({h.item for h in approximate.search(IMAGE_VECTORS, q, 10)} & {h.item for h in exact.search(IMAGE_VECTORS, q, 10)}) for q in queries)
            print(f"{size:>8}{'approximate':>13}{p50:>9.1f}{p95:>9.1f}{'':>13}{found / (10 * len(queries)):>11.3f}")


if __name__ == "__main__":
    main()
