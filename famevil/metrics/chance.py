"""What each task scores by chance on a given data set, in percent like the paper.

A trained model is only as good as its distance from these numbers, so `famevil synth` prints
them for every data set it makes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from famevil.metrics.captioning import caption_scores
from famevil.metrics.classification import macro_f1

RECALL_KS = (1, 5, 10)
RANDOM100_GALLERY = 101  # the query's positive and 100 negatives


def recall_chance(gallery: int, positives: int, k: int) -> float:
    """Probability that a uniformly random ranking of `gallery` items puts one of `positives` in the top k."""
    miss = 1.0
    for i in range(min(k, gallery)):
        miss *= max(gallery - positives - i, 0) / (gallery - i)
    return 1.0 - miss


def xmr_chance(product_ids: Sequence[int]) -> dict[str, float]:
    """Cross-modal retrieval on the authors' galleries: every view's image, one text per product.
    Image to text: one positive among the products' texts; text to image: any of the product's views
    among every view. Random 100: one positive among 101."""
    views = Counter(product_ids)
    chance = {f"full_i2t_r{k}": 100 * recall_chance(len(views), 1, k) for k in RECALL_KS}
    chance |= {f"full_t2i_r{k}": 100 * float(np.mean([recall_chance(len(product_ids), n, k) for n in views.values()])) for k in RECALL_KS}
    chance |= {f"random100_r{k}": 100 * recall_chance(RANDOM100_GALLERY, 1, k) for k in RECALL_KS}
    return chance


def tgir_chance(gallery_sizes: dict[str, int]) -> dict[str, float]:
    """Text-guided image retrieval: one target per query in its group's gallery."""
    chance: dict[str, float] = {}
    for group, size in gallery_sizes.items():
        chance |= {f"{group}_r{k}": 100 * recall_chance(size, 1, k) for k in (10, 50)}
    for k in (10, 50):
        chance[f"avg_r{k}"] = float(np.mean([chance[f"{g}_r{k}"] for g in gallery_sizes]))
    return chance


def scr_chance(train_labels: Sequence[str], test_labels: Sequence[str]) -> dict[str, float]:
    """Sub-category recognition by always answering the most frequent training label."""
    majority = Counter(train_labels).most_common(1)[0][0]
    predicted = [majority] * len(test_labels)
    return {
        "accuracy": 100 * sum(t == majority for t in test_labels) / len(test_labels),
        "macro_f1": 100 * macro_f1(list(test_labels), predicted),
        "uniform_accuracy": 100 / len(set(train_labels)),
    }


def fic_chance(train_captions: Sequence[str], test_captions: Sequence[str], seed: int) -> dict[str, float]:
    """Captioning by answering a random training caption: BLEU-4 and CIDEr (x100), scored as
    `famevil evaluate` scores captions (METEOR left out: its Java start-up costs more than the rest)."""
    rng = np.random.default_rng(seed)
    guesses = rng.choice(len(train_captions), size=len(test_captions))
    references = {str(i): [caption] for i, caption in enumerate(test_captions)}
    candidates = {str(i): train_captions[g] for i, g in enumerate(guesses)}
    scores = caption_scores(references, candidates, meteor=False)
    return {"coco_bleu4": scores.bleu4, "cider": scores.cider}
