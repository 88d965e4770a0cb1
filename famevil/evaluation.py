"""A model's metrics on the shards' evaluation samples, in memory: the work of `famevil evaluate`
without its files, and what training validates with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from data_specs.shards import Shards
from famevil.data.loading import batched, samples
from famevil.data.transforms import image_transform
from famevil.multitask import MultiTaskModel
from famevil.progress import progress_bar
from famevil.tasks import TASKS
from famevil.tasks.base import EvalSettings, check_coverage


@dataclass
class Measurement:
    metrics: dict[str, Any]  # by task
    warnings: list[str]
    records: dict[str, list[dict]]  # predictions by file stem (retrieval, captions, classifications), every task's lines in task order


def measure(
    network: MultiTaskModel,
    shards: Shards,
    tasks: list[str],
    split: str = "val",
    beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = 64,
    random100_runs: int = 5,
    seed: int = 0,
    show_progress: bool = True,
    meteor: bool = True,
) -> Measurement:
    """The metrics of a model in memory (evaluate's work without the files; training validates with it,
    without METEOR, whose Java start-up costs seconds each time).

    Each subset is read once, whichever tasks evaluate on it; every batch goes to each of those tasks."""
    chosen = [TASKS[task] for task in tasks]
    check_coverage(shards, chosen, train=False, evaluate_on=split)
    settings = EvalSettings(
        split,
        image_transform(network.preprocess, train=False),
        network.tokenizer(),
        beams,
        max_new_tokens,
        random100_runs,
        seed,
        meteor,
        network.config.vocabularies,
    )
    was_training = network.training
    network.eval()
    evaluators = {task.name: task.evaluator(network, network.head(task.name), settings) for task in chosen}
    readers: dict[str, list[str]] = {}  # subset -> the tasks that read it, subsets in reading order
    for task in chosen:
        for subset in task.subsets(split):
            readers.setdefault(subset, []).append(task.name)
    with torch.no_grad():
        for subset, names in readers.items():
            with progress_bar(f"{', '.join(names)} on {subset}", shards.samples_in(subset), enabled=show_progress) as advance:
                for batch in batched(samples(shards, subset), batch_size):
                    for name in names:
                        evaluators[name].add(subset, batch)
                    advance(len(batch))
        measured = Measurement({}, [], {})
        for name, evaluator in evaluators.items():
            result = evaluator.finish()
            measured.metrics[name] = result.metrics
            measured.warnings += result.warnings
            for stem, lines in result.records.items():
                measured.records.setdefault(stem, []).extend(lines)
    network.train(was_training)
    return measured
