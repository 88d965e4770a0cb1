"""How the tasks' gradients meet in one update: plainly summed (the paper's FAME-ViL), or balanced as in
the two alternatives its ablation compares, whose switches the authors' code has:

- IAS, implicit adaptive scheduling (their `gradient_strategy: implicit`): after each validation, a
  task that lags its target relative to the others gets its gradient on the backbone scaled up, a task
  ahead scaled down, by at most `gamma`;
- IMTL-G (their `imtlg`, update frequency 4): each update takes one batch of every task and combines
  their gradients so that the result projects equally onto each task's gradient.

The training loop calls a balancer around each micro-batch and before each optimiser step; it keeps
its state (IAS's scales) in the run's checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from data_specs.errors import FamevilError
from famevil.tasks import find_task

BALANCINGS = ("none", "ias", "imtl-g")
# The authors' IAS constants: the largest change of a scale, and how sharply it depends on the best
# task's relative score (to the 64th power: near its target, the scales move; far below, barely).
IAS_GAMMA, IAS_ALPHA, IAS_BETA = 0.5, 64, 1
MAX_LOG = 700.0  # exp() of more overflows a float
MIN_TARGET = 0.01  # a target of 0 (a teacher that scored nothing) counts as this: any score reaches it

Average = Callable[[torch.Tensor], torch.Tensor]  # a gradient averaged over the training processes


class Balancing:
    """No balancing: the gradients of an update's micro-batches add up."""

    tasks_per_update = 1  # micro-batches an update takes per gradient-accumulation step

    def attach(self, model: nn.Module) -> None:
        """Called once with the unwrapped model, before training."""

    def start_micro_batch(self, task: str) -> None:
        """Called before the forward pass of a micro-batch of `task`."""

    def end_micro_batch(self, model: nn.Module, task: str, synced: bool, average: Average) -> None:
        """Called after its backward pass; `synced`: the processes have averaged the gradients already."""

    def before_step(self, model: nn.Module) -> None:
        """Called before the optimiser step (before gradient clipping)."""

    def after_validation(self, metrics: dict[str, float]) -> dict[str, float]:
        """Called on every process with the validation metrics; returns figures for the training log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what state_dict() returned."""


def ias_scales(relative_scores: dict[str, float], gamma: float = IAS_GAMMA, alpha: float = IAS_ALPHA, beta: float = IAS_BETA) -> dict[str, float]:
    """Each task's gradient scale from its validation score relative to its target (1 = on target):
    above 1 for a task below the tasks' average, below 1 for one above it."""
    average = sum(relative_scores.values()) / len(relative_scores)
    best = max(relative_scores.values())
    scales = {}
    for task, relative in relative_scores.items():
        lag = average - relative
        # best**alpha * |lag|**beta, in logarithms: a task far above its target would overflow a float.
        size = math.exp(min(MAX_LOG, alpha * math.log(best) + beta * math.log(abs(lag)))) if lag and best > 0 else 0.0
        scales[task] = 1 + math.copysign(min(gamma, size), lag)
    return scales


class ImplicitAdaptiveScheduling(Balancing):
    """IAS: the gradient a task's batch sends into the backbone (CLIP's own weights; not the adapters
    or heads, as in the authors' code) is multiplied by the task's scale, set from the last validation:
    score / target per task, through `ias_scales`. Until the first validation every scale is 1."""

    def __init__(self, targets: dict[str, float]):
        """targets: each task's target for its headline validation metric."""
        self.targets = targets
        self.headlines = {task: find_task(task).headline_key for task in targets}
        self.scales = dict.fromkeys(targets, 1.0)
        self._task: str | None = None

    def attach(self, model: nn.Module) -> None:
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and name.startswith("backbone."):
                parameter.register_hook(self._scale)

    def _scale(self, gradient: torch.Tensor) -> torch.Tensor:
        return gradient * self.scales[self._task] if self._task is not None else gradient

    def start_micro_batch(self, task: str) -> None:
        self._task = task

    def after_validation(self, metrics: dict[str, float]) -> dict[str, float]:
        missing = [self.headlines[task] for task in self.targets if self.headlines[task] not in metrics]
        if missing:
            raise FamevilError(f"--balancing ias: validation gave no {', '.join(missing)}; IAS needs every task validated")
        self.scales = ias_scales({task: metrics[self.headlines[task]] / max(target, MIN_TARGET) for task, target in self.targets.items()})
        return {f"ias_scale_{task}": round(scale, 4) for task, scale in self.scales.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"scales": self.scales}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scales = state["scales"]


def imtl_g(gradients: list[torch.Tensor]) -> torch.Tensor:
    """IMTL-G's combination of task gradients (same shape each): the weighted sum, weights adding to
    1, whose projections onto every task's unit gradient are equal (Liu et al., ICLR 2021, closed form)."""
    if len(gradients) == 1:
        return gradients[0]
    flat = torch.stack([gradient.flatten().double() for gradient in gradients])
    if flat.shape[1] == 1:  # a scalar parameter: every weighting projects equally
        return flat.mean().to(gradients[0].dtype).reshape(gradients[0].shape)
    units = nn.functional.normalize(flat, dim=1)
    differences, unit_differences = flat[0] - flat[1:], units[0] - units[1:]
    # Weights 2..T solve  weights @ (differences @ unit_differences^T) = g1 @ unit_differences^T.
    weights = flat[0] @ unit_differences.T @ torch.linalg.pinv(differences @ unit_differences.T)
    weights = torch.cat([(1 - weights.sum()).reshape(1), weights])
    return (weights @ flat).to(gradients[0].dtype).reshape(gradients[0].shape)


class GradientBalancing(Balancing):
    """IMTL-G: every update takes each task in turn (round-robin sampling), keeps each task's gradient
    apart, and combines them parameter by parameter, as the authors' code does; a parameter only one
    task reaches (its adapters, its head) gets that task's gradient as it is."""

    def __init__(self, tasks: list[str]):
        self.tasks_per_update = len(tasks)
        self._gradients: dict[str, dict[str, torch.Tensor]] = {}

    def end_micro_batch(self, model: nn.Module, task: str, synced: bool, average: Average) -> None:
        kept = self._gradients.setdefault(task, {})
        for name, parameter in model.named_parameters():
            if parameter.grad is None or not parameter.grad.any():
                continue
            # Accumulating micro-batches are not averaged over the processes yet; this task's gradient must be.
            gradient = parameter.grad if synced else average(parameter.grad)
            kept[name] = kept[name] + gradient if name in kept else gradient.clone()
            parameter.grad = None

    def before_step(self, model: nn.Module) -> None:
        # The loop divides each micro-batch's loss by the micro-batches per update; a task had
        # 1/tasks_per_update of them, so its mean gradient is its sum times tasks_per_update.
        for name, parameter in model.named_parameters():
            per_task = [gradients[name] for gradients in self._gradients.values() if name in gradients]
            if per_task:
                parameter.grad = imtl_g(per_task) * self.tasks_per_update
        self._gradients.clear()


def build_balancing(name: str, tasks: list[str], targets: dict[str, float] | None = None) -> Balancing:
    """The balancer `--balancing NAME` asks for; IAS needs a target for every task."""
    if name == "none":
        return Balancing()
    if name == "imtl-g":
        return GradientBalancing(tasks)
    if name == "ias":
        missing = [task for task in tasks if task not in (targets or {})]
        if missing:
            raise FamevilError(
                f"--balancing ias: no target for {', '.join(missing)}; give --ias-target TASK=VALUE for each "
                "(its headline validation metric, e.g. the task's teacher's evaluation)"
            )
        return ImplicitAdaptiveScheduling({task: targets[task] for task in tasks})
    raise FamevilError(f"--balancing {name!r}: choose one of {', '.join(BALANCINGS)}")
