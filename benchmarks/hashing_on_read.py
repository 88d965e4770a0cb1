"""Benchmark: what hashing every file as it is read costs `famevil teach` and `famevil distill`.

    python benchmarks/hashing_on_read.py --shards runs/demo/shards --base runs/demo/base \\
        --teacher-outputs runs/demo/seed-0/outputs-{xmr,tgir,scr,fic} --steps 200 --out runs/bench-hash

Runs a teacher (--task, demo-cpu) and a student (distill, demo-cpu, annealed as the demo's) for --steps
updates each, four times in the order on, off, off, on: with the check as famevil runs it
(data_specs.integrity: shards hashed as they stream, teacher outputs and weights as they are loaded),
and with the same reads unhashed (the digests patched out), so that a machine that gets busier or
quieter during the runs slows both alike. It prints each run's wall time, its training time (the sum
of its updates' times, timings.jsonl) and the bytes hashed with the seconds spent in SHA-256, timed
around every update of the digest: the direct figure, which other processes on the machine blur less
than the difference of two wall times.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import data_specs.integrity as integrity
import famevil.tensors
from stages.distill import distill
from stages.teach import teach


class TimedSha256:
    """hashlib.sha256, counting the bytes it digests and the seconds it takes."""

    bytes, seconds = 0, 0.0

    def __init__(self, data: bytes = b""):
        self._digest = hashlib.sha256()
        self.update(data)

    def update(self, data: bytes) -> None:
        began = time.perf_counter()
        self._digest.update(data)
        TimedSha256.seconds += time.perf_counter() - began
        TimedSha256.bytes += len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@contextmanager
def hashing(enabled: bool):
    """The check as famevil runs it, timed; or the same reads with no digest taken or compared."""
    TimedSha256.bytes, TimedSha256.seconds = 0, 0.0
    with ExitStack() as patches:
        if enabled:
            patches.enter_context(mock.patch.object(integrity, "hashlib", mock.Mock(sha256=TimedSha256)))
        else:
            patches.enter_context(mock.patch.object(integrity.HashingReader, "read", lambda self, size=-1: self._file.read(size)))
            patches.enter_context(mock.patch.object(integrity.HashingReader, "finish", lambda self: None))
            patches.enter_context(mock.patch.object(famevil.tensors, "read_listed", lambda listed: listed.path.read_bytes()))
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--base", default=None)
    parser.add_argument("--teacher-outputs", type=Path, nargs=4, required=True, metavar="OUTPUTS")
    parser.add_argument("--task", default="xmr")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    options = {"max_steps": args.steps, "eval_every": 0, "checkpoint_every": args.steps}
    stages = {
        f"teach {args.task}": lambda out: teach(args.task, args.shards, out, base=args.base, overrides=options, overwrite=True),
        "distill": lambda out: distill(
            args.shards, out, teacher_outputs=args.teacher_outputs, base=args.base, overrides=options, kd_schedule="anneal", overwrite=True
        ),
    }
    rows = []
    for name, run in stages.items():
        for enabled in (True, False, False, True):
            with hashing(enabled):
                began = time.perf_counter()
                result = run(args.out / f"{name.replace(' ', '-')}-{'hashed' if enabled else 'unhashed'}")
                rows.append((name, enabled, time.perf_counter() - began, result.seconds, TimedSha256.bytes, TimedSha256.seconds))
    print(f"{'stage':<12} {'check':<6} {'wall s':>7} {'train s':>8} {'MB hashed':>10} {'s hashing':>10}")
    for name, enabled, wall, train, hashed, seconds in rows:
        print(f"{name:<12} {'on' if enabled else 'off':<6} {wall:7.1f} {train:8.1f} {hashed / 1e6:10.1f} {seconds:10.3f}")


if __name__ == "__main__":
    main()
