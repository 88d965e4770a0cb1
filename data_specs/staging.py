"""Write an artifact beside its destination and move it into place only when it is complete.

A crash, a Ctrl-C or a bad input therefore never leaves a directory that looks finished: the work
in progress lives in a hidden `.NAME.partial` sibling, which a resumable stage picks up again, and
a `.NAME.lock` sibling keeps two runs from writing the same destination at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError

PLAN_FILE = ".plan.json"


def size_and_mtime(file: Path) -> tuple[int, int]:
    """What a resumable stage's plan records of each input file, so that a changed, added or removed file
    makes the finished chunks stale; (-1, -1) for a missing one (skipped when read, and a change once it appears)."""
    try:
        found = file.stat()
    except OSError:
        return (-1, -1)
    return (found.st_size, found.st_mtime_ns)


def partial_path(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}.partial")


def read_plan(destination: Path) -> dict[str, Any] | None:
    """The plan an interrupted run of this destination was started with, if any."""
    try:
        return json.loads((partial_path(destination) / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def check_destination(destination: Path, overwrite: bool, inputs: Iterable[Path | str | None] = ()) -> None:
    """Refuse to clobber an existing directory unless asked, and to write where a stage's own input
    lies (the destination is replaced when the stage publishes), before any work is done."""
    for given in _existing(inputs):
        relation = _overlap(destination, given)
        if relation:
            raise FamevilError(f"--out {destination}: {relation} the input {given}, which the stage would destroy; choose another --out")
    if _locked(destination):
        raise FamevilError(f"{destination}: another famevil process is writing it now (its lock is held); wait for it to finish or choose another --out")
    if destination.exists() and not overwrite:
        raise FamevilError(f"{destination}: already exists; pass --overwrite to replace it or choose another --out")
    for parent in destination.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FamevilError(f"{parent}: is not a directory; choose another --out")
            break


def _existing(inputs: Iterable[Path | str | None]) -> list[Path]:
    """The inputs that are paths on disk: an open_clip NAME:TAG, say, is none."""
    return [Path(given) for given in inputs if given is not None and Path(given).exists()]


def _overlap(output: Path, other: Path) -> str | None:
    """How an output's path and another path overlap once links are resolved: the output "is" it,
    "contains" it or "lies inside" it; None when apart."""
    target, source = output.resolve(), other.resolve()
    return "is" if source == target else "contains" if target in source.parents else "lies inside" if source in target.parents else None


@dataclass(frozen=True)
class Staging:
    partial: Path  # where the stage writes
    destination: Path
    resumed: bool  # partial holds earlier work of the same plan

    def publish(self) -> None:
        """Move the finished staging directory into place, replacing an older destination."""
        (self.partial / PLAN_FILE).unlink(missing_ok=True)
        if self.destination.exists():
            retired = self.destination.with_name(f".{self.destination.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            self.destination.rename(retired)
            self.partial.rename(self.destination)
            shutil.rmtree(retired)
        else:
            self.partial.rename(self.destination)


def _lock_path(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}.lock")


def _locked(destination: Path) -> bool:
    """Whether a running stage holds the destination's lock (a lock file alone, left by a killed
    stage, is not held)."""
    try:
        with open(_lock_path(destination)) as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no lock file, or none readable: nobody holds it
        return False
    return False


@contextmanager
def staging(destination: Path, plan: dict[str, Any], resume: bool = True) -> Iterator[Staging]:
    """Hold the destination's lock and yield its staging directory.

    Earlier work is resumed only if asked and started with the same plan (inputs and options);
    otherwise it is discarded, since its pieces would not fit together.
    """
    partial = partial_path(destination)
    lock_path = _lock_path(destination)
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "w")  # noqa: SIM115 - held for the whole stage, closed below
    except OSError as error:
        raise FamevilError(f"{destination.parent}: cannot write there ({error.strerror}); choose another --out") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FamevilError(f"{destination}: another famevil process is writing it; wait for it or choose another --out") from None
        try:
            yield Staging(partial, destination, _open_partial(destination, plan, resume))
        finally:
            lock_path.unlink(missing_ok=True)


def _open_partial(destination: Path, plan: dict[str, Any], resume: bool) -> bool:
    partial = partial_path(destination)
    if partial.exists():
        if resume and read_plan(destination) == plan:
            return True
        shutil.rmtree(partial)
    partial.mkdir()
    (partial / PLAN_FILE).write_text(json.dumps(plan, indent=2, sort_keys=True), encoding="utf-8")
    return False


def check_file_destination(out: Path, flag: str, inputs: Iterable[Path | str | None] = (), outputs: Iterable[Path] = (), make_folder: bool = False) -> None:
    """Refuse a single-file output (a page, a picture) before any work, as check_destination refuses
    an --out: when it is one of the stage's inputs (it would overwrite it) or lies inside one (it would
    change an artifact under its manifest), when it lies inside a directory the stage writes, or when
    it cannot be written. make_folder: create its missing folder instead of refusing it."""
    for given in _existing(inputs):
        if relation := _overlap(out, given):
            raise FamevilError(
                f"{flag} {out}: {relation} the input {given}, which it would {'overwrite' if relation == 'is' else 'change'}; choose another path"
            )
    for directory in outputs:
        if relation := _overlap(out, directory):
            raise FamevilError(f"{flag} {out}: {relation} --out {directory}, which its manifest describes whole; choose a path outside it")
    if out.is_dir():
        raise FamevilError(f"{flag} {out}: is a directory; give a file name, such as {out / 'page.html'}")
    if make_folder:
        _make_folder(out, flag)
    if not out.parent.is_dir():
        raise FamevilError(f"{flag} {out}: the folder {out.parent} does not exist; create it or choose another path")
    if not os.access(out.parent, os.W_OK):
        raise FamevilError(f"{flag} {out}: the folder {out.parent} is not writable; choose another path")


def _make_folder(out: Path, flag: str) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FamevilError(f"{flag} {out}: cannot make the folder {out.parent} ({error.strerror}); choose another path") from None


def write_file(out: Path, content: str | bytes, flag: str) -> None:
    """Write a single-file output beside `out` and rename it into place: a reader never sees half a file,
    and two runs writing the same file never write into one temporary (each has its own, by process).
    A write that fails (a folder made read-only since the check, a full disk) is one line naming `flag`:
    the work before it is lost either way, and a traceback would hide the reason."""
    temporary = out.with_name(f".{out.name}.{os.getpid()}.partial")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        temporary.write_bytes(data)
        temporary.replace(out)
    except OSError as error:
        raise FamevilError(f"{flag} {out}: cannot write it ({error.strerror or error}); choose another path") from None
    finally:
        temporary.unlink(missing_ok=True)
