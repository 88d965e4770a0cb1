"""The paper's optimisation: AdamW with one learning rate for CLIP's weights and another for what
FAME-ViL adds (adapters and heads), linear warm-up, then cosine or step decay."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from famevil.training.config import TrainConfig


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Two AdamW groups: the backbone's parameters at lr_backbone, the rest at lr_adapters.

    Frozen parameters (requires_grad False) are left out; an empty group is dropped.
    """
    backbone, added = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (backbone if name.startswith("backbone.") else added).append(parameter)
    groups = [{"params": backbone, "lr": config.lr_backbone, "name": "backbone"}, {"params": added, "lr": config.lr_adapters, "name": "adapters"}]
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, config), eps=config.adam_eps, weight_decay=config.weight_decay)


def lr_multiplier(config: TrainConfig) -> Callable[[int], float]:
    """The factor on each group's learning rate after `step` optimiser updates."""

    def multiplier(step: int) -> float:
        if step < config.warmup_steps:
            return config.warmup_start + (1 - config.warmup_start) * (step + 1) / config.warmup_steps
        if config.schedule == "step":
            return 0.1 ** sum(step >= boundary for boundary in config.decay_steps)
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(config))
