"""famevil synth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil.limits import SEED, SYNTH_IMAGE
from famevil_cli.common import OutOption, OverwriteOption, WorkersOption, call, defaults_of, err_console, out_console, table
from stages import synth as stage

defaults = defaults_of(stage.synth)


def synth(
    out: OutOption,
    preset: Annotated[str, typer.Option(help="tiny (tests), demo (the README pipeline) or bench (throughput).")] = defaults["preset"],
    seed: Annotated[int, typer.Option(help=f"Fixes every random choice: products, copy, pixels. {SEED.help}", min=0, max=SEED.most)] = defaults["seed"],
    image_size: Annotated[
        int | None, typer.Option(help=f"Image side in pixels (default: the preset's), at least {stage.MIN_IMAGE_SIZE}. {SYNTH_IMAGE.help}")
    ] = defaults["image_size"],
    workers: WorkersOption = defaults["workers"],
    contact_sheet: Annotated[Path | None, typer.Option(help="Also save a PNG grid of labelled samples here.")] = defaults["contact_sheet"],
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    err_console.print(f"synth: preset {preset}, seed {seed}")
    result = call(stage.synth, locals())
    fashiongen, fashioniq = result.sizes["fashiongen"], result.sizes["fashioniq"]
    out_console.print(
        table(
            f"{result.out}  ({result.manifest.content_id[:19]}…)",
            ["source / split", "products or triplets", "images", "note"],
            [[f"fashiongen/{s}", v["products"], v["images"], f"{v['subcategories']} subcategories"] for s, v in fashiongen.items()]
            + [[f"fashioniq/{s}", v["triplets"], v["images"], f"{v['missing_images']} images missing, as in the release"] for s, v in fashioniq.items()],
        )
    )
    out_console.print(
        table(
            "chance level on the evaluation splits (percent)",
            ["task", "metric", "chance"],
            [[task, metric, value] for task, values in result.chance.items() for metric, value in values.items()],
        )
    )
    if result.contact_sheet:
        out_console.print(f"contact sheet: {result.contact_sheet}")
