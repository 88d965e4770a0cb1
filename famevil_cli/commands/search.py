"""famevil search."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from famevil.catalogue_index import OFFSET
from famevil.limits import TOP
from famevil_cli.common import ApproximateOption, BackendOption, IndexArgument, JsonOption, call, chosen_backend, defaults_of, out_console, run, table
from stages import search as search_stage

defaults = defaults_of(search_stage.search)


def search(
    index_dir: IndexArgument,
    text: Annotated[str | None, typer.Argument(help="What to look for, in words (not with --image).", show_default=False)] = defaults["text"],
    image: Annotated[Path | None, typer.Option("--image", help="A reference image: alone, similar products; with --modify, composed search.")] = defaults[
        "image"
    ],
    modify: Annotated[str | None, typer.Option("--modify", help="How the wanted product differs from --image (composed search).")] = defaults["modify"],
    top: Annotated[int, typer.Option(help=f"How many results. {TOP.help}", min=1, max=TOP.most)] = defaults["top"],
    offset: Annotated[
        int, typer.Option(help=f"Skip this many results first: --offset 10 --top 10 is the second page. {OFFSET.help}", min=0, max=OFFSET.most)
    ] = defaults["offset"],
    category: Annotated[str | None, typer.Option("--category", help="Only products of this catalogue category.")] = defaults["category"],
    subcategory: Annotated[str | None, typer.Option("--subcategory", help="Only products of this subcategory.")] = defaults["subcategory"],
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = defaults["model"],
    as_json: JsonOption = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write a page of thumbnails with titles, product ids and scores.")] = defaults["html"],
    backend: BackendOption = defaults["backend"],
    approximate: ApproximateOption = False,
) -> None:
    backend = run(chosen_backend, backend=backend, approximate=approximate)
    result = call(search_stage.search, locals(), index=index_dir, html=html_file)
    if as_json:
        out_console.print_json(
            data={"query": result.query, "kind": result.kind, "offset": result.offset, "more": result.more, "hits": [asdict(h) for h in result.hits]}
        )
        return
    more = f" (more: --offset {result.offset + len(result.hits)})" if result.more else ""
    rows = [[h.rank, h.score, h.product_id, h.title, h.views, h.path] for h in result.hits]
    out_console.print(table(f"{result.kind} search: {result.query}{more}", ["rank", "score", "product", "title", "views", "image"], rows))
