"""famevil verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from data_specs.manifest import require_artifact, verify_artifact
from famevil_cli.common import out_console, run


def verify(path: Annotated[Path, typer.Argument(help="An artifact directory written by a famevil stage.")]) -> None:
    """Check every file of an artifact against its manifest: the listed files, their sizes and their full
    SHA-256, the manifest's own fields against their digests (an edited one is named), and the content
    id. Stages check the manifest and the sizes when they open an artifact, and hash each file as they
    read it; this reads everything, whatever a stage would read.

    Example:

        famevil verify runs/example/shards
    """
    manifest = run(require_artifact, root=path, verify=False)
    hashed = run(verify_artifact, root=path, manifest=manifest, full=True)
    out_console.print(f"{path}: {manifest.kind} {manifest.content_id}: {hashed} files match their manifest", highlight=False, soft_wrap=True)
