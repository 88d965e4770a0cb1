"""Files checked against their manifest as a stage reads them: the bytes a stage reads anyway are hashed on
the way, so that a file changed since its manifest was written (a flipped byte, two shards of one size
swapped) stops the stage, and no file is read a second time to check it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from data_specs.errors import FamevilError

HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class ListedFile:
    """One file of an artifact, with what its manifest says of it."""

    path: Path
    sha256: str | None  # None: an older manifest without a file list (its content id was checked in full when opened)
    rebuild: str  # the fix a mismatch names: "rebuild it with: famevil ..."


def content_changed(path: Path, rebuild: str) -> FamevilError:
    return FamevilError(f"{path}: its content changed since its manifest was written; {rebuild}")


def read_listed(listed: ListedFile) -> bytes:
    """The whole file, once, checked against its listed sha256."""
    data = listed.path.read_bytes()
    if listed.sha256 is not None and hashlib.sha256(data).hexdigest() != listed.sha256:
        raise content_changed(listed.path, listed.rebuild)
    return data


class HashingReader:
    """A file read as a stream (tarfile's streaming mode reads shards so), hashed as it is read.

    `finish()` reads what the reader left (a tar's end-of-archive padding) and checks the whole file's
    sha256; a stream abandoned before its end (a training epoch that stops inside a shard) is not checked,
    since part of a file cannot be checked against the digest of the whole.
    """

    def __init__(self, listed: ListedFile):
        self.listed = listed
        self._file = open(listed.path, "rb")  # noqa: SIM115 - closed by close() or the with block
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._digest.update(data)
        return data

    def finish(self) -> None:
        while self.read(HASH_BLOCK):
            pass
        if self.listed.sha256 is not None and self._digest.hexdigest() != self.listed.sha256:
            raise content_changed(self.listed.path, self.listed.rebuild)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> HashingReader:
        return self

    def __exit__(self, *_) -> None:
        self.close()
