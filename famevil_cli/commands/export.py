"""famevil export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil_cli.common import ModelOption, OutOption, OverwriteOption, call, defaults_of, out_console
from stages import export as stage

defaults = defaults_of(stage.export)


def export(
    model: ModelOption,
    out: OutOption,
    form: Annotated[
        str, typer.Option("--format", help="famevil (a checkpoint), open_clip (a local-dir: folder of the backbone) or onnx (the image and text encoders).")
    ] = defaults["form"],
    metrics: Annotated[Path | None, typer.Option("--metrics", help="An evaluation (famevil evaluate) for the card's table.")] = defaults["metrics"],
    task: Annotated[
        str | None, typer.Option("--task", help="--format onnx: the task whose adapters the encoders carry (default: xmr, else the model's first).")
    ] = defaults["task"],
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    result = call(stage.export, locals())
    trained_on = ", trained on the synthetic data set (the card says so)" if result.synthetic else ""
    out_console.print(f"{result.out}: {result.format} export with a model card{trained_on}", highlight=False, soft_wrap=True)
