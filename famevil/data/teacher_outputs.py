"""Teacher outputs on disk: one safetensors file per training shard, rows in the shard's sample order,
the sample keys in the file's metadata. Distillation looks rows up by sample key, so the student may
draw its batches in any order."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from data_specs.errors import FamevilError
from data_specs.manifest import Manifest, require_artifact
from famevil.tensors import largest_magnitude, load_safetensors, nonfinite_tensors

OUTPUTS_DIR = "outputs"


def output_path(root: Path, shard: Path) -> Path:
    """Where the outputs of one shard (shard-000003.tar) go: outputs/shard-000003.safetensors."""
    return root / OUTPUTS_DIR / f"{shard.name.removesuffix('.tar')}.safetensors"


def write_outputs(path: Path, keys: list[str], tensors: dict[str, torch.Tensor]) -> None:
    """One shard's outputs, written beside the final name and renamed, so a killed dump leaves no half file."""
    temporary = path.with_name(f".{path.name}.tmp")
    save_file({name: tensor.contiguous().cpu() for name, tensor in tensors.items()}, temporary, metadata={"keys": json.dumps(keys)})
    temporary.replace(path)


def read_keys(path: Path) -> list[str]:
    with safe_open(path, framework="pt") as handle:
        return json.loads(handle.metadata()["keys"])


class TeacherOutputs:
    """Every stored row of one teacher, held in memory and looked up by sample key. Each file is read
    once and checked against the manifest as it is read; values that are not finite are refused, since
    one NaN in a soft target makes every distillation loss NaN."""

    def __init__(self, root: Path, manifest: Manifest | None = None):
        self.root = root
        manifest = manifest or require_artifact(root, "teacher-outputs")
        files = sorted((root / OUTPUTS_DIR).glob("*.safetensors"))
        if not files:
            raise FamevilError(f"{root}: holds no {OUTPUTS_DIR}/*.safetensors; rebuild it with famevil dump")
        keys: list[str] = []
        parts: dict[str, list[torch.Tensor]] = {}
        self.keys_by_shard: dict[str, list[str]] = {}
        for path in files:
            tensors, metadata = load_safetensors(manifest.listed_file(root, path.relative_to(root).as_posix()))
            if "keys" not in metadata:
                raise FamevilError(f"{path}: no sample keys in its metadata; {manifest.rebuild}")
            if bad := nonfinite_tensors(tensors):
                raise FamevilError(
                    f"{path}: {', '.join(bad)} hold NaN or infinite values, which make every distillation loss NaN; {manifest.rebuild} from a teacher whose weights are finite"
                )
            for name, tensor in tensors.items():
                parts.setdefault(name, []).append(tensor)
            self.keys_by_shard[path.stem] = json.loads(metadata["keys"])
            keys += self.keys_by_shard[path.stem]
        self.tensors = {name: torch.cat(values) for name, values in parts.items()}
        self.rows = {key: row for row, key in enumerate(keys)}
        self.largest = largest_magnitude(self.tensors)  # a huge value is a likely cause should training diverge

    def __len__(self) -> int:
        return len(self.rows)

    def gather(self, keys: list[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The stored signals of these samples, stacked in this order."""
        try:
            rows = torch.tensor([self.rows[key] for key in keys])
        except KeyError as error:
            raise FamevilError(f"{self.root}: has no outputs for sample {error.args[0]!r}; dump the teacher on the shards distill reads") from None
        return {name: tensor[rows].to(device) for name, tensor in self.tensors.items()}
