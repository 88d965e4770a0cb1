"""famevil index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil.limits import BATCH, THUMBNAIL
from famevil_cli.common import ModelOption, OutOption, OverwriteOption, call, defaults_of, err_console, out_console
from stages import index as stage

defaults = defaults_of(stage.index)
BatchSizeOption = Annotated[int, typer.Option(help=f"Images per forward pass (and per resumable chunk). {BATCH.help}", min=1, max=BATCH.most)]
ThumbnailOption = Annotated[int, typer.Option(help=f"Thumbnail size in pixels (the longer side). {THUMBNAIL.help}", min=16, max=THUMBNAIL.most)]


def index(
    model: ModelOption,
    images: Annotated[Path, typer.Option("--images", help="A folder of images, or a CSV with an 'image' column.")],
    out: OutOption,
    batch_size: BatchSizeOption = defaults["batch_size"],
    thumbnail: ThumbnailOption = defaults["thumbnail"],
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    result = call(stage.index, locals())
    resumed = f", {result.resumed_chunks} batches resumed" if result.resumed_chunks else ""
    out_console.print(f"{result.out}: {result.items} images indexed in {result.seconds:.1f} s{resumed}", highlight=False, soft_wrap=True)
    if result.skipped:
        err_console.print(f"[yellow]skipped {len(result.skipped)} images[/] (listed in {result.out / 'skipped.jsonl'}):", highlight=False)
        for entry in result.skipped[:10]:
            err_console.print(f"  {entry['path']}: {entry['reason']}", highlight=False, soft_wrap=True)
