"""Tensors in safetensors files, read once: hashed against the artifact's manifest as they are read
(data_specs.integrity), parsed with one-line errors, and checked for values no model should hold."""

from __future__ import annotations

import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load

from data_specs.errors import FamevilError
from data_specs.integrity import ListedFile, read_listed


def load_safetensors(listed: ListedFile) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata from one read, checked against its listed sha256; a file
    that matches its manifest but is no safetensors file is one line too."""
    data = read_listed(listed)
    try:
        tensors = load(data)
    except SafetensorError as error:
        raise FamevilError(f"{listed.path}: not a readable safetensors file ({error}); {listed.rebuild}") from None
    header_size = int.from_bytes(data[:8], "little")  # the format: an 8-byte length, then the JSON header
    return tensors, json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors that hold a NaN or an infinity, in order."""
    return [name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def largest_magnitude(tensors: dict[str, torch.Tensor]) -> float:
    """The largest absolute value among the floating-point tensors (0 for none)."""
    return max((float(tensor.abs().max()) for tensor in tensors.values() if tensor.is_floating_point() and tensor.numel()), default=0.0)
