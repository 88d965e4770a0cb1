"""Benchmark: how mixed the training batches are, the stream as `famevil teach` and `distill` read it.

    python benchmarks/batch_order.py runs/demo/shards [more shards ...] [--batches 200 --batch-size 32]

For each shards artifact it draws the training stream of FashionGen's train subset (and FashionIQ's
train triplets) exactly as training does (famevil.data.loading.training_batches: resampled shards, a
1,000-sample shuffle buffer) and prints, over the first --batches batches:

- the share of in-batch pairs with the same subcategory (FashionIQ: the same garment group), against
  the share expected of batches drawn at random from the whole split (the sum of squared label shares);
- the share of in-batch pairs that are two views of one product (random: about views per product / rows);
- the spread: how many of the release's ten row deciles a batch draws from, on average (random: about 10).

Made for issue 24 item 5: shards written in the release's order put a product's views side by side
and let any ordering of the release (by category, by date) reach the batches.
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from pathlib import Path

import numpy as np

from data_specs.shards import Shards, fashiongen_subset, triplet_subset
from famevil.data.loading import records, training_batches


def _keep(samples: list[dict], transform, tokenize) -> list[dict]:
    return [sample["json"] | {"__key__": sample["__key__"]} for sample in samples]


def _pair_share(batch: list, label) -> float:
    pairs = list(itertools.combinations(batch, 2))
    return sum(label(a) == label(b) for a, b in pairs) / len(pairs)


def _expected_share(labels: list) -> float:
    """Same-label pairs among all pairs of the split: random batches without replacement."""
    counts = np.array(list(Counter(labels).values()), dtype=np.float64)
    total = counts.sum()
    return float((counts * (counts - 1)).sum() / (total * (total - 1)))


def _row(sample: dict) -> int:
    return int(sample["__key__"].rsplit("-", 1)[1])


def measure(shards: Path, subset: str, label: str, batches: int, batch_size: int, seed: int) -> dict[str, float]:
    split = list(records(Shards.open(shards), subset))
    stream = training_batches(Shards.open(shards), subset, _keep, batch_size, None, None, seed=seed, epoch=0, batches_per_epoch=batches)
    drawn = list(stream)
    figures = {
        "same_label": float(np.mean([_pair_share(b, lambda s: s[label]) for b in drawn])),
        "same_label_random": _expected_share([r[label] for r in split]),
    }
    if subset.startswith("fashiongen"):
        products = Counter(r["product_id"] for r in split)
        pairs_total = len(split) * (len(split) - 1)
        figures["same_product"] = float(np.mean([_pair_share(b, lambda s: s["product_id"]) for b in drawn]))
        figures["same_product_random"] = sum(n * (n - 1) for n in products.values()) / pairs_total
        rows = len(split)
        figures["deciles"] = float(np.mean([len({_row(s) * 10 // rows for s in b}) for b in drawn]))
        figures["deciles_random"] = float(10 * (1 - (0.9**batch_size)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards", type=Path, nargs="+", help="shards artifacts (famevil prepare)")
    parser.add_argument("--batches", type=int, default=200, help="training batches drawn per subset")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="the training seed (the stream's shard and buffer draws)")
    args = parser.parse_args()
    subsets = [(fashiongen_subset("train"), "subcategory"), (triplet_subset("train"), "group")]
    print("| shards | subset | same-label pairs | random batches | same-product pairs | random | row deciles per batch | random |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for shards in args.shards:
        for subset, label in subsets:
            if not (shards / subset).is_dir():
                continue
            f = measure(shards, subset, label, args.batches, args.batch_size, args.seed)
            tail = (
                f"{100 * f['same_product']:.2f}% | {100 * f['same_product_random']:.2f}% | {f['deciles']:.2f} | {f['deciles_random']:.2f}"
                if "deciles" in f
                else "| | |"
            )
            print(f"| {shards} | {subset} ({label}) | {100 * f['same_label']:.2f}% | {100 * f['same_label_random']:.2f}% | {tail} |")


if __name__ == "__main__":
    main()
