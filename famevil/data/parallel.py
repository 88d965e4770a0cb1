"""Fan work out to worker processes, or run it inline when one worker is asked for."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


def _ignore_interrupts() -> None:
    """Ctrl-C is the main process's to handle (it stops the pool); workers would only print tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_map(function: Callable[[Task], Result], tasks: Iterable[Task], workers: int, ordered: bool = True) -> Iterator[Result]:
    """Results of function over tasks, computed in `workers` forked processes.

    Fork, not spawn: workers start in milliseconds and inherit the imported modules; callers must
    not hold open h5 handles when they call this (each task opens its own).
    """
    if workers <= 1:
        yield from map(function, tasks)
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_ignore_interrupts) as pool:
        yield from (pool.imap if ordered else pool.imap_unordered)(function, tasks)
