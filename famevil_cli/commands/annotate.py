"""famevil annotate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil.limits import BATCH, TOP
from famevil_cli.common import ModelOption, OutOption, OverwriteOption, call, defaults_of, err_console, out_console
from stages import annotate as stage

defaults = defaults_of(stage.annotate)


def annotate(
    model: ModelOption,
    images: Annotated[Path, typer.Option("--images", help="The folder the catalogue's image paths are relative to (without --catalogue: its images).")],
    out: OutOption,
    catalogue: Annotated[
        Path | None, typer.Option("--catalogue", help="Products as a .csv or .jsonl file, read as prepare --catalogue reads it (only 'image' is required).")
    ] = defaults["catalogue"],
    attributes: Annotated[
        Path | None, typer.Option("--attributes", help='A JSON file of label sets, such as {"colour": ["black", "white"]}; each gets its most likely label.')
    ] = defaults["attributes"],
    labels: Annotated[
        str | None,
        typer.Option("--labels", help="Comma-separated subcategories for zero-shot, for a model without SCR (default: the catalogue's subcategory values)."),
    ] = defaults["labels"],
    top: Annotated[int, typer.Option(help=f"How many subcategories to list per product. {TOP.help}", min=1, max=TOP.most)] = defaults["top"],
    max_new_tokens: Annotated[int | None, typer.Option(help="Caption length limit in tokens (default: the text context).", min=1)] = defaults["max_new_tokens"],
    batch_size: Annotated[int, typer.Option(help=f"Products per forward pass (and per resumable chunk). {BATCH.help}", min=1, max=BATCH.most)] = defaults[
        "batch_size"
    ],
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    given = labels.split(",") if labels is not None else None
    result = call(stage.annotate, locals(), labels=given)
    resumed = f", {result.resumed_chunks} batches resumed" if result.resumed_chunks else ""
    out_console.print(f"{result.out}: {result.products} products annotated in {result.seconds:.1f} s{resumed}", highlight=False, soft_wrap=True)
    if result.skipped:
        err_console.print(f"[yellow]skipped {len(result.skipped)}[/] (listed in {result.out / 'skipped.jsonl'}):", highlight=False)
        for entry in result.skipped[:10]:
            where = f"{entry['file']}, line {entry['line']}" if entry["line"] else entry["file"]
            err_console.print(f"  {where}: {entry['reason']} {entry['detail']}".rstrip(), highlight=False, soft_wrap=True)
