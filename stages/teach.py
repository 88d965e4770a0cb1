"""famevil teach: a single-task teacher. famevil pretrain: the synthetic demo's stand-in for CLIP weights."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from data_specs.errors import FamevilError
from data_specs.manifest import InputRef, require_artifact
from data_specs.shards import read_sizes, read_vocab
from famevil.data.loading import image_transform, training_batches
from famevil.model.backbone import backbone_config, tokenizer
from famevil.model.checkpoint import base_reference, load_base
from famevil.model.fame_vil import FameVil, FameVilConfig
from famevil.model.tasks import Task, find_task
from famevil.training.config import TrainConfig, load_config
from famevil.training.sampling import TaskSampler
from famevil.training.streams import TaskStream
from stages.evaluate import flatten, measure
from stages.training import SCORE, Job, TrainingResult, fit


def teach(
    task: str,
    shards: Path,
    out: Path,
    base: str | None = None,
    preset: str = "demo-cpu",
    overrides: dict[str, Any] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
) -> TrainingResult:
    """Train a single-task teacher: the backbone, the task's adapters (and the cross-attention adapters
    where its mode fuses or generates) and its head, then keep the best weights by validation.

    --preset paper is the paper's setting (ViT-B-16, batch 16 per process, 30,000 updates, lr 1e-6 for
    CLIP and 1e-4 for the rest, bf16; TGIR teachers use --max-steps 6000); demo-cpu is a small
    backbone for the synthetic demo. --set NAME=VALUE overrides any option (see train_config.json in a
    run). The run is resumable: rerun the same command with --resume auto after an interruption.
    Under `accelerate launch` the same command trains on several processes, GPUs or nodes.

    Example (about two minutes on a laptop CPU, after famevil pretrain):

        famevil teach --task captioning --shards runs/demo/shards --base runs/demo/base --out runs/demo/teacher-fic
    """
    chosen = find_task(task)
    config = load_config(preset, overrides)
    shards_manifest = check_shards(shards, [chosen])
    num_classes, vocabularies = subcategory_labels(shards)
    model_config = FameVilConfig(config.model, (chosen.name,), config.tsa_bottleneck, config.xaa_bottleneck, num_classes=num_classes, vocabularies=vocabularies)
    inputs = [base_reference(base, config.model), InputRef("shards", "shards", shards_manifest.content_id, str(shards))]
    job = Job(
        "teacher", out, config, inputs, {"task": chosen.name}, resume, overwrite,
        title=f"teach {chosen.name}",
    )
    return _fit_one_task(job, partial(build_model, model_config, base), chosen, shards, config)


def pretrain(shards: Path, out: Path, preset: str = "demo-base", overrides: dict[str, Any] | None = None, resume: str | None = None, overwrite: bool = False) -> TrainingResult:
    """Pre-train a CLIP backbone from scratch on the shards: the synthetic demo's stand-in for CLIP weights.

    Contrastive training on the shards' training images and descriptions; teach and distill then
    take the result as --base, as they would take open_clip's pretrained weights.

    It is the XMR objective with the adapters held at zero, which is plain CLIP training (FAME-ViL with
    zero adapters computes exactly what open_clip computes). Real CLIP weights come from 400M+ web
    image-text pairs; this base has seen only the demo's training split, for a few minutes.

    Example (about a minute and a half on a laptop CPU):

        famevil pretrain --shards runs/demo/shards --out runs/demo/base
    """
    xmr = find_task("xmr")
    config = load_config(preset, overrides)
    shards_manifest = check_shards(shards, [xmr])
    model_config = FameVilConfig(config.model, (xmr.name,), config.tsa_bottleneck, config.xaa_bottleneck)
    job = Job(
        "base", out, config, [InputRef("shards", "shards", shards_manifest.content_id, str(shards))], {"task": xmr.name, "adapters": "frozen at zero"},
        resume, overwrite, title="pretrain",
    )
    return _fit_one_task(job, partial(_backbone_only, model_config), xmr, shards, config)


def _fit_one_task(job: Job, build: Callable[[], FameVil], task: Task, shards: Path, config: TrainConfig) -> TrainingResult:
    return fit(
        job, build, {task.name: task_stream(shards, task, config)}, TaskSampler({task.name: 1}, seed=config.seed),
        task_loss, partial(validation, shards, [task.name], config),
    )


def _backbone_only(model_config: FameVilConfig) -> FameVil:
    model = FameVil(model_config)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("backbone.")
    return model


def build_model(model_config: FameVilConfig, base: str | None) -> FameVil:
    model = FameVil(model_config)
    if base is not None:
        load_base(model, base)
    model.start_language_head_from_embeddings()
    return model


def task_stream(shards: Path, task: Task, config: TrainConfig) -> TaskStream:
    """The task's resampled training batches, with the paper's training transform."""
    transform = image_transform(backbone_config(config.model)["vision_cfg"]["image_size"], train=True)
    epoch_batches = partial(
        training_batches, shards, task, config.batch_size, transform, tokenizer(config.model), config.seed, batches_per_epoch=config.batches_per_epoch
    )
    return TaskStream(lambda epoch: epoch_batches(epoch=epoch), workers=config.workers)


def task_loss(model: torch.nn.Module, task: str, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    loss = find_task(task).objective(model(task, batch), batch)
    return loss, {f"loss_{task}": loss.item()}


def validation(shards: Path, tasks: list[str], config: TrainConfig, model: FameVil) -> dict[str, float]:
    """The tasks' validation metrics through evaluate's code (greedy captions, one random-100 draw, no
    METEOR), and their `score`: the mean of each task's headline metric, which picks the best weights."""
    measured = measure(model, shards, tasks, "val", batch_size=2 * config.batch_size, random100_runs=1, seed=config.seed, meteor=False)
    metrics = flatten(measured.metrics)
    return metrics | {SCORE: sum(metrics[find_task(task).metric] for task in tasks) / len(tasks)}


def check_shards(shards: Path, tasks: list[Task]):
    """The shards' manifest, once every task's training and validation subsets are known to be there."""
    manifest = require_artifact(shards, "shards")
    present = read_sizes(shards)["subsets"]
    for task in tasks:
        for subset in (f"{task.subset}/train", f"{task.subset}/val"):
            if present.get(subset, {}).get("samples", 0) < 1:
                source = "--fashioniq" if task.subset == "fashioniq" else "--fashiongen"
                raise FamevilError(
                    f"{shards}: has no {subset!r} samples, which {task.name} ({task.title}) trains or validates on; "
                    f"prepare it with famevil prepare {source} ..."
                )
    return manifest


def subcategory_labels(shards: Path) -> tuple[int, dict[str, list[str]]]:
    """SCR's classes: the subcategories seen in training, in the shards' id order (FashionIQ-only shards have none)."""
    subcategories = read_vocab(shards).get("subcategory")
    if subcategories is None:
        return 0, {}
    return subcategories.num_train, {"subcategory": list(subcategories.names[: subcategories.num_train])}
