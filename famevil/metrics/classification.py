"""Classification metrics for sub-category recognition."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def accuracy(truth: Sequence[int], predicted: Sequence[int]) -> float:
    if len(truth) != len(predicted) or not truth:
        raise ValueError("accuracy needs two non-empty label lists of the same length")
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)


def macro_f1(truth: Sequence[int], predicted: Sequence[int]) -> float:
    """F1 averaged over every label that occurs in either list (scikit-learn's default).

    A label that occurs only in `truth` (a subcategory the model never saw in training) scores 0
    and so counts against the model; a label only predicted counts against it too.
    """
    if len(truth) != len(predicted) or not truth:
        raise ValueError("macro_f1 needs two non-empty label lists of the same length")
    support, predicted_count = Counter(truth), Counter(predicted)
    true_positive = Counter(t for t, p in zip(truth, predicted, strict=True) if t == p)
    labels = support.keys() | predicted_count.keys()
    # F1 = 2 tp / (support + predicted), the harmonic mean of precision and recall without 0/0.
    return sum(2 * true_positive[label] / (support[label] + predicted_count[label]) for label in labels) / len(labels)
