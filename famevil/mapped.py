"""Large files read memory-mapped: a safetensors file's tensors and a JSON Lines file's lines, touched
only where used, so that an index of a million items opens in a second and costs memory for what is read."""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_specs.errors import FamevilError

_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I16": np.int16, "U8": np.uint8, "I8": np.int8}


def mapped_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The file's tensors as views of its memory-mapped bytes (copy on write: nothing reaches the file), and its metadata."""
    whole = np.memmap(path, dtype=np.uint8, mode="c")
    header_size = int.from_bytes(whole[:8].tobytes(), "little")  # the format: an 8-byte length, then the JSON header
    try:
        header = json.loads(whole[8 : 8 + header_size].tobytes())
    except ValueError:
        raise FamevilError(f"{path}: not a readable safetensors file (its header is not JSON); rebuild it") from None
    start = 8 + header_size
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        values = whole[start + begin : start + end].view(dtype).reshape(entry["shape"])
        tensors[name] = torch.from_numpy(values)
    return tensors, header.get("__metadata__") or {}


class JsonLines(Sequence[dict[str, Any]]):
    """A JSON Lines file as a sequence of its parsed lines, each parsed when asked for: the file is
    memory-mapped, and only the lines' offsets (8 bytes a line) are kept."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as file:
            self._bytes = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
        ends = np.flatnonzero(np.frombuffer(self._bytes, dtype=np.uint8) == ord("\n")) + 1 if len(self._bytes) else np.zeros(0, np.int64)
        if len(self._bytes) and (not len(ends) or ends[-1] != len(self._bytes)):
            ends = np.append(ends, len(self._bytes))  # a last line without its newline
        self._starts = np.concatenate([[0], ends]).astype(np.int64)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, number: int) -> dict[str, Any]:  # type: ignore[override]
        if not -len(self) <= number < len(self):
            raise IndexError(number)
        number %= len(self)
        try:
            return json.loads(self._bytes[self._starts[number] : self._starts[number + 1]])
        except ValueError:
            raise FamevilError(f"{self.path}: line {number + 1} is not JSON; rebuild it") from None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[number] for number in range(len(self)))
