"""famevil prepare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from famevil.limits import SEED, SHARD
from famevil_cli.common import OutOption, OverwriteOption, WorkersOption, call, defaults_of, out_console, table
from stages import prepare as stage

defaults = defaults_of(stage.prepare)


def prepare(
    out: OutOption,
    fashiongen: Annotated[Path | None, typer.Option(help="Folder with fashiongen_256_256_{train,validation}.h5.")] = defaults["fashiongen"],
    fashioniq: Annotated[Path | None, typer.Option(help="Folder with captions/, image_splits/ and images/.")] = defaults["fashioniq"],
    catalogue: Annotated[Path | None, typer.Option(help="Your own products, .csv or .jsonl (columns above), instead of the releases.")] = defaults["catalogue"],
    images: Annotated[Path | None, typer.Option(help="Folder the catalogue's image paths are relative to.")] = defaults["images"],
    pairs: Annotated[Path | None, typer.Option(help="Modification texts between catalogue images, .csv or .jsonl (columns above).")] = defaults["pairs"],
    shard_size: Annotated[int, typer.Option(help=f"Samples per tar shard. {SHARD.help}", min=1, max=SHARD.most)] = defaults["shard_size"],
    seed: Annotated[int, typer.Option(help=f"Seed of the training samples' random order in the shards. {SEED.help}", min=0, max=SEED.most)] = defaults["seed"],
    workers: WorkersOption = defaults["workers"],
    overwrite: OverwriteOption = defaults["overwrite"],
) -> None:
    result = call(stage.prepare, locals())
    subsets = result.sizes["subsets"]
    total = sum(entry["samples"] for entry in subsets.values())
    out_console.print(
        table(
            f"{result.out}  ({result.manifest.content_id[:19]}…)",
            ["subset", "samples", "shards"],
            [[name, entry["samples"], len(entry["shards"])] for name, entry in subsets.items()],
        )
    )
    for subset, skipped in result.sizes["skipped"].items():
        examples = ", ".join(skipped.get("examples", []))
        out_console.print(
            f"[yellow]skipped[/] {skipped['samples']} samples of {subset}: {skipped['missing_images']} images missing"
            + (f" (e.g. {examples})" if examples else ""),
            soft_wrap=True,
        )
    for name, vocab in result.sizes.get("vocab", {}).items():
        out_console.print(f"{name} vocabulary: {vocab['names']} names, {vocab['num_train']} seen in training")
    for note in result.notes:
        out_console.print(note, soft_wrap=True, highlight=False)
    resumed = f", {result.resumed_shards} shards resumed" if result.resumed_shards else ""
    out_console.print(f"{total} samples in {result.seconds:.1f} s ({total / result.seconds:.0f} samples/s{resumed})")
