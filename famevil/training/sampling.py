"""Which task each training iteration serves: one task per iteration, drawn by a seeded generator whose
state is saved with the run, so a resumed run draws the same sequence."""

from __future__ import annotations

import random
from typing import Any

from data_specs.errors import FamevilError

STRATEGIES = ("size", "uniform", "round-robin")


class TaskSampler:
    """`size`: probability proportional to each task's training-set size (the paper's default);
    `uniform`: equal probability; `round-robin`: each task in turn."""

    def __init__(self, sizes: dict[str, int], strategy: str = "size", seed: int = 0):
        if strategy not in STRATEGIES:
            raise FamevilError(f"--sampling {strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if not sizes or min(sizes.values()) < 1:
            raise FamevilError(f"task sampling needs at least one task with training samples; got {sizes}")
        self.tasks = list(sizes)
        self.strategy = strategy
        total = sum(sizes.values())
        self.probabilities = {task: (size / total if strategy == "size" else 1 / len(sizes)) for task, size in sizes.items()}
        self._rng = random.Random(seed)
        self._draws = 0

    def __next__(self) -> str:
        self._draws += 1
        if self.strategy == "round-robin":
            return self.tasks[(self._draws - 1) % len(self.tasks)]
        return self._rng.choices(self.tasks, weights=[self.probabilities[t] for t in self.tasks])[0]

    def __iter__(self) -> TaskSampler:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self._draws, "rng": self._rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._draws = state["draws"]
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
