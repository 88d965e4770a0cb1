"""TGIR, text-guided image retrieval on FashionIQ: the composed query (reference image and modification
text fused by the cross-attention adapters) against contrastive target embeddings, one-way InfoNCE;
evaluated per group against the group's gallery, R@10 and R@50."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_specs.errors import FamevilError
from data_specs.shards import gallery_subset, triplet_subset
from famevil.data.examples import images, keys, text_tokens
from famevil.losses import gather_batch, info_nce, soft_cross_entropy
from famevil.metrics.chance import tgir_chance
from famevil.metrics.retrieval import gallery_ranks, recall
from famevil.model.fame_vil import FameVil
from famevil.model.heads import Temperature
from famevil.tasks.base import (
    FASHIONIQ,
    FUSION,
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
from famevil.tasks.xmr import scaled

RECALL_AT = (10, 50)


def modification_text(record: dict) -> str:
    """The two relative captions joined with ", ", as in the paper."""
    return ", ".join(record["captions"])


class TextGuidedRetrieval(Task):
    name = "tgir"
    title = "text-guided image retrieval"
    aliases = ("composed-retrieval", "fashioniq")
    mode = FUSION
    source = FASHIONIQ
    headline = "mean"
    authors_selection = "mean"  # composition.yaml: r@k_fashioniq/avg, the mean of R@10 and R@50 over the three groups
    report_rows = (("avg_r10", "TGIR avg R@10"), ("avg_r50", "TGIR avg R@50"))
    paper = {"avg_r10": 46.84, "avg_r50": 69.75}

    def train_subset(self) -> str:
        return triplet_subset("train")

    def subsets(self, split: str) -> tuple[str, ...]:
        if split == "test":
            raise FamevilError("--split test: FashionIQ's test captions have no targets, so TGIR cannot be scored there; use --split val")
        return (gallery_subset(split), triplet_subset(split))  # the gallery first: queries are ranked against it

    def batch(self, samples: list[Sample], transform: Transform, tokenize: Tokenize) -> Batch:
        """The reference image, the modification text, the target image."""
        return {
            "keys": keys(samples),
            "images": images(samples, "reference.jpg", transform),
            "tokens": text_tokens([modification_text(sample["json"]) for sample in samples], tokenize),
            "targets": images(samples, "target.jpg", transform),
        }

    def build_head(self, network: FameVil, vocabularies: dict[str, list[str]]) -> nn.Module:
        return Temperature(network.config.retrieval_scale)

    def queries(self, network: FameVil, batch: Batch) -> torch.Tensor:
        return F.normalize(network.composed(batch["images"], batch["tokens"], self.name), dim=-1)

    def logits(self, network: FameVil, head: nn.Module | None, batch: Batch) -> torch.Tensor:
        """This process's composed queries against every process's targets (B x global B)."""
        queries = self.queries(network, batch)
        targets = gather_batch(network.encode_image(batch["targets"], self.name))
        return head() * queries @ targets.T

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return info_nce(logits)

    def signals(self, network: FameVil, head: nn.Module | None, batch: Batch, top_k: int) -> Signals:
        queries = self.queries(network, batch)
        targets = network.encode_image(batch["targets"], self.name)
        return {"query": queries.half(), "target": targets.half(), "scale": scaled(head(), len(queries))}

    @staticmethod
    def teacher_logits(signals: Signals, batch: Batch) -> torch.Tensor:
        """The teacher's similarities on the student's (global) batch, rebuilt from its stored embeddings."""
        targets = gather_batch(signals["target"].float())
        return signals["scale"][0] * signals["query"].float() @ targets.T

    def distillation(self, student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
        """Query-to-target in-batch similarity distributions."""
        return soft_cross_entropy(student_logits, self.teacher_logits(signals, batch), temperature)

    def evaluator(self, network: FameVil, head: nn.Module | None, settings: EvalSettings) -> ComposedRetrievalEvaluation:
        return ComposedRetrievalEvaluation(self, network, settings)

    def chance(self, facts: DatasetFacts) -> dict[str, float]:
        return tgir_chance(facts.gallery_sizes)


class ComposedRetrievalEvaluation:
    def __init__(self, task: TextGuidedRetrieval, network: FameVil, settings: EvalSettings):
        self.task, self.network, self.settings = task, network, settings
        self.gallery: dict[str, tuple[list[str], list[torch.Tensor]]] = {}  # group -> asins, embeddings
        self.queries: dict[str, tuple[list[str], list[str], list[torch.Tensor]]] = {}  # group -> keys, targets, queries

    def add(self, subset: str, samples: list[Sample]) -> None:
        if subset == gallery_subset(self.settings.split):
            embeddings = self.network.encode_image(images(samples, "jpg", self.settings.transform), self.task.name)
            for sample, embedding in zip(samples, embeddings, strict=True):
                asins, vectors = self.gallery.setdefault(sample["json"]["group"], ([], []))
                asins.append(sample["json"]["asin"])
                vectors.append(embedding)
            return
        batch = {
            "images": images(samples, "reference.jpg", self.settings.transform),
            "tokens": text_tokens([modification_text(sample["json"]) for sample in samples], self.settings.tokenize),
        }
        for sample, query in zip(samples, self.task.queries(self.network, batch), strict=True):
            sample_keys, targets, vectors = self.queries.setdefault(sample["json"]["group"], ([], [], []))
            sample_keys.append(sample["__key__"])
            targets.append(sample["json"]["target"])
            vectors.append(query)

    def finish(self) -> TaskEvaluation:
        metrics: dict[str, float] = {}
        lines: list[dict] = []
        for group, (sample_keys, targets, vectors) in sorted(self.queries.items()):
            asins, candidates = self.gallery.get(group, ([], []))
            if not asins:
                raise FamevilError(
                    f"the {group} triplets have no gallery images in {gallery_subset(self.settings.split)!r}; rebuild the shards with famevil prepare"
                )
            index = {asin: i for i, asin in enumerate(asins)}
            # A target missing from the gallery can never be retrieved: group -1 matches nothing.
            target_groups = torch.tensor([index.get(t, -1) for t in targets])
            ranks, top = gallery_ranks(torch.stack(vectors), torch.stack(candidates), target_groups, torch.arange(len(asins)), top=max(RECALL_AT))
            metrics |= {f"{group}_r{k}": value for k, value in recall(ranks, RECALL_AT).items()}
            lines += [{"task": self.task.name, "query": key, "top10": [asins[j] for j in row[:10]]} for key, row in zip(sample_keys, top.tolist(), strict=True)]
        for k in RECALL_AT:
            metrics[f"avg_r{k}"] = float(np.mean([metrics[f"{group}_r{k}"] for group in self.queries]))
        metrics["mean"] = (metrics["avg_r10"] + metrics["avg_r50"]) / 2
        return TaskEvaluation(metrics, {RETRIEVAL: lines})


TASK = TextGuidedRetrieval()
