"""famevil export-index."""

from __future__ import annotations

from typing import Annotated

import typer

from famevil.limits import POINTS_BATCH
from famevil_cli.common import IndexArgument, call, defaults_of, out_console
from stages import export_index as stage

defaults = defaults_of(stage.export_index)


def export_index(
    index_dir: IndexArgument,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="The collection: qdrant://HOST[:PORT]/COLLECTION, qdrants://... (TLS) or qdrant+local:FOLDER/COLLECTION (local mode). "
            "A server's API key is read from QDRANT_API_KEY.",
        ),
    ],
    batch_size: Annotated[
        int, typer.Option(help=f"Points per request (and per resumable batch). {POINTS_BATCH.help}", min=1, max=POINTS_BATCH.most)
    ] = defaults["batch_size"],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the collection if it holds another index's points.")] = defaults["overwrite"],
) -> None:
    result = call(stage.export_index, locals(), index=index_dir)
    products = f" and {result.products} products" if result.products else ""
    resumed = f", {result.resumed} points already there" if result.resumed else ""
    out_console.print(f"{to}: {result.items} items{products} exported in {result.seconds:.1f} s{resumed}", highlight=False, soft_wrap=True)
