"""The four tasks, declared once. The rest of famevil looks a task up here instead of branching on its name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from data_specs.errors import FamevilError
from famevil.data import examples
from famevil.model import distillation, heads, objectives

CONTRASTIVE, FUSION, GENERATIVE = "contrastive", "fusion", "generative"


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    aliases: tuple[str, ...]
    mode: str  # how the towers run: CONTRASTIVE, FUSION or GENERATIVE
    head: str  # what sits on top of the towers, in words
    build_head: Callable  # (heads.HeadSizes) -> module or None, from famevil.model.heads
    loss: str  # the training objective, in words
    logits: Callable  # (model, batch) -> the logits its loss (and distillation) reads, from famevil.model.objectives
    objective: Callable  # (logits, batch) -> loss tensor, from famevil.model.objectives
    subset: str  # the shard subset it trains on (data_specs.shards)
    fields: tuple[str, ...]  # the sample fields it reads
    batch: Callable  # (samples, transform, tokenize) -> the tensors its objective reads, from famevil.data.examples
    signals: Callable  # (teacher, batch, top_k) -> what `famevil dump` stores per sample, from famevil.model.distillation
    distillation: Callable  # (student logits, stored signals, batch, temperature) -> distillation loss, likewise
    metric: str  # the headline metric it reports


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "xmr", "cross-modal retrieval", ("retrieval", "cross-modal-retrieval"), CONTRASTIVE,
            head="image and text projections with a learnable temperature", build_head=heads.no_head,
            loss="symmetric InfoNCE over the batch", logits=objectives.xmr_logits, objective=objectives.xmr_loss, subset="fashiongen",
            fields=("jpg", "description", "product_id"), batch=examples.caption_batch,
            signals=distillation.xmr_signals, distillation=distillation.xmr_distillation, metric="xmr.random100.mean",
        ),
        Task(
            "tgir", "text-guided image retrieval", ("composed-retrieval", "fashioniq"), FUSION,
            head="composed query (fused reference image + fused text) against contrastive target embeddings",
            build_head=heads.temperature_head,
            loss="one-way InfoNCE, queries to targets", logits=objectives.tgir_logits, objective=objectives.tgir_loss, subset="fashioniq",
            fields=("reference.jpg", "target.jpg", "captions"), batch=examples.triplet_batch,
            signals=distillation.tgir_signals, distillation=distillation.tgir_distillation, metric="tgir.mean",
        ),
        Task(
            "scr", "sub-category recognition", ("classification", "subcategory"), FUSION,
            head="linear classifier on the fused image + text vector", build_head=heads.classifier_head,
            loss="cross-entropy", logits=objectives.scr_logits, objective=objectives.scr_loss, subset="fashiongen",
            fields=("jpg", "title", "description", "subcategory_id"), batch=examples.classification_batch,
            signals=distillation.scr_signals, distillation=distillation.scr_distillation, metric="scr.accuracy",
        ),
        Task(
            "fic", "fashion image captioning", ("captioning", "caption"), GENERATIVE,
            head="untied linear language-model head on the causal text tower", build_head=heads.language_model_head,
            loss="teacher-forced next-token cross-entropy, padding ignored", logits=objectives.fic_logits, objective=objectives.fic_loss, subset="fashiongen",
            fields=("jpg", "description"), batch=examples.caption_batch,
            signals=distillation.fic_signals, distillation=distillation.fic_distillation, metric="fic.cider",
        ),
    )
}
TASK_NAMES = tuple(TASKS)


def find_task(name: str) -> Task:
    """A task by name or alias ("captioning" is fic)."""
    wanted = name.strip().lower()
    for task in TASKS.values():
        if wanted == task.name or wanted in task.aliases:
            return task
    choices = ", ".join(f"{t.name} ({', '.join(t.aliases)})" for t in TASKS.values())
    raise FamevilError(f"unknown task {name!r}; choose one of: {choices}")
