"""The multi-task model: the plain FAME-ViL network with one adapter set and one head per task, and the
one place that runs a task's forward pass.

Training calls the model (`model(task, batch)`), not the task's functions directly, so that a
DistributedDataParallel wrapper sees every forward pass and synchronises the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from famevil.data.transforms import Preprocess
from famevil.model.adapter_config import ADAPTER_OPTIONS, AdapterConfig
from famevil.model.fame_vil import FameVil, FameVilConfig
from famevil.tasks import find_task
from famevil.tasks.base import CONTRASTIVE, Batch


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    backbone: str  # the architecture's name: open_clip's (ViT-B-16), famevil's (famevil-tiny), or the hf-hub:/local-dir: base it came from
    tasks: tuple[str, ...]  # each gets its task-specific adapters and its head
    adapters: AdapterConfig = AdapterConfig()
    retrieval_scale: str = "log"  # XMR's and TGIR's logit scale: stored as its log, or "squared", the authors' s x s (famevil.model.heads)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)  # label names the heads classify into, so a checkpoint is self-contained

    def to_dict(self) -> dict[str, Any]:
        """config.json's "model": the adapter settings flat beside the others, as they are named on the command line."""
        return (
            {"backbone": self.backbone, "tasks": list(self.tasks)}
            | self.adapters.to_dict()
            | {"retrieval_scale": self.retrieval_scale, "vocabularies": self.vocabularies}
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        # A config written before caption_reads existed belongs to a captioner that read h'.
        values = {"caption_reads": "attention_states"} | values
        adapters = AdapterConfig(**{name: values.pop(name) for name in ADAPTER_OPTIONS if name in values})
        return cls(**(values | {"tasks": tuple(values["tasks"]), "adapters": adapters}))


class MultiTaskModel(FameVil):
    def __init__(self, config: ModelConfig, architecture: dict | None = None, preprocess: Preprocess | None = None, tokenizer_files: str | None = None):
        """architecture, preprocess and tokenizer_files: the backbone's, as FameVil takes them (by default those of config.backbone)."""
        tasks = [find_task(name) for name in config.tasks]
        network = FameVilConfig(
            backbone=config.backbone,
            adapter_sets=tuple(task.name for task in tasks),
            cross_attention=any(task.mode != CONTRASTIVE for task in tasks),
            adapters=config.adapters,
        )
        super().__init__(network, architecture, preprocess, tokenizer_files)
        self.config = replace(config, tasks=network.adapter_sets)  # aliases resolved
        self.heads = nn.ModuleDict({task.name: head for task in tasks if (head := task.build_head(self, config.vocabularies)) is not None})

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.config.tasks

    def head(self, task: str) -> nn.Module | None:
        return self.heads[task] if task in self.heads else None  # noqa: SIM401 - a ModuleDict has no get()

    def forward(self, task: str, batch: Batch) -> torch.Tensor:
        """The task's logits on a batch: what its loss reads and distillation compares."""
        return find_task(task).logits(self, self.head(task), batch)

    def init_heads_from_backbone(self) -> None:
        """Let each head start from the backbone's weights (call after loading them)."""
        for name, head in self.heads.items():
            find_task(name).init_head(head, self)


def task_loss(model: nn.Module, task: str, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(the task's training loss, its logits) on a batch; `model` may be wrapped for distributed training."""
    logits = model(task, batch)
    return find_task(task).loss(logits, batch), logits
