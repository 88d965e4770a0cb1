"""famevil dump: a teacher's outputs on its task's training shards, stored once for distillation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from data_specs.errors import FamevilError
from data_specs.manifest import InputRef, Manifest, write_manifest
from data_specs.shards import Shards
from data_specs.staging import check_destination, staging
from famevil.checkpoint import load_checkpoint, require_checkpoint
from famevil.data.loading import batched, shard_samples
from famevil.data.teacher_outputs import OUTPUTS_DIR, output_path, read_keys, write_outputs
from famevil.data.transforms import image_transform
from famevil.progress import progress_bar
from famevil.tasks import find_task
from famevil.tasks.base import check_coverage


@dataclass(frozen=True)
class DumpResult:
    out: Path
    manifest: Manifest
    task: str
    samples: int
    bytes_per_sample: float
    resumed_shards: int


def dump(teacher: Path, shards: Path, out: Path, top_k: int = 8, batch_size: int = 64, overwrite: bool = False) -> DumpResult:
    """Run a teacher once over its task's training shards and store its outputs by sample key, for distillation.

    Stored is what rebuilds the teacher's distributions for any batch: image and text embeddings (XMR),
    composed-query and target embeddings (TGIR), each with the teacher's temperature; class logits
    (SCR); the top-k next-token log-probabilities and ids at every caption position (FIC, --top-k).
    Half precision; images through the evaluation transform (the teacher's view of the clean image).
    Resumable shard by shard: rerun the same command after an interruption.

    Example (seconds on a laptop CPU, after famevil teach):

        famevil dump --teacher runs/example/teacher-xmr \\
            --shards runs/example/shards --out runs/example/outputs-xmr

    Repeat it for tgir, scr and fic in place of xmr: famevil distill learns from all four.
    """
    check_destination(out, overwrite, inputs=(teacher, shards))
    teacher_manifest = require_checkpoint(teacher, "teacher")
    opened = Shards.open(shards)
    task = find_task(teacher_manifest.details["task"])
    check_coverage(opened, [task], train=True, evaluate_on=None)
    subset = task.train_subset()
    if top_k < 1:
        raise FamevilError(f"--top-k {top_k}: must be at least 1")
    model = load_checkpoint(teacher, teacher_manifest).eval()
    backbone = model.backbone_config
    transform = image_transform(model.preprocess, train=False)
    tokenize = model.tokenizer()
    files = opened.listed(subset)
    inputs = [InputRef("teacher", "teacher", teacher_manifest.content_id, str(teacher)), opened.ref]
    plan = {"inputs": [ref.id for ref in inputs], "top_k": top_k}
    resumed_shards = 0
    with staging(out, plan) as stage, torch.no_grad():
        (stage.partial / OUTPUTS_DIR).mkdir(exist_ok=True)
        with progress_bar(f"dump {task.name}", sum(count for _, count in files), unit="samples") as advance:
            for shard, count in files:
                destination = output_path(stage.partial, shard)
                if destination.is_file():
                    resumed_shards += 1
                    continue
                keys: list[str] = []
                parts: dict[str, list[torch.Tensor]] = {}
                for samples in batched(shard_samples([opened.listed_file(shard)], expected=count), batch_size):
                    batch = task.batch(samples, transform, tokenize)
                    for name, value in task.signals(model, model.head(task.name), batch, top_k).items():
                        parts.setdefault(name, []).append(value)
                    keys += batch["keys"]
                    advance(len(samples))
                write_outputs(destination, keys, {name: torch.cat(values) for name, values in parts.items()})
        samples = sum(len(read_keys(output_path(stage.partial, shard))) for shard, _ in files)
        stored = sum(path.stat().st_size for path in (stage.partial / OUTPUTS_DIR).glob("*.safetensors"))
        details = {
            "task": task.name,
            "top_k": top_k,
            "samples": samples,
            "bytes_per_sample": round(stored / max(1, samples), 1),
            "teacher_backbone": model.config.backbone,
            "vocab_size": backbone["text_cfg"]["vocab_size"],
            "context_length": backbone["text_cfg"]["context_length"],
        }
        manifest = write_manifest(stage.partial, "teacher-outputs", inputs=inputs, details=details)
        stage.publish()
    return DumpResult(out, manifest, task.name, samples, details["bytes_per_sample"], resumed_shards)
