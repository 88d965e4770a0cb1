"""famevil teach."""

from __future__ import annotations

from typing import Annotated

import typer

from famevil.tasks import TASKS
from famevil_cli.commands.training_options import BaseOption, MaxStepsOption, PresetOption, ResumeOption, SetOption, print_training, training_overrides
from famevil_cli.common import OutOption, OverwriteOption, ReportToOption, ShardsOption, call, defaults_of
from stages import teach as stage

defaults = defaults_of(stage.teach)


def teach(
    task: Annotated[str, typer.Option(help="One of: " + "; ".join(f"{t.name} ({', '.join(t.aliases)}): {t.title}" for t in TASKS.values()) + ".")],
    shards: ShardsOption,
    out: OutOption,
    base: BaseOption = defaults["base"],
    preset: PresetOption = defaults["preset"],
    set_: SetOption = None,
    max_steps: MaxStepsOption = None,
    resume: ResumeOption = defaults["resume"],
    overwrite: OverwriteOption = defaults["overwrite"],
    report_to: ReportToOption = defaults["report_to"],
) -> None:
    print_training(call(stage.teach, locals(), overrides=training_overrides(set_, max_steps)))
