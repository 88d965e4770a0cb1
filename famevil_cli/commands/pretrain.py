"""famevil pretrain."""

from __future__ import annotations

from famevil_cli.commands.training_options import MaxStepsOption, PresetOption, ResumeOption, SetOption, print_training, training_overrides
from famevil_cli.common import OutOption, OverwriteOption, ReportToOption, ShardsOption, call, defaults_of
from stages import pretrain as stage

defaults = defaults_of(stage.pretrain)


def pretrain(
    shards: ShardsOption,
    out: OutOption,
    preset: PresetOption = defaults["preset"],
    set_: SetOption = None,
    max_steps: MaxStepsOption = None,
    resume: ResumeOption = defaults["resume"],
    overwrite: OverwriteOption = defaults["overwrite"],
    report_to: ReportToOption = defaults["report_to"],
) -> None:
    print_training(call(stage.pretrain, locals(), overrides=training_overrides(set_, max_steps)))
