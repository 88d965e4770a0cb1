"""Parameter accounting as in the paper's Table 4: one multi-task model against the four it replaces."""

from __future__ import annotations

import torch
from torch import nn

from famevil.model.fame_vil import FameVil, FameVilConfig
from famevil.model.tasks import TASK_NAMES

FASHIONGEN_SUBCATEGORIES = 121


def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def count_parameters(backbone: str, tsa_bottleneck: int = 64, xaa_bottleneck: int | None = None, num_classes: int = FASHIONGEN_SUBCATEGORIES) -> dict:
    """Integer counts of every part, built on the meta device: the architecture decides, no weights are made.

    The separate single-task models are counted as the paper counts them: a fine-tuned vanilla CLIP
    plus its small head for XMR, TGIR and SCR, and for FIC a CLIP with text-side cross-attention and
    the language-model head.
    """
    config = FameVilConfig(backbone, TASK_NAMES, tsa_bottleneck, xaa_bottleneck or tsa_bottleneck, num_classes=num_classes)
    with torch.device("meta"):
        model = FameVil(config)
    tsa = {task: _count(model.tsa[task]) for task in TASK_NAMES}
    heads = {task: _count(model.heads[task]) if task in model.heads else 0 for task in TASK_NAMES}
    backbone_count, xaa = _count(model.backbone), _count(model.xaa)
    multitask = backbone_count + xaa + sum(tsa.values()) + sum(heads.values())
    separate = sum(backbone_count + heads[task] for task in ("xmr", "tgir", "scr"))
    separate += backbone_count + _count(model.xaa["text"]) + heads["fic"]
    return {
        "backbone": backbone_count,
        "xaa": xaa,
        "tsa": tsa,
        "heads": heads,
        "multitask_total": multitask,
        "separate_total": separate,
        "saving_percent": round(100 * (1 - multitask / separate), 2),
    }
