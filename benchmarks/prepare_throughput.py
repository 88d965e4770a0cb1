"""Benchmark: `famevil prepare` throughput against the JPEG encode-only rate of the same images, and peak memory.

    python benchmarks/prepare_throughput.py --raw runs/bench/raw [--workers 2] [--rounds 5]

Makes RAW with `famevil synth --preset bench` first if it does not exist. Prints, for the FashionGen
train h5 and the same worker count: the encode-only rate (images/s of JPEG encoding alone, images
already in memory), the read + encode rate (wall clock of h5 reads and encoding, nothing written),
prepare's end-to-end rate (reads, text, encoding, tar writing, hashing, manifests), the ratios,
and the peak memory (PSS) of prepare's whole process tree. Encode-only passes and prepares alternate,
each prepare compared with the passes on either side; the figures are the round with the median
ratio. Memory is sampled in one more prepare, untimed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil

from famevil.data.fashiongen import FashionGenFile
from famevil.data.images import encode_jpeg
from famevil.data.parallel import worker_map
from famevil.data.shard_writer import READ_BLOCK
from stages.prepare import prepare


def _encode_seconds(task: tuple[Path, int, int]) -> float:
    """Read rows [start, stop) and JPEG-encode their images, nothing else; returns the seconds spent
    in encoding alone (reads are not counted)."""
    path, start, stop = task
    spent = 0.0
    with FashionGenFile(path) as release:
        for row in release.rows(range(start, stop), image_block=READ_BLOCK):
            began = time.perf_counter()
            encode_jpeg(row.image)
            spent += time.perf_counter() - began
    return spent


class PeakMemory:
    """Samples the memory of this process and its children every 20 ms. Children are counted by PSS:
    forked workers share the parent's pages, which RSS would count once per process."""

    def __init__(self) -> None:
        self.peak_total = self.peak_main = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            main = me.memory_full_info().pss
            children = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):  # a child may exit between listing and reading
                    children += child.memory_full_info().pss
            self.peak_main, self.peak_total = max(self.peak_main, main), max(self.peak_total, main + children)
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def _encode_pass(h5: Path, rows: int, workers: int, shard_size: int) -> tuple[float, float]:
    """The encode-only rate (encoding seconds summed over workers) and the read + encode rate (wall clock)."""
    tasks = [(h5, start, min(start + shard_size, rows)) for start in range(0, rows, shard_size)]
    began = time.perf_counter()
    encode_seconds = sum(worker_map(_encode_seconds, tasks, workers, ordered=False))
    return rows / (encode_seconds / workers), rows / (time.perf_counter() - began)


def _prepare_seconds(raw: Path, workers: int, shard_size: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        prepare(Path(scratch) / "shards", fashiongen=raw / "fashiongen", shard_size=shard_size, workers=workers)
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, default=Path("runs/bench/raw"))
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="prepares, each between two encode-only passes; the median round is reported")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give at least 1")
    if not args.raw.exists():
        synth = importlib.import_module("stages.synth").synth  # here only: it imports torch, whose 1 GB would count in the peak memory below
        synth(args.raw, preset="bench", seed=0, workers=args.workers)
    h5 = args.raw / "fashiongen" / "fashiongen_256_256_train.h5"
    with FashionGenFile(h5) as release:
        rows, shape = len(release), release.image_shape
    with FashionGenFile(args.raw / "fashiongen" / "fashiongen_256_256_validation.h5") as validation:
        prepared = rows + len(validation)
    print(f"{h5}: {rows} images of {shape}, {h5.stat().st_size / 2**30:.2f} GiB; {args.workers} workers; {args.rounds} rounds")

    # A shared machine's speed drifts by tens of percent between seconds: each prepare is compared with
    # the mean of the encode-only passes just before and just after it (a drift during the round cancels
    # to first order), and the ratio reported is the median round's, not one pass's.
    passes = [_encode_pass(h5, rows, args.workers, args.shard_size)]
    rounds = []
    for number in range(1, args.rounds + 1):
        seconds = _prepare_seconds(args.raw, args.workers, args.shard_size)
        passes.append(_encode_pass(h5, rows, args.workers, args.shard_size))
        encode, read_and_encode = (sum(rates) / 2 for rates in zip(*passes[-2:], strict=True))
        rounds.append(
            {"encode": encode, "read_and_encode": read_and_encode, "prepare": prepared / seconds, "seconds": seconds, "ratio": prepared / seconds / encode}
        )
        print(
            f"round {number}: encode only {encode:6.0f} (before and after), prepare {prepared / seconds:6.0f} images/s in {seconds:.1f} s: {100 * rounds[-1]['ratio']:5.1f} %"
        )
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    ratios = [100 * r["ratio"] for r in rounds]
    print(f"encode only     : {median['encode']:8.0f} images/s  (JPEG encoding alone, summed over workers; the median round)")
    print(f"read + encode   : {median['read_and_encode']:8.0f} images/s  (h5 reads and JPEG encoding, wall clock)")
    print(f"prepare         : {median['prepare']:8.0f} images/s  ({prepared} images, train + validation, in {median['seconds']:.1f} s)")
    print(f"prepare / encode: {100 * median['ratio']:8.1f} %  (median of {len(rounds)} rounds, range {min(ratios):.1f}-{max(ratios):.1f}; target >= 70 %)")
    print(f"prepare / read + encode: {100 * median['prepare'] / median['read_and_encode']:.1f} %")
    with PeakMemory() as memory:  # a pass of its own: reading every process's PSS costs a millisecond a process, CPU the timed rounds would lose
        _prepare_seconds(args.raw, args.workers, args.shard_size)
    print(f"peak memory     : {memory.peak_total / 2**20:8.0f} MiB PSS, all processes  ({memory.peak_main / 2**20:.0f} MiB main; target < 1 GiB)")


if __name__ == "__main__":
    main()
