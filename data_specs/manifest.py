"""Manifests: the file that makes a directory a famevil artifact, and the checks a stage runs on its inputs.

A manifest says what the directory is (kind, schema version), who made it (famevil version, the exact
command), what it holds (its files, each with its size and sha256) and what it was made from (the ids
of its inputs). Its content id covers the files and the manifest's own fields, so that an edited
manifest is caught as an edited file is. Ids, not paths, tie artifacts together: a copied or moved
artifact keeps its id.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shlex
import sys
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError
from data_specs.integrity import HASH_BLOCK, ListedFile, content_changed
from data_specs.kinds import artifact_kind

MANIFEST_FILE = "manifest.json"
# A stage's wall-clock figures (a training run's time per update): they differ between identical runs,
# so the content id leaves them out, as it leaves out the manifest itself.
TIMINGS_FILE = "timings.jsonl"
UNCOVERED_FILES = (MANIFEST_FILE, TIMINGS_FILE)
# The manifest's own format. 2: the content id covers the fields FIELDS_IN_ID, each with its digest in
# field_digests, so that `famevil verify` can name an edited one; 1 (no manifest_version): the file list
# alone. Both are read, each by its own rule, so that artifacts written before version 2 still verify.
MANIFEST_VERSION = 2
# What identical runs give alike. Left out: the command (it names --out, and --overwrite or --resume),
# the time it was created and the famevil version (the same bytes from another release are the same artifact).
FIELDS_IN_ID = ("kind", "schema_version", "inputs", "details", "files")


@dataclass(frozen=True)
class InputRef:
    """One artifact (or public release) a stage read."""

    role: str  # why the stage read it: "fashiongen", "fashioniq", "shards", ...
    kind: str  # an artifact kind, or a public release format such as "fashiongen-h5"
    id: str  # its content id, or a fingerprint for a public release that has no manifest
    path: str  # where it was read from (famevil export follows it to a model's lineage)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    kind: str
    schema_version: int  # the kind's layout (data_specs.kinds)
    manifest_version: int = 1  # the manifest's own format (MANIFEST_VERSION); absent before version 2
    famevil_version: str
    command: str
    created: str  # UTC, ISO 8601
    content_id: str  # "sha256:..." over field_digests (version 1: over the file list)
    inputs: tuple[InputRef, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific summary: seed, sizes, ...
    # Each file the content id covers: {relative path: {"bytes": size, "sha256": hex}}, so that a reader
    # can check sizes cheaply and each file as it reads it (empty in the oldest manifests).
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    field_digests: dict[str, str] = field(default_factory=dict)  # {field of FIELDS_IN_ID: sha256 of its JSON}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @property
    def rebuild(self) -> str:
        """The fix every mismatch names."""
        return f"rebuild it with: {self.command}"

    def covered_fields(self) -> dict[str, Any]:
        """The fields the content id covers, as they read back from manifest.json."""
        return _as_read_back({name: value for name, value in asdict(self).items() if name in FIELDS_IN_ID})

    def listed_file(self, root: Path, relative: str) -> ListedFile:
        """One of the artifact's files, as a stage that reads it checks it."""
        return ListedFile(root / relative, self.files.get(relative, {}).get("sha256"), self.rebuild)


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
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _covered_files(root: Path) -> dict[str, Path]:
    """Every file under root that the content id covers: all but UNCOVERED_FILES and hidden files (a
    stage's own bookkeeping while it works, such as a staging plan), by relative path."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative not in UNCOVERED_FILES and not any(part.startswith(".") for part in relative.split("/")):
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


def _digests_id(digests: dict[str, str]) -> str:
    """A sha256 over each name and its digest, in name order."""
    overall = hashlib.sha256()
    for name in sorted(digests):
        overall.update(f"{name}\0{digests[name]}\n".encode())
    return "sha256:" + overall.hexdigest()


def listing_id(files: dict[str, dict[str, Any]]) -> str:
    """A sha256 over the relative path and sha256 of every listed file, in path order (version 1's content id)."""
    return _digests_id({relative: listed["sha256"] for relative, listed in files.items()})


def _as_read_back(value: Any) -> Any:
    """A value as json.loads gives it back (tuples as lists, dataclasses as objects): what a reader digests."""
    return json.loads(json.dumps(value, ensure_ascii=False))


def field_digests(fields: dict[str, Any]) -> dict[str, str]:
    """The sha256 of each field's canonical JSON (sorted keys, no spaces), by field name."""
    return {
        name: hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
        for name, value in fields.items()
    }


# What a stage checks in full by default, whatever its size: the weights and small files a stage reads
# at once (the shards' tars are checked by size here, and hashed as they are read; `famevil verify`
# checks everything). Files in subfolders (a run's resumable states) are checked by size.
_CHECKED_IN_FULL = (".safetensors", ".json")


def verify_artifact(root: Path, manifest: Manifest, full: bool = False, hashed_when_read: Collection[str] = ()) -> int:
    """Check the manifest's fields against their digests and the content id against both (version 1:
    against the file list), then that root holds the files its manifest lists, with their sizes; the
    weights and JSON files at the top level (with full, every file) by their sha256, but for
    `hashed_when_read`, which the caller checks as it reads them (famevil.checkpoint's weights). Returns
    the number of files hashed. A mismatch is one line naming the file or field and the command that
    rebuilds the artifact."""
    if not manifest.files and manifest.manifest_version == 1:  # the oldest manifests: only the full content id can be checked
        listing = file_listing(root)
        if listing_id(listing) != manifest.content_id:
            raise FamevilError(f"{root}: its files no longer give the content id in its manifest; {manifest.rebuild}")
        return len(listing)
    _verify_content_id(root, manifest)
    return _verify_files(root, manifest, full, hashed_when_read)


def _verify_content_id(root: Path, manifest: Manifest) -> None:
    where, rebuild = root / MANIFEST_FILE, manifest.rebuild
    if manifest.manifest_version == 1:
        if listing_id(manifest.files) != manifest.content_id:
            raise FamevilError(f"{where}: its content id is not the one of its file list (was it edited?); {rebuild}")
        return
    digests = field_digests(manifest.covered_fields())
    for name in FIELDS_IN_ID:
        if digests[name] != manifest.field_digests.get(name):
            raise FamevilError(f"{where}: its {name!r} field changed since it was written (was it edited?); {rebuild}")
    if _digests_id(manifest.field_digests) != manifest.content_id:
        raise FamevilError(f"{where}: its content id is not the one of its file list and fields (was it edited?); {rebuild}")


def _verify_files(root: Path, manifest: Manifest, full: bool, hashed_when_read: Collection[str]) -> int:
    rebuild = manifest.rebuild
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
        checked_here = "/" not in relative and relative.endswith(_CHECKED_IN_FULL) and relative not in hashed_when_read
        if full or checked_here:
            hashed += 1
            if file_sha256(found[relative]) != listed["sha256"]:
                raise content_changed(root / relative, rebuild)
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
            overall.update(handle.read(HASH_BLOCK))
            if size > 2 * HASH_BLOCK:
                handle.seek(-HASH_BLOCK, os.SEEK_END)
                overall.update(handle.read(HASH_BLOCK))
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
    files = file_listing(root, known_digests)
    schema_version = artifact_kind(kind).schema_version
    digests = field_digests(
        _as_read_back({"kind": kind, "schema_version": schema_version, "inputs": [asdict(ref) for ref in inputs], "details": details or {}, "files": files})
    )
    manifest = Manifest(
        kind=kind,
        schema_version=schema_version,
        manifest_version=MANIFEST_VERSION,
        famevil_version=famevil_version(),
        command=command or current_command(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        content_id=_digests_id(digests),
        inputs=tuple(inputs),
        details=details or {},
        files=files,
        field_digests=digests,
    )
    temporary = root / f".{MANIFEST_FILE}.tmp"
    temporary.write_text(manifest.to_json(), encoding="utf-8")
    temporary.replace(root / MANIFEST_FILE)
    return manifest


def _is_listing(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str) for entry in value.values()
    )


def _is_input_list(value: Any) -> bool:
    names = set(InputRef.__dataclass_fields__)
    return isinstance(value, list) and all(isinstance(ref, dict) and set(ref) == names and all(isinstance(v, str) for v in ref.values()) for ref in value)


# Each field a reader relies on: its check and what it should be, for the one line that refuses it.
_FIELD_SHAPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "kind": (lambda value: isinstance(value, str), "a string"),
    "schema_version": (lambda value: isinstance(value, int), "an integer"),
    "manifest_version": (lambda value: isinstance(value, int) and value >= 1, "an integer from 1"),
    "command": (lambda value: isinstance(value, str), "a string"),
    "content_id": (lambda value: isinstance(value, str), "a string"),
    "inputs": (_is_input_list, "a list of {role, kind, id, path} strings"),
    "details": (lambda value: isinstance(value, dict), "an object"),
    "files": (_is_listing, '{path: {"bytes": size, "sha256": hex}}'),
    "field_digests": (lambda value: isinstance(value, dict) and all(isinstance(v, str) for v in value.values()), "{field: hex}"),
}


def read_manifest(root: Path) -> Manifest:
    """Parse root/manifest.json, or explain in one line why root is not a famevil artifact, naming a
    malformed field."""
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise FamevilError(f"{root}: no such directory")
    if not path.is_file():
        raise FamevilError(f"{root}: not a famevil artifact (no {MANIFEST_FILE}); it may be incomplete or made by something else")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FamevilError(f"{path}: unreadable manifest ({error}); rebuild the artifact") from None
    if not isinstance(raw, dict):
        raise FamevilError(f"{path}: unreadable manifest (a JSON {type(raw).__name__}, not an object); rebuild the artifact")
    for name, (fits, expected) in _FIELD_SHAPES.items():
        if name in raw and not fits(raw[name]):
            raise FamevilError(f"{path}: its {name!r} field is malformed (expected {expected}); rebuild the artifact")
    if raw.get("manifest_version", 1) > MANIFEST_VERSION:
        raise FamevilError(f"{path}: manifest version {raw['manifest_version']} is newer than this famevil reads ({MANIFEST_VERSION}); upgrade famevil")
    try:
        return Manifest(**raw | {"inputs": tuple(InputRef(**ref) for ref in raw.get("inputs", []))})
    except TypeError as error:  # a field missing, or one no famevil writes
        raise FamevilError(f"{path}: unreadable manifest ({error}); rebuild the artifact") from None


def require_artifact(root: Path, kind: str | None = None, verify: bool = True, hashed_when_read: Collection[str] = ()) -> Manifest:
    """The manifest of root if it is an artifact of `kind` (None: of any kind this famevil knows) in a
    schema version this famevil reads, holding the files its manifest lists (verify_artifact's
    default check, but for the files `hashed_when_read`; verify=False leaves that to the caller).

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
        verify_artifact(root, manifest, hashed_when_read=hashed_when_read)
    return manifest
