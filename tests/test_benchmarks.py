"""The benchmarks whose figures docs/benchmarks.md quotes, run as documented (a script from the checkout's
root) at a tiny size: they import, run to their end and print their tables. Their figures are not checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(script: str, *arguments: object) -> str:
    done = subprocess.run([sys.executable, f"benchmarks/{script}", *map(str, arguments)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_search_speed_sweeps_a_compact_index(tiny_student, tiny_raw):
    images = tiny_raw / "fashioniq" / "images"
    printed = _run(
        "search_speed.py",
        "--model",
        tiny_student,
        "--images",
        images,
        "--count",
        4,
        "--size",
        3000,
        "--repeats",
        3,
        "--specs",
        "IVF20,SQ8",
        "--probes",
        4,
        20,
        "--rerank",
        2,
    )
    rows = re.findall(r"^IVF20,SQ8 (\d+)/2 .* (\d\.\d{3})$", printed, flags=re.MULTILINE)
    assert [probes for probes, _ in rows] == ["4", "20"], printed
    assert float(rows[1][1]) == 1.0  # every cell searched: what exact search finds
    assert "in a fresh process, its vectors file not cached" in printed


def test_qdrant_speed_compares_the_collection_with_exact_search():
    printed = _run("qdrant_speed.py", "--size", 300, "--dim", 32, "--queries", 5)
    assert re.search(r"^export: 300 points in", printed, flags=re.MULTILINE), printed
    assert re.search(r"^\s+qdrant\s+category\s+[\d.]+\s+[\d.]+\s+\d/5$", printed, flags=re.MULTILINE), printed


def test_prepare_throughput_measures_the_release_it_is_given(tiny_raw):
    printed = _run("prepare_throughput.py", "--raw", tiny_raw, "--workers", 1, "--shard-size", 50, "--rounds", 2)
    assert re.search(r"^prepare / encode:\s+[\d.]+ %  \(median of 2 rounds", printed, flags=re.MULTILINE), printed
    assert re.search(r"^peak memory\s+:\s+\d+ MiB PSS", printed, flags=re.MULTILINE), printed
