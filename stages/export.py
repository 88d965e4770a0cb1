"""famevil export: a trained model for others to load, as a famevil checkpoint, an open_clip folder or
ONNX encoders, with a model card (README.md, Hugging Face's format) written from the manifests."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from data_specs.errors import FamevilError
from data_specs.evaluations import flatten, read_metrics
from data_specs.manifest import InputRef, Manifest, read_manifest, write_manifest
from data_specs.staging import check_destination, staging
from famevil.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, require_checkpoint, save_tokenizer, write_open_clip_folder
from famevil.model.backbone import CONV_STEM, QUICK_GELU
from famevil.multitask import MultiTaskModel
from famevil.onnx_export import IMAGE_ENCODER, SETTINGS_FILE, TEXT_ENCODER, TOKENIZER_FILE, encoder_task, require_packages, write_encoders
from famevil.tasks import find_task
from famevil.tasks.base import FASHIONGEN, GENERATIVE

FORMATS = ("famevil", "open_clip", "onnx")
CARD_FILE = "README.md"
EXPORT_FILE_MODE = 0o644  # the owner writes, everyone reads
EVALUATED_ROLES = ("model", "base")  # how an evaluation's manifest names what it evaluated: a checkpoint, or a --base


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: Manifest
    format: str
    synthetic: bool  # trained on famevil's procedural data set


def _lineage(model: Path, manifest: Manifest) -> list[tuple[str, Manifest]]:
    """The model's manifest and, following each input's path while it still holds a manifest, those it was made from."""
    found, queue, seen = [], [(str(model), manifest)], set()
    while queue:
        path, current = queue.pop(0)
        if current.content_id in seen:
            continue
        seen.add(current.content_id)
        found.append((path, current))
        for ref in current.inputs:
            if (Path(ref.path) / "manifest.json").is_file():
                queue.append((ref.path, read_manifest(Path(ref.path))))
    return found


def _evaluation_of(metrics: Path, model: Path, manifest: Manifest) -> Manifest:
    """The evaluation's manifest, once it is known to be an evaluation of this very model (its inputs
    name the model's content id): the card would otherwise show another model's figures as this one's,
    such as TGIR, SCR and FIC figures on an XMR-only model."""
    evaluation = read_manifest(metrics)
    evaluated = [ref for ref in evaluation.inputs if ref.role in EVALUATED_ROLES]
    if not any(ref.id == manifest.content_id for ref in evaluated):
        other = f"the model at {evaluated[0].path} ({evaluated[0].id[:19]}…)" if evaluated else "no famevil model"
        raise FamevilError(
            f"--metrics {metrics}: is an evaluation of {other}, not of --model {model} ({manifest.content_id[:19]}…); "
            f"evaluate this model (famevil evaluate --model {model}) or drop --metrics"
        )
    return evaluation


def _readable_by_others(folder: Path) -> None:
    """Every file 0644: an export is for others to read, but safetensors writes its files 0600 and
    copies keep the mode of what they copy."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(EXPORT_FILE_MODE)


def _adapted_tasks(network: MultiTaskModel) -> list[str]:
    """The tasks whose adapters moved from zero: for the others the backbone alone computes famevil's embeddings."""
    moved = [name for name, sets in network.tsa.items() if any(a.up.weight.any() or a.up.bias.any() for tower in sets.values() for a in tower)]
    return list(network.tasks) if moved and network.shared_task_adapters else moved


def model_card(
    model: Path, network: MultiTaskModel, lineage: list[tuple[str, Manifest]], metrics: dict | None, form: str, synthetic: bool, task: str | None = None
) -> str:
    manifest = lineage[0][1]
    tasks = [find_task(name) for name in network.tasks]
    flat = flatten(metrics) if metrics else {}
    datasets = ["synthetic (famevil synth)"] if synthetic else sorted({"FashionGen" if t.source == FASHIONGEN else "FashionIQ" for t in tasks})
    header = {
        "license": "mit",
        "library_name": {"open_clip": "open_clip", "onnx": "onnx"}.get(form, "famevil"),
        "tags": ["famevil", "fame-vil", "fashion", "clip", "vision-language", *[t.title.replace(" ", "-") for t in tasks]],
        "datasets": datasets,
        "metrics": sorted(flat),
    }
    lines = ["---", *(f"{key}: {json.dumps(value)}" for key, value in header.items()), "---", ""]
    lines += [f"# {model.name}: a FAME-ViL {manifest.kind} ({network.config.backbone})", ""]
    lines += ["## Intended use", ""]
    lines += [f"Fashion {', '.join(t.title for t in tasks)}, as trained by famevil (after FAME-ViL, Han et al., CVPR 2023)."]
    if form == "open_clip":
        lines += [
            "",
            "This folder is the model's open_clip backbone alone: `open_clip.create_model_and_transforms('local-dir:PATH')` loads it,",
            "and `famevil teach --base local-dir:PATH` starts from it. famevil's task adapters, cross-attention adapters and heads are not in it.",
        ]
        adapted = _adapted_tasks(network)
        if adapted:
            lines += [
                f"The adapters of {', '.join(adapted)} were trained, so famevil's embeddings for those tasks differ from this backbone's: use `famevil.load` for them."
            ]
        else:
            lines += ["Its task adapters are still zero, so its image and text embeddings equal famevil's contrastive ones."]
    elif form == "onnx":
        lines += [
            "",
            f"This folder holds the model's image and text encoders with its {task} adapters as ONNX graphs ({IMAGE_ENCODER}, {TEXT_ENCODER}), which onnxruntime runs "
            f"without PyTorch; {SETTINGS_FILE} gives the preprocessing and the tokenizer's settings, {TOKENIZER_FILE} the tokenizer (Hugging Face tokenizers). "
            "The other tasks' adapters, the cross-attention adapters and the heads are not in it.",
        ]
    else:
        lines += ["", "Load it with `famevil.load(PATH)` (caption, classify, encode, compose), or as `--base PATH` for further training."]
    lines += ["", "## Training data and command", ""]
    for path, made in lineage:
        lines += [f"- `{made.kind}` {made.content_id[:19]}… at `{path}`: `{made.command}`"]
    if flat:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in flat.items() if isinstance(value, (int, float))]
    lines += ["", "## Limitations", ""]
    preprocess = network.preprocess
    if synthetic:
        lines += ["**Trained on famevil's procedural (synthetic) data set**: a demonstration of the pipeline, not a model for real products."]
    lines += [
        f"A {network.config.backbone} backbone ({'QuickGELU' if network.backbone_config.get(QUICK_GELU) else 'GELU'}) at {preprocess.size} px, images resized "
        f"{preprocess.interpolation} and normalised with mean {list(preprocess.mean)} and std {list(preprocess.std)}, as its base was trained; "
        "its figures hold for the data it was evaluated on.",
    ]
    if not network.text_causal and any(task.mode == GENERATIVE for task in tasks):
        lines.append(
            "The base's text tower was trained bidirectionally; captioning runs it with a causal mask, as FAME-ViL makes CLIP's text "
            "tower a decoder, so its captioner starts further from its base than retrieval and classification do."
        )
    lines += ["Fashion copy carries its sources' biases (gender, body type, the retailers' catalogues).", ""]
    return "\n".join(lines)


def export(model: Path, out: Path, form: str = "famevil", metrics: Path | None = None, task: str | None = None, overwrite: bool = False) -> ExportResult:
    """Write a trained model for others to load, with a model card (README.md in Hugging Face's format:
    metadata, intended use, the training data and commands from the manifests, the evaluation from
    --metrics, limitations).

    --format famevil copies the checkpoint (`famevil.load` and `--base` read it); --format open_clip
    writes the backbone as an open_clip folder (open_clip_config.json, open_clip_model.safetensors),
    which open_clip loads by itself through its local-dir: schema and famevil through --base
    local-dir:PATH. Adapters and heads have no place in an open_clip model; the card says whether
    that changes the embeddings. --format onnx writes the image and text encoders with one task's
    adapters (--task; by default xmr where the model has it, else its first) as ONNX graphs, with their
    preprocessing, tokenizer settings and tokenizer file (famevil.onnx_export).

    Example (seconds on a laptop CPU, after famevil evaluate):

        famevil export --model runs/example/student --format open_clip \\
            --metrics runs/example/eval/student --out runs/example/export
    """
    if form not in FORMATS:
        raise FamevilError(f"--format {form}: choose {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    if task is not None and form != "onnx":
        raise FamevilError(f"--task {task}: only --format onnx picks a task's adapters")
    if form == "onnx":
        require_packages()
    check_destination(out, overwrite, inputs=(model, metrics))
    manifest = require_checkpoint(model)
    network = load_checkpoint(model, manifest)
    if form == "open_clip" and CONV_STEM in network.backbone_config:
        raise FamevilError(
            f"--format open_clip: {model}'s image tower has famevil's convolutional stem ({network.backbone_name}), "
            "which open_clip cannot build; use --format famevil"
        )
    chosen = encoder_task(network, task) if form == "onnx" else None
    measured = read_metrics(metrics) if metrics else None  # checked as an artifact, its schema too
    lineage = _lineage(model, manifest)
    synthetic = any(ref.kind == "raw-dataset" for _, made in lineage for ref in made.inputs)  # made from `famevil synth` output
    inputs = [InputRef("model", manifest.kind, manifest.content_id, str(model))]
    if metrics:
        inputs.append(InputRef("metrics", "metrics", _evaluation_of(metrics, model, manifest).content_id, str(metrics)))
    with staging(out, {"inputs": [ref.id for ref in inputs], "format": form}, resume=False) as stage:
        if form == "open_clip":
            write_open_clip_folder(network, stage.partial)
        elif form == "onnx":
            write_encoders(network, chosen, stage.partial)
        else:
            for name in (WEIGHTS_FILE, CONFIG_FILE):
                shutil.copy2(model / name, stage.partial / name)
            save_tokenizer(network, stage.partial)
        (stage.partial / CARD_FILE).write_text(model_card(model, network, lineage, measured, form, synthetic, chosen), encoding="utf-8")
        kind = "model" if form == "famevil" else "export"  # a famevil copy stays a checkpoint famevil.load and --base read
        details = {"format": form, "synthetic": synthetic, "tasks": list(network.tasks)} | ({"task": chosen} if chosen else {})
        written = write_manifest(stage.partial, kind, inputs=inputs, details=details)
        _readable_by_others(stage.partial)
        stage.publish()
    return ExportResult(out, written, form, synthetic)
