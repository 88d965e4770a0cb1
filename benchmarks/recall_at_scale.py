"""Benchmark: full-gallery cross-modal recall at FashionGen's validation size, time and peak memory.

    python benchmarks/recall_at_scale.py [--images 35500] [--dim 512] [--dense-size 8000]

Random unit embeddings for N image views and their N texts (1-6 views per product, the positives),
both directions (image->text and text->image), through famevil's blocked computation; then, at a
size where it fits, a naive dense computation (the whole similarity matrix at once) for time and
memory next to it, checking that both give the same ranks.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from famevil.metrics.retrieval import gallery_ranks, ranks_from_scores, recall


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _embeddings(count: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    products = np.repeat(np.arange(count), rng.integers(1, 7, size=count))[:count]
    generator = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(count, dim, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(count, dim, generator=generator), dim=-1)
    return images, texts, torch.from_numpy(products)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=35_500)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dense-size", type=int, default=8_000)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    images, texts, products = _embeddings(args.images, args.dim, seed=0)
    baseline = _peak_rss_mib()
    began = time.perf_counter()
    i2t, _ = gallery_ranks(images, texts, products, products)
    t2i, _ = gallery_ranks(texts, images, products, products)
    seconds = time.perf_counter() - began
    print(
        f"blocked, {args.images} x {args.images}, both directions: {seconds:.1f} s, peak RSS {_peak_rss_mib():.0f} MiB "
        f"(embeddings and interpreter before it: {baseline:.0f} MiB); I2T R@1/5/10 {list(recall(i2t).values())}"
    )

    small_images, small_texts, small_products = images[: args.dense_size], texts[: args.dense_size], products[: args.dense_size]
    blocked, _ = gallery_ranks(small_images, small_texts, small_products, small_products)
    began = time.perf_counter()
    scores = small_images @ small_texts.T
    dense = ranks_from_scores(scores, small_products[:, None] == small_products[None, :])
    dense_seconds = time.perf_counter() - began
    print(
        f"dense, {args.dense_size} x {args.dense_size}, one direction: {dense_seconds:.2f} s, peak RSS {_peak_rss_mib():.0f} MiB; "
        f"same ranks as blocked: {torch.equal(dense, blocked)}"
    )
    scale = (args.images / args.dense_size) ** 2
    print(f"a dense {args.images} x {args.images} matrix alone would need {scale * scores.numel() * 4 / 2**30:.1f} GiB per direction")


if __name__ == "__main__":
    main()
