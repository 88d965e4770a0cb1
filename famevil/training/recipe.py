"""The training recipe pretrain, teach and distill share: the options and the base they start from,
the model they describe, each task's batches, its logged loss and its validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from data_specs.errors import FamevilError
from data_specs.evaluations import flatten
from data_specs.shards import Shards
from data_specs.training_runs import SCORE
from famevil.bases import Base, resolve_base
from famevil.data.loading import training_batches
from famevil.data.transforms import image_transform
from famevil.evaluation import measure
from famevil.multitask import ModelConfig, MultiTaskModel, task_loss
from famevil.tasks.base import Task, check_coverage, selection_keys
from famevil.training.config import TrainConfig, load_config
from famevil.training.loop import Job, TrainingResult, fit
from famevil.training.sampling import TaskSampler
from famevil.training.streams import TaskStream


def fit_one_task(job: Job, build: Callable[[], MultiTaskModel], task: Task, shards: Shards, config: TrainConfig, backbone: Base) -> TrainingResult:
    """Train one task on its own: its stream alone, validated on its own metrics."""
    return fit(
        job,
        build,
        {task.name: task_stream(shards, task, config, backbone)},
        TaskSampler({task.name: 1}, seed=config.seed),
        logged_task_loss,
        partial(validation, shards, [task.name], config),
    )


def training_base(preset: str, overrides: dict[str, Any] | None, base: str | None) -> tuple[TrainConfig, Base]:
    """The training options and the base they start from, checked before any work. The base defines the
    architecture (its name becomes the options' model); --set model= is needed only for random weights
    or a bare weights file, and is an error against a base of another architecture."""
    config = load_config(preset, overrides)
    backbone = resolve_base(base, config.model, explicit="model" in (overrides or {}))
    return replace(config, model=backbone.backbone), backbone


def network_config(config: TrainConfig, tasks: tuple[str, ...], vocabularies: dict[str, list[str]] | None = None) -> ModelConfig:
    """The model the training options describe: backbone, adapters, and the tasks' heads."""
    return ModelConfig(backbone=config.model, tasks=tasks, adapters=config.adapters, retrieval_scale=config.retrieval_scale, vocabularies=vocabularies or {})


def model_vocabularies(shards: Shards, tasks: list[Task], config: TrainConfig, backbone: Base) -> dict[str, list[str]]:
    """What the heads classify into (the shards' label vocabularies) and, with head_vocabulary=training,
    the tokens a language-model head may write."""
    vocabularies = shards.training_vocabularies()
    if config.head_vocabulary == "training":
        for task in tasks:
            vocabularies |= task.text_vocabulary(shards, backbone.tokenizer())
    return vocabularies


def build_model(model_config: ModelConfig, backbone: Base, xaa_init: str = "zero", head_init: str = "backbone") -> MultiTaskModel:
    """A fresh multi-task model on the base (its architecture, preprocessing and weights); xaa_init and
    head_init as TrainConfig says."""
    model = backbone.model(model_config)
    if head_init == "backbone":
        model.init_heads_from_backbone()
    if xaa_init == "default":
        model.open_cross_attention()
    return model


def task_stream(shards: Shards, task: Task, config: TrainConfig, backbone: Base) -> TaskStream:
    """The task's resampled training batches, with the paper's training transform (unless augment is off)
    in the base's preprocessing, and the base's tokenizer."""
    transform = image_transform(backbone.preprocess, train=config.augment)
    epoch_batches = partial(
        training_batches,
        shards,
        task.train_subset(),
        task.batch,
        config.batch_size,
        transform,
        backbone.tokenizer(),
        config.seed,
        batches_per_epoch=config.batches_per_epoch,
    )
    return TaskStream(lambda epoch: epoch_batches(epoch=epoch), workers=config.workers)


def logged_task_loss(model: torch.nn.Module, task: str, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
    loss, _ = task_loss(model, task, batch)
    return loss, {f"loss_{task}": loss.item()}


def validation(shards: Shards, tasks: list[str], config: TrainConfig, model: MultiTaskModel) -> dict[str, float]:
    """The tasks' validation metrics through evaluate's code (greedy captions, one random-100 draw, no
    METEOR), and their `score`, which picks the best weights (select_by)."""
    measured = measure(model, shards, tasks, "val", batch_size=2 * config.batch_size, random100_runs=1, seed=config.seed, meteor=False)
    metrics = flatten(measured.metrics)
    keys = selection_keys(tasks, config.select_by)
    missing = [key for key in keys if key not in metrics]
    if missing:
        raise FamevilError(f"--set select_by={config.select_by}: validation has no metric {missing[0]!r}; its metrics are {', '.join(sorted(metrics))}")
    return metrics | {SCORE: sum(metrics[key] for key in keys) / len(keys)}


def training_shards(path: Path, tasks: list[Task]) -> Shards:
    """The shards, opened once every task's training and validation subsets are known to be there."""
    shards = Shards.open(path)
    check_coverage(shards, tasks, train=True, evaluate_on="val")
    return shards
