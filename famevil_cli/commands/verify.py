"""famevil verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from data_specs.manifest import require_artifact, verify_artifact
from famevil_cli.common import out_console, run


def verify(path: Annotated[Path, typer.Argument(help="An artifact directory written by a famevil stage.")]) -> None:
    """Check every file of an artifact against its manifest: the listed files, their sizes and their full
    SHA-256, and the content id. Stages check sizes, weights and manifests whenever they read an
    artifact; this reads everything (the shards' tars too).

    Example:

        famevil verify runs/example/shards
    """
    manifest = run(require_artifact, root=path, verify=False)
    hashed = run(verify_artifact, root=path, manifest=manifest, full=True)
    out_console.print(f"{path}: {manifest.kind} {manifest.content_id}: {hashed} files match their manifest", highlight=False, soft_wrap=True)
