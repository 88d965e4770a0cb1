"""famevil teach: a single-task teacher. famevil pretrain: the synthetic demo's stand-in for CLIP weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from data_specs.errors import FamevilError
from data_specs.manifest import InputRef, Manifest, require_artifact
from data_specs.shards import read_training_vocabularies
from famevil.bases import Base, resolve_base
from famevil.data.loading import training_batches
from famevil.data.transforms import image_transform
from famevil.model.backbone import text_tokenizer
from famevil.multitask import ModelConfig, MultiTaskModel, task_loss
from famevil.tasks import find_task
from famevil.tasks.base import Task, check_coverage, selection_keys
from famevil.training.config import TrainConfig, load_config
from famevil.training.sampling import TaskSampler
from famevil.training.streams import TaskStream
from stages.evaluate import flatten, measure
from stages.training import SCORE, Job, TrainingResult, fit

PRETRAINING_TASK = "retrieval"  # the demo base is trained as plain CLIP is: contrastive image-text retrieval


def teach(
    task: str,
    shards: Path,
    out: Path,
    base: str | None = None,
    preset: str = "demo-cpu",
    overrides: dict[str, Any] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    report_to: list[str] | None = None,
) -> TrainingResult:
    """Train a single-task teacher: the backbone, the task's adapters (and the cross-attention adapters
    where its mode fuses or generates) and its head, then keep the best weights by validation.

    --base gives the starting weights, and with them the architecture, activation and image
    preprocessing they were trained with: an open_clip NAME:TAG (the paper's: ViT-B-16:openai, run with
    the QuickGELU OpenAI trained it with), hf-hub:ORG/NAME, local-dir:DIR, a famevil checkpoint
    directory, or a bare weights file of the architecture --set model= names. Without --base the
    backbone starts from random weights.

    --preset paper is the paper's setting (ViT-B-16 with OpenAI's QuickGELU, batch 16 per process, 30,000 updates, lr 1e-6 for
    CLIP and 1e-4 for the rest, bf16; TGIR teachers use --max-steps 6000); demo-cpu is a small
    backbone for the synthetic demo. --set NAME=VALUE overrides any option (see train_config.json in a
    run). The run is resumable: rerun the same command with --resume auto after an interruption.
    Under `accelerate launch` the same command trains on several processes, GPUs or nodes.

    Example (seconds on a laptop CPU, after famevil pretrain; two updates, a smoke test):

        famevil teach --task xmr --shards runs/example/shards \\
            --base runs/example/base --out runs/example/teacher-xmr --max-steps 2

    Repeat it for tgir, scr and fic in place of xmr: famevil distill learns from all four.
    """
    chosen = find_task(task)
    config, backbone = training_base(preset, overrides, base)
    selection_keys([chosen.name], config.select_by)  # a bad criterion fails before any work
    shards_manifest = check_shards(shards, [chosen])
    model_config = network_config(config, (chosen.name,), model_vocabularies(shards, [chosen], config, backbone))
    inputs = [backbone.ref, InputRef("shards", "shards", shards_manifest.content_id, str(shards))]
    job = Job(
        "teacher",
        out,
        config,
        inputs,
        {"task": chosen.name},
        resume,
        overwrite,
        title=f"teach {chosen.name}",
        report_to=tuple(report_to or ()),
    )
    return _fit_one_task(job, partial(build_model, model_config, backbone, config.xaa_init, config.head_init), chosen, shards, config, backbone)


def pretrain(
    shards: Path,
    out: Path,
    preset: str = "demo-base",
    overrides: dict[str, Any] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    report_to: list[str] | None = None,
) -> TrainingResult:
    """Pre-train a CLIP backbone from scratch on the shards: the synthetic demo's stand-in for CLIP weights.

    Contrastive training on the shards' training images and descriptions; teach and distill then
    take the result as --base, as they would take open_clip's pretrained weights.

    It is the XMR objective with the adapters held at zero, which is plain CLIP training (FAME-ViL with
    zero adapters computes exactly what open_clip computes), its temperature learnt at lr_adapters. Real CLIP weights come from 400M+ web
    image-text pairs; this base has seen only the demo's training split, for a few minutes.

    Example (seconds on a laptop CPU, after famevil prepare; the smallest backbone, two updates):

        famevil pretrain --shards runs/example/shards --out runs/example/base \\
            --set model=famevil-tiny --max-steps 2
    """
    retrieval = find_task(PRETRAINING_TASK)
    config, backbone = training_base(preset, overrides, None)
    selection_keys([retrieval.name], config.select_by)
    shards_manifest = check_shards(shards, [retrieval])
    model_config = network_config(config, (retrieval.name,))
    job = Job(
        "base",
        out,
        config,
        [InputRef("shards", "shards", shards_manifest.content_id, str(shards))],
        {"task": retrieval.name, "adapters": "frozen at zero"},
        resume,
        overwrite,
        title="pretrain",
        report_to=tuple(report_to or ()),
    )
    return _fit_one_task(job, partial(_backbone_only, model_config, backbone), retrieval, shards, config, backbone)


def _fit_one_task(job: Job, build: Callable[[], MultiTaskModel], task: Task, shards: Path, config: TrainConfig, backbone: Base) -> TrainingResult:
    return fit(
        job,
        build,
        {task.name: task_stream(shards, task, config, backbone)},
        TaskSampler({task.name: 1}, seed=config.seed),
        logged_task_loss,
        partial(validation, shards, [task.name], config),
    )


def _backbone_only(model_config: ModelConfig, backbone: Base) -> MultiTaskModel:
    """The backbone and the task's head (the contrastive temperature) train; the adapters stay at zero."""
    model = backbone.model(model_config)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(("backbone.", "heads."))
    return model


def training_base(preset: str, overrides: dict[str, Any] | None, base: str | None) -> tuple[TrainConfig, Base]:
    """The training options and the base they start from, checked before any work. The base defines the
    architecture (its name becomes the options' model); --set model= is needed only for random weights
    or a bare weights file, and is an error against a base of another architecture."""
    config = load_config(preset, overrides)
    backbone = resolve_base(base, config.model, explicit="model" in (overrides or {}))
    return replace(config, model=backbone.backbone), backbone


def network_config(config: TrainConfig, tasks: tuple[str, ...], vocabularies: dict[str, list[str]] | None = None) -> ModelConfig:
    """The model the training options describe: backbone, adapters, and the tasks' heads."""
    return ModelConfig(
        config.model,
        tasks,
        config.tsa_bottleneck,
        config.xaa_bottleneck,
        config.adapter_dropout,
        config.caption_reads,
        config.fusion,
        config.task_adapters,
        config.retrieval_scale,
        vocabularies=vocabularies or {},
    )


def model_vocabularies(shards: Path, tasks: list[Task], config: TrainConfig, backbone: Base) -> dict[str, list[str]]:
    """What the heads classify into (the shards' label vocabularies) and, with head_vocabulary=training,
    the tokens a language-model head may write."""
    vocabularies = read_training_vocabularies(shards)
    if config.head_vocabulary == "training":
        for task in tasks:
            vocabularies |= task.text_vocabulary(shards, text_tokenizer(backbone.architecture))
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


def task_stream(shards: Path, task: Task, config: TrainConfig, backbone: Base) -> TaskStream:
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
        text_tokenizer(backbone.architecture),
        config.seed,
        batches_per_epoch=config.batches_per_epoch,
    )
    return TaskStream(lambda epoch: epoch_batches(epoch=epoch), workers=config.workers)


def logged_task_loss(model: torch.nn.Module, task: str, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
    loss, _ = task_loss(model, task, batch)
    return loss, {f"loss_{task}": loss.item()}


def validation(shards: Path, tasks: list[str], config: TrainConfig, model: MultiTaskModel) -> dict[str, float]:
    """The tasks' validation metrics through evaluate's code (greedy captions, one random-100 draw, no
    METEOR), and their `score`, which picks the best weights (select_by)."""
    measured = measure(model, shards, tasks, "val", batch_size=2 * config.batch_size, random100_runs=1, seed=config.seed, meteor=False)
    metrics = flatten(measured.metrics)
    keys = selection_keys(tasks, config.select_by)
    missing = [key for key in keys if key not in metrics]
    if missing:
        raise FamevilError(f"--set select_by={config.select_by}: validation has no metric {missing[0]!r}; its metrics are {', '.join(sorted(metrics))}")
    return metrics | {SCORE: sum(metrics[key] for key in keys) / len(keys)}


def check_shards(shards: Path, tasks: list[Task]) -> Manifest:
    """The shards' manifest, once every task's training and validation subsets are known to be there."""
    manifest = require_artifact(shards, "shards")
    check_coverage(shards, tasks, train=True, evaluate_on="val")
    return manifest
