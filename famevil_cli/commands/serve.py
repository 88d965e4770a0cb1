"""famevil serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from famevil.serving import SearchSession
from famevil_cli.common import ApproximateOption, IndexArgument, defaults_of, err_console, out_console, run
from famevil_cli.server import create_app

defaults = defaults_of(SearchSession)


def serve(
    index_dir: IndexArgument,
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = defaults["model"],
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the server to this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    approximate: ApproximateOption = defaults["approximate"],
) -> None:
    """Serve a catalogue index: an HTTP JSON API and a web page.

    The API: text search, composed search from an upload or a catalogue item, caption and classify
    of an upload (its schema at /docs). The page, at /: search by text or from a photo, open a
    product's caption and subcategory, and search for a variation of it.

    Example (after famevil index; Ctrl-C stops it):

        famevil serve runs/example/index --port 8000
    """
    catalogue = run(SearchSession, index=index_dir, model=model, approximate=approximate)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can use the server (it has no authentication)")
    out_console.print(f"serving {index_dir} ({len(catalogue.index)} items) at http://{host}:{port}/", highlight=False, soft_wrap=True)
    uvicorn.run(create_app(catalogue), host=host, port=port, log_level="warning")
