"""famevil inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from data_specs.manifest import require_artifact
from famevil_cli.common import out_console, run


def inspect(path: Annotated[Path, typer.Argument(help="An artifact directory written by a famevil stage.")]) -> None:
    """Show what an artifact is, the command that made it, what it was made from and what it holds.

    Example:

        famevil inspect runs/example/shards
    """
    manifest = run(require_artifact, root=path)
    out_console.print(
        f"[bold]{path}[/]: {manifest.kind} (schema {manifest.schema_version}), famevil {manifest.famevil_version}, {manifest.created}", soft_wrap=True
    )
    out_console.print(f"id:      {manifest.content_id}", highlight=False)
    out_console.print(f"command: {manifest.command}", highlight=False, soft_wrap=True)
    for ref in manifest.inputs:
        out_console.print(f"from:    {ref.role} ({ref.kind}) {ref.id} at {ref.path}", highlight=False, soft_wrap=True)
    out_console.print_json(data=manifest.details)
