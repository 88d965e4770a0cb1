"""famevil distill."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from data_specs.errors import FamevilError
from famevil.tasks import find_task, task_names
from famevil.training.balancing import BALANCINGS
from famevil_cli.commands.training_options import BaseOption, MaxStepsOption, PresetOption, ResumeOption, SetOption, print_training, training_overrides
from famevil_cli.common import OutOption, OverwriteOption, ReportToOption, ShardsOption, call, defaults_of, run
from stages import distill as stage

defaults = defaults_of(stage.distill)
BalancingOption = Annotated[str, typer.Option(help=f"How the tasks' gradients combine: {', '.join(BALANCINGS)} (none: summed, the paper's).")]


def distill(
    shards: ShardsOption,
    out: OutOption,
    teacher_outputs: Annotated[
        list[Path] | None, typer.Option("--teacher-outputs", help="A famevil dump directory; one per task (repeat the option).")
    ] = defaults["teacher_outputs"],
    tasks: Annotated[
        str | None,
        typer.Option(help="The tasks to train, comma-separated (xmr,scr,fic for a catalogue without modification pairs). Default: all four."),
    ] = None,
    base: BaseOption = defaults["base"],
    preset: PresetOption = defaults["preset"],
    set_: SetOption = None,
    max_steps: MaxStepsOption = None,
    sampling: Annotated[str, typer.Option(help="Task sampling: size (proportional to training-set size), uniform or round-robin.")] = defaults["sampling"],
    kd_weight: Annotated[float, typer.Option(help="Weight of the distillation loss; 0 trains the multi-task baseline.", min=0)] = defaults["kd_weight"],
    kd_schedule: Annotated[
        str,
        typer.Option(help=f"The distillation weight over the run: {', '.join(stage.KD_SCHEDULES)} (anneal: linearly down to 0, teacher annealing)."),
    ] = defaults["kd_schedule"],
    temperature: Annotated[float, typer.Option(help="Distillation temperature.", min=0.01, max=100)] = defaults["temperature"],
    balancing: BalancingOption = defaults["balancing"],
    ias_target: Annotated[
        list[str] | None, typer.Option("--ias-target", help="With --balancing ias: TASK=VALUE, the task's target headline validation metric (repeat per task).")
    ] = None,
    ias_targets_from: Annotated[
        list[Path] | None, typer.Option("--ias-targets-from", help="With --balancing ias: an evaluation (famevil evaluate) whose headline metrics are targets.")
    ] = defaults["ias_targets_from"],
    resume: ResumeOption = defaults["resume"],
    overwrite: OverwriteOption = defaults["overwrite"],
    report_to: ReportToOption = defaults["report_to"],
) -> None:
    overrides = training_overrides(set_, max_steps)
    targets = run(_task_values, flag="--ias-target", assignments=ias_target or [])
    chosen = [name.strip() for name in tasks.split(",") if name.strip()] if tasks else None
    print_training(call(stage.distill, locals(), overrides=overrides, ias_targets=targets, tasks=chosen))


def _task_values(flag: str, assignments: list[str]) -> dict[str, float]:
    """TASK=VALUE pairs (a task by any of its names) as {task: value}."""
    values = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        try:
            values[find_task(name.strip()).name] = float(value)
        except (FamevilError, ValueError):
            raise FamevilError(f"{flag} {assignment!r}: expected TASK=NUMBER with a task among {', '.join(task_names())}") from None
        if not equals:
            raise FamevilError(f"{flag} {assignment!r}: expected TASK=NUMBER")
    return values
