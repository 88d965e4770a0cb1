"""famevil dump."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil.limits import BATCH, TOP_K
from famevil_cli.common import OutOption, OverwriteOption, ShardsOption, call, defaults_of, out_console
from stages import dump as stage

defaults = defaults_of(stage.dump)


def dump(
    teacher: Annotated[Path, typer.Option(help="A teacher directory (famevil teach).")],
    shards: ShardsOption,
    out: OutOption,
    top_k: Annotated[int, typer.Option(help=f"FIC: next-token log-probabilities kept per position. {TOP_K.help}", min=1, max=TOP_K.most)] = defaults["top_k"],
    batch_size: Annotated[int, typer.Option(help=f"Samples per forward pass. {BATCH.help}", min=1, max=BATCH.most)] = defaults["batch_size"],
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    result = call(stage.dump, locals())
    resumed = f" ({result.resumed_shards} shards resumed)" if result.resumed_shards else ""
    out_console.print(
        f"{result.out}: {result.task} teacher outputs for {result.samples} samples, {result.bytes_per_sample:,.0f} bytes per sample{resumed}", soft_wrap=True
    )
