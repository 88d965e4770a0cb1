"""famevil evaluate (and evaluate --compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from data_specs.evaluations import flatten, read_metrics
from famevil.limits import BATCH, BEAMS, SEED
from famevil.tasks import task_names
from famevil_cli.common import OverwriteOption, call, defaults_of, err_console, out_console, run, table
from stages import evaluate as stage

defaults = defaults_of(stage.evaluate)
ArchOption = Annotated[str, typer.Option(help="The architecture of a local --base checkpoint file (e.g. ViT-B-16-quickgelu for OpenAI's weights).")]
MaxNewTokensOption = Annotated[int | None, typer.Option(help="Caption length limit in tokens (default: the text context, 76 for CLIP).", min=1)]


def evaluate(
    runs: Annotated[list[Path] | None, typer.Argument(help="With --compare: evaluation directories to print side by side.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Directory to write; it appears only when complete.")] = None,
    shards: Annotated[Path | None, typer.Option(help="A shards artifact (famevil prepare).")] = None,
    model: Annotated[Path | None, typer.Option(help="A famevil checkpoint directory.")] = defaults["model"],
    base: Annotated[
        str | None,
        typer.Option(
            help="Instead of --model: open_clip NAME:TAG, hf-hub:ORG/NAME, local-dir:DIR, a local checkpoint file, or a config name (random weights)."
        ),
    ] = defaults["base"],
    arch: ArchOption = defaults["arch"],
    tasks: Annotated[str | None, typer.Option(help=f"Comma-separated tasks (default: all the model has): {','.join(task_names())}.")] = defaults["tasks"],
    split: Annotated[str, typer.Option(help="The shards' split to evaluate on: val or train.")] = defaults["split"],
    beams: Annotated[int, typer.Option(help=f"Caption decoding: 1 is greedy, more is beam search. {BEAMS.help}", min=1, max=BEAMS.most)] = defaults["beams"],
    max_new_tokens: MaxNewTokensOption = defaults["max_new_tokens"],
    batch_size: Annotated[int, typer.Option(help=f"Images per forward pass. {BATCH.help}", min=1, max=BATCH.most)] = defaults["batch_size"],
    seed: Annotated[int, typer.Option(help=f"Fixes the random-100 draws (and random --base weights). {SEED.help}", min=0, max=SEED.most)] = defaults["seed"],
    compare: Annotated[bool, typer.Option("--compare", help="Print earlier runs side by side with the paper's numbers, evaluate nothing.")] = False,
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    if compare:
        _print_comparison(runs or [])
        return
    if out is None or shards is None:
        err_console.print("[bold red]error:[/] evaluate needs --out DIR and --shards DIR (or --compare DIR ...)")
        raise typer.Exit(2)
    result = call(stage.evaluate, locals(), tasks=[t for t in tasks.split(",") if t.strip()] if tasks else None)
    flat = flatten(result.metrics)
    out_console.print(
        table(f"{result.out}  ({result.manifest.content_id[:19]}…)", ["metric", "percent"], [[k, v if v is not None else "missing"] for k, v in flat.items()])
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")


def _print_comparison(runs: list[Path]) -> None:
    if not runs:
        err_console.print("[bold red]error:[/] --compare needs evaluation directories: famevil evaluate --compare DIR1 DIR2 ...")
        raise typer.Exit(2)
    flat = [flatten(run(read_metrics, directory=evaluation)) for evaluation in runs]
    paper = stage.paper_figures()
    names = sorted(set().union(*flat) | set(paper), key=lambda name: (name.split(".")[0], name))
    rows = [[name, *[f.get(name, "") if f.get(name) is not None else "" for f in flat], paper.get(name, "")] for name in names]
    out_console.print(
        table("evaluation runs against the paper (FAME-ViL multi-task, percent)", ["metric", *[str(evaluation) for evaluation in runs], "paper"], rows)
    )
