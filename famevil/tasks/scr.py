"""SCR, sub-category recognition on FashionGen: a linear classifier on the fused image + text vector,
cross-entropy; evaluated by accuracy and macro-F1 (a subcategory seen only at test time counts
against the model)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from data_specs.errors import FamevilError
from famevil.data.examples import images, keys, text_tokens
from famevil.losses import soft_cross_entropy
from famevil.metrics.chance import scr_chance
from famevil.metrics.classification import accuracy, macro_f1
from famevil.model.fame_vil import FameVil
from famevil.tasks.base import (
    CLASSIFICATIONS,
    FASHIONGEN,
    FUSION,
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
from famevil.tasks.product_text import product_text


class SubcategoryRecognition(Task):
    """Also the template of any classification of FashionGen views: a subclass picks another
    vocabulary (its classes) and another `features`."""

    name = "scr"
    title = "sub-category recognition"
    aliases = ("classification", "subcategory")
    mode = FUSION
    source = FASHIONGEN
    headline = "accuracy"
    authors_selection = "accuracy"  # classification.yaml
    report_rows = (("accuracy", "SCR accuracy"), ("macro_f1", "SCR macro-F1"))
    paper = {"accuracy": 94.67, "macro_f1": 88.21}
    vocabulary = "subcategory"  # the vocab.json entry whose training names are the classes; samples carry its "<name>_id"

    def batch(self, samples: list[Sample], transform: Transform, tokenize: Tokenize) -> Batch:
        """The view, its title and description, the class id."""
        return {
            "keys": keys(samples),
            "images": images(samples, "jpg", transform),
            "tokens": text_tokens([product_text(sample["json"]) for sample in samples], tokenize),
            "labels": torch.tensor([sample["json"][f"{self.vocabulary}_id"] for sample in samples]),
        }

    def build_head(self, network: FameVil, vocabularies: dict[str, list[str]]) -> nn.Module:
        classes = vocabularies.get(self.vocabulary)
        if not classes:
            raise FamevilError(
                f"a {self.name} head needs the shards' {self.vocabulary!r} vocabulary; prepare FashionGen into the shards with famevil prepare --fashiongen ..."
            )
        return nn.Linear(network.embed_dim, len(classes))

    def features(self, network: FameVil, batch: Batch) -> torch.Tensor:
        """What the classifier reads: the fused image vector plus the fused text vector."""
        return network.composed(batch["images"], batch["tokens"], self.name)

    def logits(self, network: FameVil, head: nn.Module | None, batch: Batch) -> torch.Tensor:
        return head(self.features(network, batch))

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits, batch["labels"])

    def signals(self, network: FameVil, head: nn.Module | None, batch: Batch, top_k: int) -> Signals:
        return {"logits": self.logits(network, head, batch).half()}

    def distillation(self, student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
        """Soft labels: the teacher's class distribution."""
        return soft_cross_entropy(student_logits, signals["logits"].float(), temperature)

    def evaluator(self, network: FameVil, head: nn.Module | None, settings: EvalSettings) -> ClassificationEvaluation:
        return ClassificationEvaluation(self, network, head, settings)

    def chance(self, facts: DatasetFacts) -> dict[str, float]:
        return scr_chance(facts.train_subcategories, facts.val_subcategories)


class ClassificationEvaluation:
    """Accuracy and macro-F1, and each sample's true and predicted class by name (the classifications
    records, from which `famevil report` draws a confusion matrix per task)."""

    def __init__(self, task: SubcategoryRecognition, network: FameVil, head: nn.Module, settings: EvalSettings):
        self.task, self.network, self.head, self.settings = task, network, head, settings
        self.keys: list[str] = []
        self.truth: list[int] = []
        self.predicted: list[int] = []
        self.labels: list[str] = []

    def add(self, subset: str, samples: list[Sample]) -> None:
        batch = self.task.batch(samples, self.settings.transform, self.settings.tokenize)
        self.predicted += self.task.logits(self.network, self.head, batch).argmax(dim=-1).tolist()
        self.truth += batch["labels"].tolist()
        self.keys += batch["keys"]
        # By name: a class seen only at test time has an id past the head's classes, but its name.
        self.labels += [sample["json"][self.task.vocabulary] for sample in samples]

    def finish(self) -> TaskEvaluation:
        names = self.settings.vocabularies[self.task.vocabulary]  # the head's classes, in its order
        lines = [
            {"task": self.task.name, "key": key, "label": label, "predicted": names[predicted]}
            for key, label, predicted in zip(self.keys, self.labels, self.predicted, strict=True)
        ]
        metrics = {"accuracy": 100 * accuracy(self.truth, self.predicted), "macro_f1": 100 * macro_f1(self.truth, self.predicted)}
        return TaskEvaluation(metrics, {CLASSIFICATIONS: lines})


TASK = SubcategoryRecognition()
