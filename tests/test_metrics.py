"""Classification metrics and chance levels against hand computations."""

from __future__ import annotations

from math import comb

import pytest

from famevil.metrics.chance import recall_chance, scr_chance, xmr_chance
from famevil.metrics.classification import accuracy, macro_f1


def test_macro_f1_by_hand():
    truth = [0, 0, 1, 1, 2, 3]
    predicted = [0, 1, 1, 1, 2, 2]
    # class 0: p=1, r=1/2 -> 2/3; class 1: p=2/3, r=1 -> 4/5; class 2: p=1/2, r=1 -> 2/3; class 3 (never predicted): 0
    assert macro_f1(truth, predicted) == pytest.approx((2 / 3 + 4 / 5 + 2 / 3 + 0) / 4)
    assert accuracy(truth, predicted) == pytest.approx(4 / 6)


@pytest.mark.parametrize("gallery, positives, k", [(10, 1, 1), (101, 1, 10), (50, 3, 5), (7, 3, 6)])
def test_recall_chance_matches_the_hypergeometric_formula(gallery, positives, k):
    expected = 1 - comb(gallery - positives, k) / comb(gallery, k)
    assert recall_chance(gallery, positives, k) == pytest.approx(expected)


def test_recall_chance_is_one_when_k_exceeds_the_gallery():
    assert recall_chance(5, 1, 10) == 1.0


def test_xmr_and_scr_chance():
    chance = xmr_chance([1, 1, 2, 3])  # product 1 has two views, so three texts face four images
    assert chance["full_i2t_r1"] == pytest.approx(100 / 3)
    assert chance["full_t2i_r1"] == pytest.approx(100 * (2 / 4 + 1 / 4 + 1 / 4) / 3)
    scr = scr_chance(["a", "a", "b"], ["a", "b", "c", "c"])
    assert scr["accuracy"] == pytest.approx(25.0) and scr["uniform_accuracy"] == pytest.approx(50.0)
    assert scr["macro_f1"] == pytest.approx(100 * (2 * 1 / (1 + 4)) / 3)
