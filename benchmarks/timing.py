"""Timing shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(reference: Callable[[], object], step: Callable[[], object], steps: int) -> tuple[float, float, float]:
    """Median seconds of `reference` and of `step`, and the median ratio step/reference, timed in
    alternation after one warm-up each, so that a busy or throttled machine slows both alike."""
    reference(), step()
    pairs = []
    for _ in range(steps):
        began = time.perf_counter()
        reference()
        middle = time.perf_counter()
        step()
        pairs.append((middle - began, time.perf_counter() - middle))
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs), statistics.median(b / a for a, b in pairs)
