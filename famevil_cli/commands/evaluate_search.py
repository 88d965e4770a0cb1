"""famevil evaluate-search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil_cli.common import IndexArgument, JsonOption, OutOption, OverwriteOption, call, defaults_of, out_console, table
from stages import evaluate_search as stage

defaults = defaults_of(stage.evaluate_search)
COLUMNS = {"queries": "queries", "r1": "R@1", "r5": "R@5", "r10": "R@10", "mrr": "MRR", "ndcg10": "nDCG@10"}


def evaluate_search(
    index_dir: IndexArgument,
    queries: Annotated[Path, typer.Option("--queries", help="A CSV or JSON Lines file: query (or image, modify) and relevant product ids per row.")],
    out: OutOption,
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = defaults["model"],
    as_json: JsonOption = False,
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    result = call(stage.evaluate_search, locals(), index=index_dir)
    if as_json:
        out_console.print_json(data=result.metrics)
        return
    rows = [[search, *[measured[key] for key in COLUMNS]] for search, measured in result.metrics.items()]
    title = f"{result.out}  ({result.manifest.content_id[:19]}…): percent, MRR and nDCG x100"
    out_console.print(table(title, ["search", *COLUMNS.values()], rows))
