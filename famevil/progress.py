"""Progress bars for long stage work, on stderr so that stdout stays clean for results.

Rich shows one live display at a time, so a bar opened while another is showing (validation inside
training) joins the open display as a second line and leaves it when done. Without a terminal (a batch
job's log) a bar is plain lines instead: one at every tenth of the work and at least once a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)
_open: list[Progress] = []


def rate_text(per_second: float, unit: str) -> str:
    """A rate as people read it: "12 updates/s", below ten a second "1.4 updates/s" (not "1 updates/s"),
    and below one a second "3.4 s/update" (slow training would otherwise show "0 updates/s")."""
    if per_second <= 0:
        return ""
    if per_second >= 10:
        return f"{per_second:,.0f} {unit}/s"
    if per_second >= 1:
        return f"{per_second:.1f} {unit}/s"
    return f"{1 / per_second:,.1f} s/{unit.removesuffix('s')}"


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(rate_text(task.speed, self.unit) if task.speed else "", style="cyan")


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
    if not console.is_terminal:  # a batch job's log: plain lines, not a live bar redrawn in place
        yield _plain_progress(description, total, unit)
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


PLAIN_SECONDS = 60  # without a terminal, a line at least this often, and at every tenth of the work


def _plain_progress(description: str, total: int, unit: str) -> Callable[..., None]:
    began = last = time.monotonic()
    done, tenths = 0, 0

    def advance(n: int, **report: object) -> None:
        nonlocal done, last, tenths
        done += n
        now = time.monotonic()
        reached = 10 * done // max(total, 1)
        if reached > tenths or now - last >= PLAIN_SECONDS:
            tenths, last = reached, now
            fields = "".join(f"  {name} {value}" for name, value in report.items())
            rate = done / max(now - began, 1e-9)
            console.print(
                f"{description}: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%), {rate_text(rate, unit)}{fields}", highlight=False, soft_wrap=True
            )

    return advance
