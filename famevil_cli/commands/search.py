"""famevil search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil_cli.common import ApproximateOption, IndexArgument, JsonOption, defaults_of, out_console, run, table
from stages import search as search_stage

defaults = defaults_of(search_stage.Catalogue) | defaults_of(search_stage.Catalogue.search)


def search(
    index_dir: IndexArgument,
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.", show_default=False)] = defaults["text"],
    image: Annotated[Path | None, typer.Option("--image", help="Composed search: a reference image ...")] = defaults["image"],
    modify: Annotated[str | None, typer.Option("--modify", help="... and how the wanted item differs from it.")] = defaults["modify"],
    top: Annotated[int, typer.Option(help="How many results.", min=1)] = defaults["top"],
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = defaults["model"],
    as_json: JsonOption = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write a page of thumbnails with their scores.")] = None,
    approximate: ApproximateOption = defaults["approximate"],
) -> None:
    """Search a catalogue index by text, or by a reference image and a modification (composed search).

    Exact search over every item (--approximate: FAISS inverted files). Results as a table, --json,
    or --html FILE, a page of thumbnails with their scores.

    Example (seconds on a laptop CPU, after famevil index):

        famevil search runs/example/index "navy wool cardigan" --top 5
        famevil search runs/example/index \\
            --image runs/example/raw/fashioniq/images/B002F7A5G2.png \\
            --modify "is red with short sleeves"
    """
    catalogue = run(search_stage.Catalogue, index=index_dir, model=model, approximate=approximate)
    result = run(catalogue.search, text=text, image=image, modify=modify, top=top)
    if html_file is not None:
        html_file.write_text(search_stage.results_page(catalogue, result), encoding="utf-8")
    if as_json:
        out_console.print_json(data=[{"rank": h.rank, "item": h.item, "path": h.path, "score": h.score} for h in result.hits])
        return
    out_console.print(table(f"{result.kind} search: {result.query}", ["rank", "score", "image"], [[h.rank, h.score, h.path] for h in result.hits]))
