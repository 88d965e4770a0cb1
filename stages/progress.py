"""Progress bars for long stage work, on stderr so that stdout stays clean for results.

Rich shows one live display at a time, so a bar opened while another is showing (validation inside
training) joins the open display as a second line and leaves it when done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)
_open: list[Progress] = []


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} {self.unit}/s" if task.speed else "", style="cyan")


class _FieldsColumn(ProgressColumn):
    """Whatever the stage last reported (loss, lr, ...), as `name value` pairs."""

    def render(self, task: Task) -> Text:
        return Text("  ".join(f"{name} {value}" for name, value in task.fields.get("report", {}).items()), style="magenta")


@contextmanager
def progress_bar(description: str, total: int, unit: str = "images", enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A bar for one piece of work; yields `advance(n, **report)`, which moves it on by n and shows
    the reported values beside it. With enabled=False (ranks other than the main one) it shows nothing."""
    if not enabled:
        yield lambda n, **report: None
        return
    if _open:
        progress = _open[-1]
        task = progress.add_task(description, total=total)
        try:
            yield lambda n, **report: progress.update(task, advance=n, report=report)
        finally:
            progress.remove_task(task)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        _FieldsColumn(),
    )
    with Progress(*columns, console=console) as progress:
        _open.append(progress)
        task = progress.add_task(description, total=total)
        try:
            yield lambda n, **report: progress.update(task, advance=n, report=report)
        finally:
            _open.pop()
