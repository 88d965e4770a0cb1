"""famevil search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil.limits import TOP
from famevil_cli.common import ApproximateOption, IndexArgument, JsonOption, call, defaults_of, out_console, table
from stages import search as search_stage

defaults = defaults_of(search_stage.search)


def search(
    index_dir: IndexArgument,
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.", show_default=False)] = defaults["text"],
    image: Annotated[Path | None, typer.Option("--image", help="Composed search: a reference image ...")] = defaults["image"],
    modify: Annotated[str | None, typer.Option("--modify", help="... and how the wanted item differs from it.")] = defaults["modify"],
    top: Annotated[int, typer.Option(help=f"How many results. {TOP.help}", min=1, max=TOP.most)] = defaults["top"],
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = defaults["model"],
    as_json: JsonOption = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write a page of thumbnails with their scores.")] = defaults["html"],
    approximate: ApproximateOption = defaults["approximate"],
) -> None:
    result = call(search_stage.search, locals(), index=index_dir, html=html_file)
    if as_json:
        out_console.print_json(data=[{"rank": h.rank, "item": h.item, "path": h.path, "score": h.score} for h in result.hits])
        return
    out_console.print(table(f"{result.kind} search: {result.query}", ["rank", "score", "image"], [[h.rank, h.score, h.path] for h in result.hits]))
