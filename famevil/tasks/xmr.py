"""XMR, cross-modal retrieval on FashionGen: image and text towers apart (task adapters on, cross-attention
off), symmetric InfoNCE over the batch; evaluated on the full gallery and on "random 100"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from famevil.losses import gather_batch, info_nce, own_rows, soft_cross_entropy
from famevil.metrics.chance import xmr_chance
from famevil.metrics.retrieval import RANDOM100_NEGATIVES, RECALL_KS, candidate_ranks, gallery_ranks, random100_candidates, recall
from famevil.model.fame_vil import FameVil
from famevil.model.heads import Temperature
from famevil.tasks.base import (
    CONTRASTIVE,
    FASHIONGEN,
    RETRIEVAL,
    Batch,
    DatasetFacts,
    EvalSettings,
    Sample,
    Signals,
    Task,
    TaskEvaluation,
    Tokenize,
    Transform,
)
from famevil.tasks.product_text import view_batch


def scaled(scale: torch.Tensor, batch: int) -> torch.Tensor:
    """A teacher's temperature, stored per sample like every signal."""
    return scale.detach().float().reshape(1).expand(batch)


IMAGE_TO_TEXT, TEXT_TO_IMAGE = "i2t", "t2i"  # the retrieval directions, in metric names and records

# Where a query meets another view of its own product: no negative, and no positive either (the
# authors sample one view per product instead). Finite, so that a KL term there is 0 and not NaN.
NOT_A_NEGATIVE = -1e4


def similarities(images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
    """(2, B, global B): this process's images against every process's texts, and its texts against
    every process's images, scaled; other views of a query's product are masked out."""
    all_images = gather_batch(images)
    all_texts = gather_batch(texts)
    all_products = gather_batch(products)
    own = own_rows(len(products), products.device)
    other_views = (products[:, None] == all_products[None, :]) & (own[:, None] != torch.arange(len(all_products), device=own.device)[None, :])
    image_to_text = (scale * images @ all_texts.T).masked_fill(other_views, NOT_A_NEGATIVE)
    text_to_image = (scale * texts @ all_images.T).masked_fill(other_views, NOT_A_NEGATIVE)
    return torch.stack([image_to_text, text_to_image])


class CrossModalRetrieval(Task):
    name = "xmr"
    title = "cross-modal retrieval"
    aliases = ("retrieval", "cross-modal-retrieval")
    mode = CONTRASTIVE
    source = FASHIONGEN
    headline = "random100.mean"
    authors_selection = "full.mean"  # contrastive.yaml: r@k_general/avg, the full gallery
    report_rows = (
        ("random100.i2t_r1", "XMR I2T R@1 (random 100)"),
        ("random100.t2i_r1", "XMR T2I R@1 (random 100)"),
        ("random100.mean", "XMR mean R (random 100)"),
    )
    paper = {
        "random100.i2t_r1": 65.94,
        "random100.i2t_r5": 91.92,
        "random100.i2t_r10": 97.22,
        "random100.t2i_r1": 62.86,
        "random100.t2i_r5": 87.38,
        "random100.t2i_r10": 93.52,
    }

    def batch(self, samples: list[Sample], transform: Transform, tokenize: Tokenize) -> Batch:
        return view_batch(samples, transform, tokenize)

    def build_head(self, network: FameVil, vocabularies: dict[str, list[str]]) -> nn.Module:
        return Temperature(network.config.retrieval_scale)

    def embeddings(self, network: FameVil, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return network.encode_image(batch["images"], self.name), network.encode_text(batch["tokens"], self.name)

    def logits(self, network: FameVil, head: nn.Module | None, batch: Batch) -> torch.Tensor:
        """Image-to-text and text-to-image similarities over the global batch, (2, B, global B)."""
        image_vectors, text_vectors = self.embeddings(network, batch)
        return similarities(image_vectors, text_vectors, head(), batch["products"])

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return (info_nce(logits[0]) + info_nce(logits[1])) / 2

    def signals(self, network: FameVil, head: nn.Module | None, batch: Batch, top_k: int) -> Signals:
        """Embeddings, not similarity rows: a similarity distribution depends on the batch, and the
        student's batches are not the teacher's."""
        image_vectors, text_vectors = self.embeddings(network, batch)
        return {"image": image_vectors.half(), "text": text_vectors.half(), "scale": scaled(head(), len(image_vectors))}

    @staticmethod
    def teacher_logits(signals: Signals, batch: Batch) -> torch.Tensor:
        """The teacher's similarities on the student's (global) batch, rebuilt from its stored embeddings."""
        return similarities(signals["image"].float(), signals["text"].float(), signals["scale"][0], batch["products"])

    def distillation(self, student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
        """Image-to-text and text-to-image in-batch similarity distributions."""
        teacher = self.teacher_logits(signals, batch)
        return (soft_cross_entropy(student_logits[0], teacher[0], temperature) + soft_cross_entropy(student_logits[1], teacher[1], temperature)) / 2

    def evaluator(self, network: FameVil, head: nn.Module | None, settings: EvalSettings) -> RetrievalEvaluation:
        return RetrievalEvaluation(self, network, settings)

    def direction(self, which: str) -> str:
        """The "task" of its retrieval records in one direction, TEXT_TO_IMAGE or IMAGE_TO_TEXT."""
        return f"{self.name}-{which}"

    @staticmethod
    def relevant(query: dict, found: dict) -> bool:
        """Whether a retrieved sample (its JSON record) is a right answer to a query: any view of the query's product."""
        return query["product_id"] == found["product_id"]

    def chance(self, facts: DatasetFacts) -> dict[str, float]:
        return xmr_chance(facts.val_product_ids)


class RetrievalEvaluation:
    """The authors' galleries: every view's image, and one text per product (its views share it).
    Full gallery: every image against every product's text, every product's text against every image
    (a hit is the product's text, or any of its views). Random 100: each of 1,000 queries against one
    positive and 100 negatives of its subcategory, seeded runs averaged. Both directions, R@1/5/10 and
    their mean."""

    def __init__(self, task: CrossModalRetrieval, network: FameVil, settings: EvalSettings):
        self.task, self.network, self.settings = task, network, settings
        self.images: list[torch.Tensor] = []
        self.texts: list[torch.Tensor] = []
        self.keys: list[str] = []
        self.products: list[int] = []
        self.subcategories: list[str] = []

    def add(self, subset: str, samples: list[Sample]) -> None:
        batch = self.task.batch(samples, self.settings.transform, self.settings.tokenize)
        image_vectors, text_vectors = self.task.embeddings(self.network, batch)
        self.images.append(image_vectors)
        self.texts.append(text_vectors)
        self.keys += batch["keys"]
        self.products += [sample["json"]["product_id"] for sample in samples]
        self.subcategories += [sample["json"]["subcategory"] for sample in samples]

    def galleries(self) -> tuple[Gallery, Gallery]:
        """Every view's image, and one text per product: its first view's (all its views carry the same
        title and description)."""
        products, subcategories = np.asarray(self.products), np.asarray(self.subcategories)
        first_views = np.sort(np.unique(products, return_index=True)[1])
        images = Gallery(torch.cat(self.images), products, subcategories, self.keys)
        texts = Gallery(torch.cat(self.texts)[first_views], products[first_views], subcategories[first_views], [self.keys[i] for i in first_views])
        return images, texts

    def finish(self) -> TaskEvaluation:
        images, texts = self.galleries()
        directions = ((IMAGE_TO_TEXT, images, texts), (TEXT_TO_IMAGE, texts, images))
        lines: list[dict] = []
        warnings: list[str] = []
        full: dict[str, float] = {}
        for direction, queries, gallery in directions:
            ranks, top = gallery_ranks(queries.vectors, gallery.vectors, torch.from_numpy(queries.products), torch.from_numpy(gallery.products))
            full |= {f"{direction}_r{k}": value for k, value in recall(ranks).items()}
            lines += [
                {"task": self.task.direction(direction), "query": queries.keys[i], "top10": [gallery.keys[j] for j in row]}
                for i, row in enumerate(top.tolist())
            ]
        runs, seed = self.settings.random100_runs, self.settings.seed
        random100 = {f"{d}_r{k}": 0.0 for d in (IMAGE_TO_TEXT, TEXT_TO_IMAGE) for k in RECALL_KS}
        for run in range(runs):
            for number, (direction, queries, gallery) in enumerate(directions):
                chosen, candidates = random100_candidates(
                    queries.products, queries.subcategories, gallery.products, gallery.subcategories, seed=(seed, run, number)
                )
                if run == 0 and candidates.shape[1] - 1 < RANDOM100_NEGATIVES:
                    warnings.append(f"random-100 {direction}: the split is too small for 100 negatives per query; used {candidates.shape[1] - 1}")
                ranks = candidate_ranks(queries.vectors[torch.from_numpy(chosen)], gallery.vectors[torch.from_numpy(candidates)])
                for k, value in recall(ranks).items():
                    random100[f"{direction}_r{k}"] += value / runs
        for protocol in (full, random100):
            protocol["mean"] = float(np.mean(list(protocol.values())))
        return TaskEvaluation({"full": full, "random100": random100}, {RETRIEVAL: lines}, warnings)


@dataclass
class Gallery:
    """One side of XMR's evaluation: embeddings and, per row, its product, subcategory and record key."""

    vectors: torch.Tensor
    products: np.ndarray
    subcategories: np.ndarray
    keys: list[str]


TASK = CrossModalRetrieval()
