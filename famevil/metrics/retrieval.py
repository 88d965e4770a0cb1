"""Retrieval metrics at real scale: recall@K with several positives per query, computed a block of
queries at a time so that no queries x gallery matrix is ever held (FashionGen's validation split is
35.5k images against 35.5k texts).

A query's rank is the number of negatives that score at least as high as its best positive: ties
count against the model, so a constant model cannot score by luck of ordering.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

RECALL_KS = (1, 5, 10)
RANDOM100_NEGATIVES = 100


def ranks_from_scores(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """(queries,) rank of each row's best positive among its columns; a row without positives gets the column count."""
    best = scores.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
    ranks = ((scores >= best) & ~positive).sum(dim=1)
    return torch.where(positive.any(dim=1), ranks, torch.full_like(ranks, scores.shape[1]))


def gallery_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    query_groups: torch.Tensor,
    gallery_groups: torch.Tensor,
    top: int = 10,
    block: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of every query against the whole gallery, and each query's `top` best gallery indices.

    A gallery item is a positive of a query when their groups are equal (for XMR the product id,
    so every view of a product is a positive of its description and the other way round). Memory
    is one (block, gallery) score matrix; positives are looked up by index rather than masked over
    the whole row, since a query has a handful of them among tens of thousands.
    """
    positives, valid = _positive_indices(query_groups, gallery_groups)
    ranks, best = [], []
    for start in range(0, len(queries), block):
        stop = start + block
        scores = queries[start:stop] @ gallery.T
        positive_scores = scores.gather(1, positives[start:stop]).masked_fill(~valid[start:stop], float("-inf"))
        best_positive = positive_scores.amax(dim=1, keepdim=True)
        at_least = (scores >= best_positive).sum(dim=1) - ((positive_scores >= best_positive) & valid[start:stop]).sum(dim=1)
        ranks.append(at_least)
        best.append(scores.topk(min(top, scores.shape[1]), dim=1).indices)
    return torch.cat(ranks), torch.cat(best)


def _positive_indices(query_groups: torch.Tensor, gallery_groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(queries, most positives) gallery indices of each query's positives, and which are real."""
    order = torch.argsort(gallery_groups)
    ordered = gallery_groups[order]
    starts = torch.searchsorted(ordered, query_groups, right=False)
    counts = torch.searchsorted(ordered, query_groups, right=True) - starts
    width = max(int(counts.max()), 1)
    offsets = torch.arange(width)
    valid = offsets[None, :] < counts[:, None]
    slots = (starts[:, None] + offsets[None, :]).clamp(max=len(order) - 1)
    return order[slots], valid


def recall(ranks: torch.Tensor, ks: Sequence[int] = RECALL_KS) -> dict[int, float]:
    """Percent of queries whose best positive is within the top k."""
    return {k: 100 * (ranks < k).float().mean().item() for k in ks}


def random100_candidates(
    query_groups: Sequence[int],
    query_subcategories: Sequence[str],
    gallery_groups: Sequence[int],
    gallery_subcategories: Sequence[str],
    seed: int | Sequence[int],
    queries: int = 1000,
    negatives: int = RANDOM100_NEGATIVES,
) -> tuple[np.ndarray, np.ndarray]:
    """The "random 100" protocol's draw, as the authors' code makes it: `queries` query rows, and per
    query its gallery candidates, first one positive (a random gallery item of its group), then
    `negatives` items of other groups in its subcategory. For XMR the groups are products: against the
    products' texts the negatives are 100 distinct products; against the views' images two views of
    one product may both be drawn, as in the authors' protocol.

    When a subcategory holds fewer negatives than asked (the small demo data set does), the rest are
    drawn from other subcategories, so every query still faces the same number of candidates; a
    gallery too small for that many negatives at all gets as many as its smallest pool allows (the
    caller sees it in the candidates' width).
    """
    rng = np.random.default_rng(seed)
    query_groups, query_subcategories = np.asarray(query_groups), np.asarray(query_subcategories)
    gallery_groups, gallery_subcategories = np.asarray(gallery_groups), np.asarray(gallery_subcategories)
    _, sizes = np.unique(gallery_groups, return_counts=True)
    negatives = min(negatives, len(gallery_groups) - int(sizes.max()))
    chosen = rng.choice(len(query_groups), size=min(queries, len(query_groups)), replace=False)
    candidates = np.empty((len(chosen), negatives + 1), dtype=np.int64)
    for i, row in enumerate(chosen):
        own = gallery_groups == query_groups[row]
        same = np.flatnonzero(~own & (gallery_subcategories == query_subcategories[row]))
        picked = rng.choice(same, size=min(negatives, len(same)), replace=False)
        if len(picked) < negatives:
            rest = np.flatnonzero(~own & (gallery_subcategories != query_subcategories[row]))
            picked = np.concatenate([picked, rng.choice(rest, size=negatives - len(picked), replace=False)])
        candidates[i, 0], candidates[i, 1:] = rng.choice(np.flatnonzero(own)), picked
    return chosen, candidates


def candidate_ranks(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(queries,) rank of candidate 0 (the positive) among each query's own candidates.

    queries: (Q, D); candidates: (Q, C, D).
    """
    scores = torch.einsum("qd,qcd->qc", queries, candidates)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[:, 0] = True
    return ranks_from_scores(scores, positive)


NDCG_AT = 10


def relevance_in_rank_order(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """(N,) whether each of a query's N results is relevant, the results in rank order: best score
    first, and among equal scores the irrelevant first, so that ties count against the model as in
    ranks_from_scores (the first relevant result's position is the rank it gives)."""
    by_relevance = torch.argsort(relevant.to(torch.int8), stable=True)
    order = by_relevance[torch.argsort(scores[by_relevance], descending=True, stable=True)]
    return relevant[order]


def first_relevant_rank(in_order: torch.Tensor) -> int:
    """0-based position of the first relevant result; the result count when none is relevant (as ranks_from_scores)."""
    found = torch.nonzero(in_order)
    return int(found[0]) if len(found) else len(in_order)


def reciprocal_rank(in_order: torch.Tensor) -> float:
    """1 / the first relevant result's 1-based position; 0 when none is relevant."""
    found = torch.nonzero(in_order)
    return 1 / (int(found[0]) + 1) if len(found) else 0.0


def ndcg(in_order: torch.Tensor, k: int = NDCG_AT) -> float:
    """Normalised discounted cumulative gain at k with binary relevance: the top k's gains discounted by
    1 / log2(position + 1), over those of the best order (every relevant result first); 0 when none is relevant."""
    discounts = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    top = in_order[:k].to(torch.float64)
    ideal = discounts[: min(int(in_order.sum()), k)].sum()
    return float((top * discounts[: len(top)]).sum() / ideal) if ideal > 0 else 0.0
