"""famevil evaluate: the paper's evaluation protocols for the four tasks, on any famevil checkpoint or a plain backbone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_specs.errors import FamevilError
from data_specs.evaluations import METRICS_FILE, metrics_payload
from data_specs.manifest import MANIFEST_FILE, InputRef, Manifest, read_manifest, write_manifest
from data_specs.shards import Shards
from data_specs.staging import check_destination, staging
from famevil.bases import resolve_base
from famevil.checkpoint import load_checkpoint, require_checkpoint
from famevil.evaluation import measure
from famevil.model.transformers_clip import is_transformers_clip
from famevil.multitask import ModelConfig, MultiTaskModel
from famevil.tasks import TASKS, find_task, task_names
from famevil.tasks.base import check_coverage


def paper_figures() -> dict[str, float]:
    """The paper's FAME-ViL (multi-task) row, percent, CIDEr x100, by flattened metric name: what `--compare` prints beside runs."""
    return {f"{task.name}.{key}": value for task in TASKS.values() for key, value in task.paper.items()}


@dataclass(frozen=True)
class EvaluateResult:
    out: Path
    manifest: Manifest
    metrics: dict[str, Any]
    warnings: tuple[str, ...]


def evaluate(
    out: Path,
    shards: Path,
    model: Path | None = None,
    base: str | None = None,
    arch: str = "ViT-B-16",
    tasks: list[str] | None = None,
    split: str = "val",
    beams: int = 1,
    max_new_tokens: int | None = None,
    batch_size: int = 64,
    random100_runs: int = 5,
    seed: int = 0,
    overwrite: bool = False,
) -> EvaluateResult:
    """Evaluate a model on the paper's protocols and write metrics.json with the predictions behind it.

    XMR: full gallery (every view against every text; all views of a product are positives) and
    "random 100" (1,000 queries, each against its positive and 100 negatives of its subcategory,
    averaged over 5 seeded runs), I2T and T2I R@1/5/10. TGIR: R@10 and R@50 per FashionIQ group
    against the group's gallery. SCR: accuracy and macro-F1 (a subcategory seen only at test time
    counts against the model). FIC: BLEU-4, METEOR, ROUGE-L and CIDEr through pycocoevalcap; greedy
    decoding, or beam search with --beams. All in percent, CIDEr x100, like the paper. --split val
    (the default: FashionGen's validation file serves as its test split) or train.

    Give --model (a famevil checkpoint directory) or --base: an open_clip NAME:TAG, hf-hub:ORG/NAME,
    local-dir:DIR, a transformers CLIPModel folder, a local open_clip checkpoint file (with --arch), or a config name such as
    famevil-tiny for random weights (zero-shot CLIP baseline for XMR and TGIR, a random baseline for
    all four). A base runs as it was trained: its activation and image preprocessing come with it.

    Example (seconds on a laptop CPU, after famevil distill; the student, then a teacher):

        famevil evaluate --model runs/example/student \\
            --shards runs/example/shards --out runs/example/eval/student
        famevil evaluate --model runs/example/teacher-xmr \\
            --shards runs/example/shards --out runs/example/eval/teacher-xmr

    Repeat the teacher's for tgir, scr and fic in place of xmr: famevil report compares the student
    with all four. (--base famevil-tiny instead of --model evaluates random weights.)
    """
    if (model is None) == (base is None):
        raise FamevilError("give exactly one of --model DIR (a famevil checkpoint) and --base WEIGHTS")
    held = read_manifest(out).kind if (out / MANIFEST_FILE).is_file() else None
    if held not in (None, "metrics"):
        raise FamevilError(f"--out {out}: holds a {held!r} artifact; refusing to replace it with metrics, choose another --out")
    check_destination(out, overwrite, inputs=(model, shards, base))
    opened = Shards.open(shards)
    torch.manual_seed(seed)
    network, model_ref = _load_model(model, base, arch, opened.training_vocabularies())
    wanted = [find_task(name).name for name in tasks] if tasks else list(network.tasks)
    for task in wanted:
        if task not in network.tasks:
            raise FamevilError(f"the model has no {task!r} adapters or head (its tasks: {', '.join(network.tasks)}); evaluate other --tasks")
    check_coverage(opened, [TASKS[task] for task in wanted], train=False, evaluate_on=split)
    inputs = [model_ref, opened.ref]
    with staging(out, {"inputs": [ref.id for ref in inputs], "tasks": wanted, "split": split}, resume=False) as stage:
        measured = measure(network, opened, wanted, split, beams, max_new_tokens, batch_size, random100_runs, seed)
        for stem, lines in measured.records.items():
            with open(stage.partial / f"{stem}.jsonl", "w", encoding="utf-8") as records:
                records.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        (stage.partial / METRICS_FILE).write_text(metrics_payload(measured.metrics, measured.warnings), encoding="utf-8")
        manifest = write_manifest(stage.partial, "metrics", inputs=inputs, details={"tasks": wanted, "split": split, "beams": beams, "seed": seed})
        stage.publish()
    return EvaluateResult(out, manifest, measured.metrics, tuple(measured.warnings))


def _load_model(model: Path | None, base: str | None, arch: str, vocabularies: dict[str, list[str]]) -> tuple[MultiTaskModel, InputRef]:
    if model is not None:
        manifest = require_checkpoint(model)
        return load_checkpoint(model, manifest), InputRef("model", manifest.kind, manifest.content_id, str(model))
    if Path(base).is_dir() and not is_transformers_clip(Path(base)):
        raise FamevilError(f"--base {base}: a famevil checkpoint directory is evaluated with --model {base}")
    if Path(base).exists() or ":" in base:  # weights: a tag, a Hub model, a folder (open_clip's or transformers'), or a file of the --arch architecture
        backbone = resolve_base(base, arch, option="--arch ")
        ref = backbone.ref
    else:  # an architecture's name: random weights, seeded
        backbone = resolve_base(None, base, option="--base ")
        ref = InputRef(backbone.ref.role, backbone.ref.kind, f"{backbone.ref.id}:seed{torch.initial_seed()}", backbone.ref.path)
    return backbone.model(ModelConfig(backbone=backbone.backbone, tasks=task_names(), vocabularies=vocabularies)), ref
