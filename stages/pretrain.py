"""famevil pretrain: the demo's stand-in for CLIP weights, a backbone trained contrastively from scratch."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from famevil.bases import Base
from famevil.multitask import ModelConfig, MultiTaskModel
from famevil.tasks import find_task
from famevil.tasks.base import selection_keys
from famevil.training.loop import Job, TrainingResult
from famevil.training.recipe import fit_one_task, network_config, training_base, training_shards

PRETRAINING_TASK = "retrieval"  # the demo base is trained as plain CLIP is: contrastive image-text retrieval


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
    opened = training_shards(shards, [retrieval])
    model_config = network_config(config, (retrieval.name,))
    job = Job(
        kind="base",
        out=out,
        config=config,
        inputs=[opened.ref],
        details={"task": retrieval.name, "adapters": "frozen at zero"},
        resume=resume,
        overwrite=overwrite,
        title="pretrain",
        report_to=tuple(report_to or ()),
    )
    return fit_one_task(job, partial(_backbone_only, model_config, backbone), retrieval, opened, config, backbone)


def _backbone_only(model_config: ModelConfig, backbone: Base) -> MultiTaskModel:
    """The backbone and the task's head (the contrastive temperature) train; the adapters stay at zero."""
    model = backbone.model(model_config)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(("backbone.", "heads."))
    return model
