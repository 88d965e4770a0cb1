"""Write an artifact beside its destination and move it into place only when it is complete.

A crash, a Ctrl-C or a bad input therefore never leaves a directory that looks finished: the work
in progress lives in a hidden `.NAME.partial` sibling, which a resumable stage picks up again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError

PLAN_FILE = ".plan.json"


def partial_path(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}.partial")


def check_destination(destination: Path, overwrite: bool) -> None:
    """Refuse to clobber an existing directory unless asked, before any work is done."""
    if destination.exists() and not overwrite:
        raise FamevilError(f"{destination}: already exists; pass --overwrite to replace it or choose another --out")
    parent = destination.parent
    if parent.exists() and not parent.is_dir():
        raise FamevilError(f"{parent}: is not a directory; choose another --out")


def open_partial(destination: Path, plan: dict[str, Any]) -> tuple[Path, bool]:
    """The staging directory for destination and whether it resumes earlier work.

    Earlier work is resumed only if it was started with the same plan (inputs and options);
    otherwise it is discarded, since its pieces would not fit together.
    """
    partial = partial_path(destination)
    plan_file = partial / PLAN_FILE
    if partial.exists():
        try:
            same_plan = json.loads(plan_file.read_text(encoding="utf-8")) == plan
        except (OSError, json.JSONDecodeError):
            same_plan = False
        if same_plan:
            return partial, True
        shutil.rmtree(partial)
    try:
        partial.mkdir(parents=True)
    except OSError as error:
        raise FamevilError(f"{partial}: cannot create ({error.strerror}); choose a writable --out") from None
    plan_file.write_text(json.dumps(plan, indent=2, sort_keys=True), encoding="utf-8")
    return partial, False


def publish(partial: Path, destination: Path) -> None:
    """Move the finished staging directory into place, replacing an older destination."""
    (partial / PLAN_FILE).unlink(missing_ok=True)
    if destination.exists():
        retired = destination.with_name(f".{destination.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        destination.rename(retired)
        partial.rename(destination)
        shutil.rmtree(retired)
    else:
        partial.rename(destination)
