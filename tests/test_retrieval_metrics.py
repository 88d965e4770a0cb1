"""Retrieval metrics against hand-built similarity matrices and a dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from famevil.metrics.retrieval import (
    candidate_ranks,
    first_relevant_rank,
    gallery_ranks,
    ndcg,
    random100_candidates,
    ranks_from_scores,
    recall,
    reciprocal_rank,
    relevance_in_rank_order,
)


def test_ranks_on_a_hand_built_matrix_with_ties_and_several_positives():
    scores = torch.tensor(
        [
            [0.9, 0.5, 0.1, 0.0],  # positive 0.5 beaten by 0.9: rank 1
            [0.2, 0.8, 0.8, 0.0],  # positive 0.2 beaten by two: rank 2
            [0.3, 0.3, 0.3, 0.3],  # all tied: ties count against the model, rank 3
            [0.1, 0.7, 0.9, 0.8],  # two positives (0.7, 0.8): the best counts, beaten by 0.9: rank 1
            [0.9, 0.8, 0.7, 0.6],  # no positive at all: never retrieved
        ]
    )
    positive = torch.tensor(
        [
            [False, True, False, False],
            [True, False, False, False],
            [False, False, True, False],
            [False, True, False, True],
            [False, False, False, False],
        ]
    )
    ranks = ranks_from_scores(scores, positive)
    assert ranks.tolist() == [1, 2, 3, 1, 4]
    assert recall(ranks, (1, 2, 4)) == pytest.approx({1: 0.0, 2: 40.0, 4: 80.0})


def test_blocked_gallery_ranks_equal_a_dense_computation():
    generator = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(23, 8, generator=generator), torch.randn(31, 8, generator=generator)
    query_groups = torch.randint(0, 9, (23,), generator=generator)
    gallery_groups = torch.randint(0, 9, (31,), generator=generator)
    query_groups[0] = 99  # a query with no positive in the gallery
    ranks, top = gallery_ranks(queries, gallery, query_groups, gallery_groups, top=5, block=7)
    dense = queries @ gallery.T
    assert torch.equal(ranks, ranks_from_scores(dense, query_groups[:, None] == gallery_groups[None, :]))
    assert torch.equal(top, dense.topk(5, dim=1).indices)
    assert ranks[0] == 31


def test_random100_negatives_share_the_subcategory_and_are_never_positives():
    rng = np.random.default_rng(0)
    subcategories = rng.choice(["a", "b", "c"], size=900)
    products = rng.integers(0, 300, size=900)
    chosen, candidates = random100_candidates(products, subcategories, products, subcategories, seed=1, queries=50, negatives=100)
    assert candidates.shape == (50, 101)
    for query, row in zip(chosen, candidates, strict=True):
        assert products[row[0]] == products[query]  # the positive: a row of the query's product
        assert (subcategories[row[1:]] == subcategories[query]).all()
        assert (products[row[1:]] != products[query]).all()
        assert len(set(row[1:])) == 100
    again = random100_candidates(products, subcategories, products, subcategories, seed=1, queries=50)
    other = random100_candidates(products, subcategories, products, subcategories, seed=2, queries=50)
    assert np.array_equal(again[1], candidates) and not np.array_equal(other[1], candidates)


def test_random100_against_the_products_texts_never_draws_a_product_twice():
    """The authors' draw: image queries (every view) against one text per product."""
    rng = np.random.default_rng(3)
    view_products = np.repeat(np.arange(400), rng.integers(1, 6, size=400))  # 1 to 5 views a product
    product_subcategories = rng.choice(["a", "b"], size=400)
    text_products = np.arange(400)
    chosen, candidates = random100_candidates(view_products, product_subcategories[view_products], text_products, product_subcategories, seed=0, queries=300)
    for query, row in zip(chosen, candidates, strict=True):
        assert len(set(text_products[row])) == 101 and text_products[row[0]] == view_products[query]


def test_random100_tops_up_from_other_subcategories_when_one_is_small():
    subcategories = ["rare"] * 5 + ["common"] * 200
    products = list(range(205))
    _, candidates = random100_candidates(products, subcategories, products, subcategories, seed=0, queries=205, negatives=100)
    rare_query = next(row for row in candidates if row[0] < 5)
    assert set(rare_query[1:5]) <= set(range(5)) and len(set(rare_query[1:])) == 100


def test_candidate_ranks_rank_the_first_candidate():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[[1.0, 0.0], [0.5, 0.0], [2.0, 0.0]], [[0.0, 1.0], [1.0, 0.0], [0.0, 0.5]]])
    assert candidate_ranks(queries, candidates).tolist() == [1, 0]


def test_a_ranked_list_puts_ties_against_the_model_and_gives_mrr_and_ndcg_by_hand():
    scores = torch.tensor([0.1, 0.5, 0.9, 0.5])
    relevant = torch.tensor([True, True, False, False])
    in_order = relevance_in_rank_order(scores, relevant)
    assert in_order.tolist() == [False, False, True, True]  # 0.9; the tie at 0.5, its irrelevant result first; 0.1
    assert first_relevant_rank(in_order) == ranks_from_scores(scores[None], relevant[None]).item() == 2
    assert reciprocal_rank(in_order) == pytest.approx(1 / 3)
    # DCG: 1/log2(4) + 1/log2(5) = 0.5 + 0.430677; the best order's: 1 + 1/log2(3) = 1.630930
    assert ndcg(in_order) == pytest.approx(0.930677 / 1.630930, abs=1e-6)


def test_ndcg_counts_only_the_top_k_and_no_relevant_result_scores_zero():
    in_order = torch.tensor([True, False, False, True])
    assert ndcg(in_order, k=1) == pytest.approx(1.0)  # the ideal top 1 holds one relevant result too
    assert ndcg(in_order, k=3) == pytest.approx(1 / (1 + 1 / np.log2(3)))  # the second relevant result is beyond k
    assert ndcg(in_order, k=4) == pytest.approx((1 + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))
    nothing = torch.zeros(4, dtype=torch.bool)
    assert (first_relevant_rank(nothing), reciprocal_rank(nothing), ndcg(nothing)) == (4, 0.0, 0.0)
