"""famevil checkpoint directories in and out (model.safetensors, config.json, manifest.json), and the
backbone out as a plain open_clip checkpoint or folder. Where a new model's backbone comes from is
famevil.bases.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from data_specs.errors import FamevilError
from data_specs.manifest import InputRef, Manifest, require_artifact, write_manifest
from famevil.data.transforms import Preprocess, legacy_preprocess, square_size
from famevil.model.backbone import load_strict
from famevil.model.tokenizer import TOKENIZER_DIR
from famevil.multitask import ModelConfig, MultiTaskModel
from famevil.tensors import load_safetensors

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS = "open_clip_config.json", "open_clip_model.safetensors"
CHECKPOINT_KINDS = ("model", "base", "teacher", "student")


def save_weights(model: MultiTaskModel, directory: Path) -> None:
    """model.safetensors and config.json, each written beside its final name and renamed into place,
    so that a run killed while saving keeps the previous pair. config.json holds famevil's model config,
    the backbone's open_clip architecture and the preprocessing its weights were trained with; a text
    tower's Hugging Face tokenizer goes beside them once, so that the checkpoint needs nothing else."""
    save_tokenizer(model, directory)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    save_file(state, directory / f".{WEIGHTS_FILE}.tmp")
    (directory / f".{WEIGHTS_FILE}.tmp").replace(directory / WEIGHTS_FILE)
    config = {"famevil": model.config.to_dict(), "open_clip": model.backbone_config, "preprocess": model.preprocess.to_dict()}
    (directory / f".{CONFIG_FILE}.tmp").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / f".{CONFIG_FILE}.tmp").replace(directory / CONFIG_FILE)


def save_tokenizer(model: MultiTaskModel, directory: Path) -> None:
    """The model's Hugging Face tokenizer into directory/tokenizer (open_clip's CLIP tokenizer is bundled: nothing)."""
    tokenizer = model.tokenizer()
    if tokenizer.hugging_face and not (directory / TOKENIZER_DIR).is_dir():
        staging = directory / f".{TOKENIZER_DIR}.tmp"
        tokenizer.save(staging)
        staging.replace(directory / TOKENIZER_DIR)


def checkpoint_tokenizer_files(directory: Path) -> str | None:
    """Where a checkpoint keeps its Hugging Face tokenizer, if it has one."""
    return str(directory / TOKENIZER_DIR) if (directory / TOKENIZER_DIR).is_dir() else None


def save_checkpoint(model: MultiTaskModel, directory: Path, kind: str = "model", inputs: list[InputRef] | None = None, details: dict | None = None) -> Manifest:
    """Write weights, config and manifest into an existing directory (a stage's staging directory)."""
    save_weights(model, directory)
    return write_manifest(directory, kind, inputs=inputs or [], details=details or {})


def require_checkpoint(directory: Path, kind: str | None = None, weights_now: bool = False) -> Manifest:
    """The manifest of a directory holding a model checkpoint of `kind` (None: any of CHECKPOINT_KINDS). Its
    weights are left to load_checkpoint, which hashes them as it reads them, so that they are read once;
    weights_now hashes them here too, for a caller that loads them only once its work has begun."""
    manifest = require_artifact(directory, kind, hashed_when_read=() if weights_now else (WEIGHTS_FILE,))
    if manifest.kind not in CHECKPOINT_KINDS:
        raise FamevilError(f"{directory}: is a {manifest.kind!r} artifact, not a model checkpoint ({', '.join(CHECKPOINT_KINDS)})")
    return manifest


def checkpoint_config(directory: Path) -> tuple[ModelConfig, dict, Preprocess]:
    """A checkpoint's model config, open_clip architecture and preprocessing, from its config.json. A
    checkpoint written before config.json recorded the preprocessing keeps what famevil did then."""
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    architecture = config["open_clip"]
    if "preprocess" in config:
        preprocess = Preprocess.from_dict(config["preprocess"])
    else:
        preprocess = legacy_preprocess(square_size(architecture["vision_cfg"]["image_size"], str(directory)))
    return ModelConfig.from_dict(config["famevil"]), architecture, preprocess


def load_checkpoint(directory: Path, manifest: Manifest | None = None) -> MultiTaskModel:
    """A famevil model from its checkpoint directory, its weights checked against the manifest as they
    are read and loaded strictly. manifest: the one a caller got from require_checkpoint just before, so
    that the files are not checked twice."""
    manifest = manifest or require_checkpoint(directory)
    model = MultiTaskModel(*checkpoint_config(directory), checkpoint_tokenizer_files(directory))
    weights, _ = load_safetensors(manifest.listed_file(directory, WEIGHTS_FILE))
    load_strict(model, weights, str(directory))
    return model


def write_open_clip_folder(model: MultiTaskModel, directory: Path) -> None:
    """The backbone as an open_clip folder, its preprocess_cfg the model's own:
    `open_clip.create_model_and_transforms("local-dir:DIR")` loads it with open_clip alone, and
    `--base local-dir:DIR` back into famevil."""
    config = {"model_cfg": model.backbone_config, "preprocess_cfg": model.preprocess.open_clip_dict()}
    (directory / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    model.tokenizer().save(directory)  # open_clip reads a local-dir: model's Hugging Face tokenizer from the folder
    export_open_clip(model, directory / OPEN_CLIP_WEIGHTS)


def export_open_clip(model: MultiTaskModel, path: Path) -> None:
    """The backbone as a plain open_clip checkpoint: `open_clip.create_model(name, pretrained=path)` loads it.

    Adapters have no place in a plain CLIP, so this is the shared backbone alone: its embeddings
    equal FAME-ViL's contrastive ones while the TSAs are still zero, and drift from them as they train.
    """
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.backbone.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
