"""famevil serve."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from data_specs.errors import FamevilError
from famevil.serving import SearchSession
from famevil_cli.common import ApproximateOption, BackendOption, IndexArgument, chosen_backend, defaults_of, err_console, out_console, run
from famevil_cli.server import allowed_hosts, create_app

defaults = defaults_of(SearchSession)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, opened before the model loads and before anything is printed: a
    port in use is then one line that says so at once, not a banner followed by the server's own error."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise FamevilError(f"port {port} is already in use on {host}; stop what uses it, or pick another port with --port") from None
        raise FamevilError(f"cannot listen on {host} port {port} ({error.strerror or error}); check --host and --port") from None


def serve(
    index_dir: IndexArgument,
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = defaults["model"],
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the server to this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="A name the server is reached by (repeat the option). Requests naming another host are refused, against DNS "
            "rebinding; by default the server answers to localhost, 127.0.0.1, [::1] and --host, or any name for --host 0.0.0.0.",
        ),
    ] = None,
    backend: BackendOption = defaults["backend"],
    approximate: ApproximateOption = False,
) -> None:
    """Serve a catalogue index: an HTTP JSON API and a web page.

    The API: text search, similar items (from an upload or a catalogue item) and composed search
    (the same, with how the wanted item differs; only where the index's model has composed
    retrieval), each paged (top, offset) and filtered by category and subcategory; /api/info, what
    the index holds and answers; a product's fields, caption and zero-shot tags; caption and classify
    of an upload. Its OpenAPI schema is at /openapi.json (there is no /docs page, which would load
    scripts from another site). The page, at /: product cards, filters, paging, a product's detail
    and its similar items, and composed search where the index answers it. --backend ranks in a Qdrant
    collection famevil export-index wrote, items and thumbnails still read from INDEX. docs/serving.md
    has more.

    Example (after famevil index; Ctrl-C stops it):

        famevil serve runs/example/index --port 8000
    """
    backend = run(chosen_backend, backend=backend, approximate=approximate)
    listener = run(listen, host=host, port=port)
    catalogue = run(SearchSession, index=index_dir, model=model, backend=backend)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can use the server (it has no authentication)")
    address = f"[{host}]" if ":" in host else host
    out_console.print(f"serving {index_dir} ({len(catalogue.index)} items) at http://{address}:{port}/", highlight=False, soft_wrap=True)
    app = create_app(catalogue, hosts=allowed_hosts(host, allowed_host or ()))
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
