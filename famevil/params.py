"""Parameter accounting as in the paper's Table 4: one multi-task model against the separate models it replaces."""

from __future__ import annotations

import torch

from famevil.bases import resolve_base
from famevil.model.adapter_config import AdapterConfig
from famevil.model.backbone import architecture_config, backbone_config
from famevil.multitask import ModelConfig, MultiTaskModel
from famevil.tasks import TASKS, task_names
from famevil.tasks.base import count_parameters as count

FASHIONGEN_SUBCATEGORIES = 121


def count_parameters(
    backbone: str,
    tsa_bottleneck: int = 64,
    xaa_bottleneck: int | None = None,
    num_classes: int = FASHIONGEN_SUBCATEGORIES,
    tasks: tuple[str, ...] | None = None,
) -> dict:
    """Integer counts of every part, built on the meta device: the architecture decides, no weights are made.

    backbone: an architecture's name (ViT-B-16, ViT-B-16-SigLIP) or a base whose config names it
    (hf-hub:ORG/NAME, local-dir:DIR, a famevil checkpoint, NAME:TAG); no weights are read.

    The separate single-task models are counted as the paper counts them, each task saying what its
    own model holds (a fine-tuned CLIP and its head; for captioning also the text-side cross-attention).
    num_classes: the subcategories a classifier head tells apart (FashionGen's 121).
    """
    tasks = tasks or task_names()
    vocabularies = {"subcategory": [""] * num_classes}
    adapters = AdapterConfig(tsa_bottleneck=tsa_bottleneck, xaa_bottleneck=xaa_bottleneck or tsa_bottleneck)
    config = ModelConfig(backbone=backbone, tasks=tasks, adapters=adapters, vocabularies=vocabularies)
    with torch.device("meta"):
        model = MultiTaskModel(config, _architecture(backbone))
    tsa = {task: count(model.tsa[task]) for task in tasks}
    heads = {task: count(model.head(task)) for task in tasks}
    backbone_count, xaa = count(model.backbone), count(model.xaa)
    multitask = backbone_count + xaa + sum(tsa.values()) + sum(heads.values())
    separate = sum(TASKS[task].standalone_parameters(model, model.head(task)) for task in tasks)
    return {
        "backbone": backbone_count,
        "xaa": xaa,
        "tsa": tsa,
        "heads": heads,
        "multitask_total": multitask,
        "separate_total": separate,
        "saving_percent": round(100 * (1 - multitask / separate), 2),
    }


def _architecture(backbone: str) -> dict:
    """An open_clip architecture by its name, else the architecture of the base it names (resolved
    before its weights are read, so none are)."""
    if architecture_config(backbone) is not None:
        return backbone_config(backbone)
    return resolve_base(backbone, "ViT-B-16").architecture
