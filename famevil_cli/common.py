"""What every command shares: the consoles, `run` (a stage's errors as one line), `call` (a stage run with
the command's options), `defaults_of` (options' defaults read from the stage), tables and common options.

Light on purpose: the root `famevil --help` imports this module and nothing that imports torch.
"""

from __future__ import annotations

import errno
import inspect
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from data_specs.errors import FamevilError, FamevilWarning
from data_specs.indexes import APPROXIMATE_BACKEND, EXACT_BACKEND
from famevil.limits import WORKERS

out_console = Console()
err_console = Console(stderr=True)
state = {"debug": False}  # set by the root options (--debug)
_python_show_warning = warnings.showwarning
Result = TypeVar("Result")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A FamevilWarning as one yellow line; any other warning as Python prints it."""
    if issubclass(category, FamevilWarning):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def run(stage: Callable[..., Result], **options) -> Result:
    """Run a stage; a FamevilError becomes one red line and exit code 1 (a traceback only with --debug),
    a FamevilWarning one yellow line."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return stage(**options)
    except FamevilError as error:
        if state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: rerun the same command to resume or start over")
        raise typer.Exit(130) from None
    except (OSError, RuntimeError) as error:
        if state["debug"] or not _out_of_space(error):
            raise
        where = f" while writing {error.filename}" if getattr(error, "filename", None) else ""
        err_console.print(
            f"[bold red]error:[/] no space left on the device{where}; free space and rerun the same command (training: with --resume auto)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def call(stage: Callable[..., Result], options: Mapping[str, Any], **given: Any) -> Result:
    """`run(stage, ...)` with `given`, and with those of `options` (a command's `locals()`) that `stage` has
    a parameter of the same name for: a command forwards its options without listing them again."""
    accepted = inspect.signature(stage).parameters
    return run(stage, **{name: value for name, value in options.items() if name in accepted} | given)


def defaults_of(function: Callable) -> dict[str, Any]:
    """`function`'s parameters that have a default, with it: an option takes its default from the stage that
    uses it (`= defaults["name"]`), so that the two never disagree (tests/test_cli.py checks every option)."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not inspect.Parameter.empty}


def _out_of_space(error: BaseException) -> bool:
    """A full disk, as the OS reports it (ENOSPC) or as torch's checkpoint writer does (a failed write)."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return "file write failed" in str(error) or "No space left on device" in str(error)


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    """Numbers right-aligned, words (names, paths, captions) left-aligned."""
    made = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        numeric = index > 0 and all(isinstance(row[index], (int, float)) or str(row[index]).replace(",", "").isdigit() for row in rows)
        made.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        made.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    return made


OutOption = Annotated[Path, typer.Option("--out", help="Directory to write; it appears only when complete.")]
WorkersOption = Annotated[int | None, typer.Option("--workers", help=f"Worker processes (default: all cores). {WORKERS.help}", min=1, max=WORKERS.most)]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")]
ReportToOption = Annotated[
    list[str] | None,
    typer.Option("--report-to", help="Also log to an experiment tracker: tensorboard, wandb, csv or none (repeatable); logs live in OUT."),
]
ShardsOption = Annotated[Path, typer.Option(help="A shards artifact (famevil prepare).")]
ModelOption = Annotated[Path, typer.Option("--model", help="A famevil checkpoint directory (base, teacher or student).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ApproximateOption = Annotated[
    bool,
    typer.Option(
        "--approximate", help="Search FAISS's compact index (index --approximate builds it), not every item (needs faiss-cpu): --backend approximate."
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        metavar="BACKEND",
        help="What ranks: exact (every item), approximate (FAISS), or a Qdrant collection famevil export-index wrote of this index: "
        "qdrant://HOST[:PORT]/COLLECTION, qdrants://... (TLS) or qdrant+local:FOLDER/COLLECTION; a server's API key from QDRANT_API_KEY.",
    ),
]


def chosen_backend(backend: str, approximate: bool) -> str:
    """--approximate, which came first, is --backend approximate; beside another --backend it is one line."""
    if not approximate:
        return backend
    if backend not in (EXACT_BACKEND, APPROXIMATE_BACKEND):
        raise FamevilError(f"--approximate and --backend {backend}: give one of them")
    return APPROXIMATE_BACKEND


IndexArgument = Annotated[Path, typer.Argument(metavar="INDEX", help="An index (famevil index).", show_default=False)]
