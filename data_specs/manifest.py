"""Manifests: the file that makes a directory a famevil artifact, and the checks a stage runs on its inputs.

A manifest says what the directory is (kind, schema version), who made it (famevil version, the exact
command), what it holds (a content id over its files) and what it was made from (the ids of its
inputs). Ids, not paths, tie artifacts together: a copied or moved artifact keeps its id.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError
from data_specs.kinds import artifact_kind

MANIFEST_FILE = "manifest.json"
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class InputRef:
    """One artifact (or public release) a stage read."""

    role: str  # why the stage read it: "fashiongen", "fashioniq", "shards", ...
    kind: str  # an artifact kind, or a public release format such as "fashiongen-h5"
    id: str  # its content id, or a fingerprint for a public release that has no manifest
    path: str  # where it was read from, for people; ids are what tie artifacts together


@dataclass(frozen=True)
class Manifest:
    kind: str
    schema_version: int
    famevil_version: str
    command: str
    created: str  # UTC, ISO 8601
    content_id: str  # "sha256:..." over every file of the artifact but the manifest
    inputs: tuple[InputRef, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific summary: seed, sizes, ...
    # Each file the content id covers: {relative path: {"bytes": size, "sha256": hex}}, so that a reader
    # can check sizes cheaply and the content id against the list (empty in older manifests).
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def famevil_version() -> str:
    try:
        return importlib.metadata.version("famevil")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def current_command() -> str:
    """The command line that is running, as a user could paste it again."""
    return shlex.join(["famevil", *sys.argv[1:]])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _covered_files(root: Path) -> dict[str, Path]:
    """Every file under root that the content id covers: all but the manifest and hidden files (a
    stage's own bookkeeping while it works, such as a staging plan), by relative path."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative != MANIFEST_FILE and not any(part.startswith(".") for part in relative.split("/")):
            files[relative] = path
    return files


def file_listing(root: Path, known_digests: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """{relative path: {"bytes", "sha256"}} of the files the content id covers.

    known_digests (relative path -> hex sha256) spares re-reading files whose digest a stage
    already computed while writing them: at FashionGen scale the shards are tens of GB.
    """
    known_digests = known_digests or {}
    return {
        relative: {"bytes": path.stat().st_size, "sha256": known_digests.get(relative) or file_sha256(path)} for relative, path in _covered_files(root).items()
    }


def listing_id(files: dict[str, dict[str, Any]]) -> str:
    """A sha256 over the relative path and sha256 of every listed file, in path order."""
    overall = hashlib.sha256()
    for relative in sorted(files):
        overall.update(f"{relative}\0{files[relative]['sha256']}\n".encode())
    return "sha256:" + overall.hexdigest()


def content_id(root: Path, known_digests: dict[str, str] | None = None) -> str:
    """A sha256 over the relative path and sha256 of every file under root except the manifest and
    hidden files."""
    return listing_id(file_listing(root, known_digests))


# What a stage checks in full by default, whatever its size: the weights and small files a stage reads
# at once (the shards' tars are checked by size, and by sample as they are read; `famevil verify`
# checks everything). Files in subfolders (a run's resumable states) are checked by size.
_CHECKED_IN_FULL = (".safetensors", ".json")


def verify_artifact(root: Path, manifest: Manifest, full: bool = False) -> int:
    """Check that root holds the files its manifest lists, with their sizes, and that the content id
    is the one of the list; the weights and JSON files at the top level (with full, every file) by
    their sha256. Returns the number of files hashed. A mismatch is one line naming the file and the
    command that rebuilds the artifact."""
    rebuild = f"rebuild it with: {manifest.command}"
    if not manifest.files:  # an older manifest: only the full content id can be checked
        listing = file_listing(root)
        if listing_id(listing) != manifest.content_id:
            raise FamevilError(f"{root}: its files no longer give the content id in its manifest; {rebuild}")
        return len(listing)
    if listing_id(manifest.files) != manifest.content_id:
        raise FamevilError(f"{root / MANIFEST_FILE}: its content id is not the one of its file list (was it edited?); {rebuild}")
    found = _covered_files(root)
    for relative in sorted(set(found) - set(manifest.files)):
        raise FamevilError(f"{root / relative}: a file its manifest does not list; remove it, or {rebuild}")
    hashed = 0
    for relative, listed in sorted(manifest.files.items()):
        if relative not in found:
            raise FamevilError(f"{root / relative}: missing; {rebuild}")
        size = found[relative].stat().st_size
        if size != listed["bytes"]:
            raise FamevilError(f"{root / relative}: {size:,} bytes where its manifest lists {listed['bytes']:,}; {rebuild}")
        if full or ("/" not in relative and relative.endswith(_CHECKED_IN_FULL)):
            hashed += 1
            if file_sha256(found[relative]) != listed["sha256"]:
                raise FamevilError(f"{root / relative}: its content changed since its manifest was written; {rebuild}")
    return hashed


def release_fingerprint(files: list[Path], listed: list[Path] = ()) -> str:
    """An id for public release files that carry no manifest: names, sizes and the first and last MiB
    of `files`, and the names, sizes and modification times of `listed` (a folder of many small files,
    such as FashionIQ's 77k images, whose contents would take as long to read as to prepare).

    Hashing a whole 40 GB FashionGen h5 just to name it would double the cost of `prepare`;
    this catches a different or truncated file, which is what an id of the input is for.
    """
    overall = hashlib.sha256()
    for path in sorted(listed):
        status = path.stat()
        overall.update(f"{path.name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    for path in sorted(files):
        size = path.stat().st_size
        overall.update(f"{path.name}\0{size}\n".encode())
        with open(path, "rb") as handle:
            overall.update(handle.read(_HASH_BLOCK))
            if size > 2 * _HASH_BLOCK:
                handle.seek(-_HASH_BLOCK, os.SEEK_END)
                overall.update(handle.read(_HASH_BLOCK))
    return "fingerprint:" + overall.hexdigest()


def write_manifest(
    root: Path,
    kind: str,
    *,
    inputs: list[InputRef] | tuple[InputRef, ...] = (),
    details: dict[str, Any] | None = None,
    known_digests: dict[str, str] | None = None,
    command: str | None = None,
) -> Manifest:
    """Write root/manifest.json last, once every other file of the artifact is in place."""
    manifest = Manifest(
        kind=kind,
        schema_version=artifact_kind(kind).schema_version,
        famevil_version=famevil_version(),
        command=command or current_command(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        content_id=listing_id(files := file_listing(root, known_digests)),
        inputs=tuple(inputs),
        details=details or {},
        files=files,
    )
    temporary = root / f".{MANIFEST_FILE}.tmp"
    temporary.write_text(manifest.to_json(), encoding="utf-8")
    temporary.replace(root / MANIFEST_FILE)
    return manifest


def read_manifest(root: Path) -> Manifest:
    """Parse root/manifest.json, or explain why root is not a famevil artifact."""
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise FamevilError(f"{root}: no such directory")
    if not path.is_file():
        raise FamevilError(f"{root}: not a famevil artifact (no {MANIFEST_FILE}); it may be incomplete or made by something else")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        inputs = tuple(InputRef(**item) for item in raw.pop("inputs", []))
        return Manifest(**raw, inputs=inputs)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as error:
        raise FamevilError(f"{path}: unreadable manifest ({error}); rebuild the artifact") from None


def require_artifact(root: Path, kind: str | None = None, verify: bool = True) -> Manifest:
    """The manifest of root if it is an artifact of `kind` (None: of any kind this famevil knows) in a
    schema version this famevil reads, holding the files its manifest lists (verify_artifact's
    default check; verify=False leaves that to the caller).

    Refuses anything else before a stage does any work, and says which command rebuilds it.
    """
    try:
        manifest = read_manifest(root)
    except FamevilError as error:
        if kind is None:
            raise
        raise FamevilError(f"{error}; expected a {kind!r} artifact, rebuild it with: {artifact_kind(kind).made_by}") from None
    expected = artifact_kind(kind or manifest.kind)
    rebuild = f"rebuild it with: {expected.made_by}"
    if manifest.kind != expected.name:
        raise FamevilError(f"{root}: is a {manifest.kind!r} artifact, expected {kind!r} ({expected.description}); {rebuild}")
    if manifest.schema_version not in expected.readable_versions:
        readable = ", ".join(map(str, expected.readable_versions))
        raise FamevilError(f"{root}: {expected.name!r} schema version {manifest.schema_version} is not one this famevil reads ({readable}); {rebuild}")
    if verify:
        verify_artifact(root, manifest)
    return manifest
