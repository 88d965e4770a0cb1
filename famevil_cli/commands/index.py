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
    images: Annotated[Path, typer.Option("--images", help="A folder of images, or (without --catalogue) a CSV with an 'image' column.")],
    out: OutOption,
    catalogue: Annotated[
        Path | None, typer.Option("--catalogue", help="A products file (.csv or .jsonl, as prepare --catalogue reads it); its images relative to --images.")
    ] = defaults["catalogue"],
    text_weight: Annotated[
        float, typer.Option(help="With --catalogue: weight of each product's title and description in its text search vector (0: images only).", min=0, max=1)
    ] = defaults["text_weight"],
    batch_size: BatchSizeOption = defaults["batch_size"],
    thumbnail: ThumbnailOption = defaults["thumbnail"],
    approximate: Annotated[
        bool, typer.Option("--approximate", help="Also build FAISS's compact index, read memory-mapped by search and serve --approximate (needs faiss-cpu).")
    ] = defaults["approximate"],
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    result = call(stage.index, locals())
    if result is None:  # processes other than the main one stay quiet
        return
    resumed = f", {result.resumed_chunks} batches resumed" if result.resumed_chunks else ""
    searches = ", ".join(result.manifest.details["searches"])
    out_console.print(
        f"{result.out}: {result.items} images of {result.products} products indexed in {result.seconds:.1f} s{resumed}; searches: {searches}",
        highlight=False,
        soft_wrap=True,
    )
    if result.skipped:
        err_console.print(f"[yellow]skipped {len(result.skipped)} rows or images[/] (listed in {result.out / 'skipped.jsonl'}):", highlight=False)
        for entry in result.skipped[:10]:
            err_console.print(f"  {_where(entry)}: {entry['reason']}", highlight=False, soft_wrap=True)


def _where(skipped: dict) -> str:
    """A skipped entry's place: the listing's file and row (and the image it names), or the image alone."""
    if skipped["file"] is None:
        return skipped["path"]
    return f"{skipped['file']} row {skipped['row']}" + (f" ({skipped['path']})" if skipped["path"] else "")
