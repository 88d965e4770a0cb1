"""What pretrain, teach and distill share: their training options and how a training run is printed."""

from __future__ import annotations

from typing import Annotated

import typer

from famevil.limits import TRAINING_BATCH
from famevil.training.config import PRESET_NAMES, parse_overrides
from famevil.training.loop import TrainingResult
from famevil_cli.common import out_console, run, table

PresetOption = Annotated[str, typer.Option(help=f"Training options: one of {', '.join(PRESET_NAMES)}, or a .json file.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a training option: NAME=VALUE (repeatable), e.g. --set batch_size=16. Each is checked against its range before any work, "
        f"and a refusal says the range and why: sizes are bounded (batch_size at most {TRAINING_BATCH.most:,} per process), counts of updates are not.",
    ),
]
MaxStepsOption = Annotated[int | None, typer.Option(help="Optimiser updates (overrides the preset's max_steps).", min=1)]
BaseOption = Annotated[
    str | None,
    typer.Option(
        help="Starting weights, which bring their architecture, activation and preprocessing: open_clip NAME:TAG (ViT-B-16:openai), "
        "hf-hub:ORG/NAME (hf-hub:Marqo/marqo-fashionSigLIP), local-dir:DIR, a transformers CLIPModel folder, a famevil checkpoint directory, "
        "or a local open_clip file of --set model=. Default: random."
    ),
]
ResumeOption = Annotated[str | None, typer.Option(help="'auto' continues OUT's interrupted run; or a checkpoints/step-N folder to start from.")]


def training_overrides(assignments: list[str] | None, max_steps: int | None) -> dict:
    """--set NAME=VALUE ... and --max-steps as the stage's `overrides`."""
    overrides = run(parse_overrides, assignments=assignments or [])
    return overrides | ({"max_steps": max_steps} if max_steps else {})


def print_training(result: TrainingResult) -> None:
    if result.manifest is None:  # processes other than the main one stay quiet
        return
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    kept = f"the best weights, from step {result.best_step}" if result.best_step else "the last weights (no validation)"
    out_console.print(f"{result.out}: {result.manifest.kind}, {result.steps} updates in {result.seconds:.0f} s{resumed}; kept {kept}", soft_wrap=True)
    if result.validation:
        out_console.print(table("validation of the best weights", ["metric", "value"], [[name, value] for name, value in result.validation.items()]))
