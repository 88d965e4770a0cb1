"""Weights in and out.

In: an open_clip pretrained tag (NAME:TAG), a local open_clip checkpoint (.pt, .bin, .safetensors),
or a famevil checkpoint directory. Out: a famevil checkpoint directory (model.safetensors, config.json,
manifest.json) and the backbone as a plain open_clip checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from data_specs.errors import FamevilError
from data_specs.manifest import InputRef, Manifest, release_fingerprint, require_artifact, write_manifest
from famevil.model.backbone import HF_HUB, backbone_config, hub_architecture, load_hub, load_pretrained, load_strict, read_state_dict
from famevil.multitask import ModelConfig, MultiTaskModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LOCAL_DIR = "local-dir:"  # open_clip's schema for a folder of open_clip_config.json and weights
OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS = "open_clip_config.json", "open_clip_model.safetensors"
CHECKPOINT_KINDS = ("model", "base", "teacher", "student")


def save_weights(model: MultiTaskModel, directory: Path) -> None:
    """model.safetensors and config.json, each written beside its final name and renamed into place,
    so that a run killed while saving keeps the previous pair."""
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    save_file(state, directory / f".{WEIGHTS_FILE}.tmp")
    (directory / f".{WEIGHTS_FILE}.tmp").replace(directory / WEIGHTS_FILE)
    config = {"famevil": model.config.to_dict(), "open_clip": model.backbone_config}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def save_checkpoint(model: MultiTaskModel, directory: Path, kind: str = "model", inputs: list[InputRef] | None = None, details: dict | None = None) -> Manifest:
    """Write weights, config and manifest into an existing directory (a stage's staging directory)."""
    save_weights(model, directory)
    return write_manifest(directory, kind, inputs=inputs or [], details=details or {})


def require_checkpoint(directory: Path) -> Manifest:
    """The manifest of a directory holding a model checkpoint of any kind (model, teacher, ...)."""
    manifest = require_artifact(directory)
    if manifest.kind not in CHECKPOINT_KINDS:
        raise FamevilError(f"{directory}: is a {manifest.kind!r} artifact, not a model checkpoint ({', '.join(CHECKPOINT_KINDS)})")
    return manifest


def load_checkpoint(directory: Path, manifest: Manifest | None = None) -> MultiTaskModel:
    """A famevil model from its checkpoint directory, weights loaded strictly. manifest: the one a
    caller got from require_checkpoint just before, so that the files are not checked twice."""
    if manifest is None:
        require_checkpoint(directory)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    model = MultiTaskModel(ModelConfig.from_dict(config["famevil"]), architecture=config["open_clip"])
    load_strict(model, load_file(directory / WEIGHTS_FILE), str(directory))
    return model


def base_reference(base: str | None, architecture: str, architecture_option: str = "--set model=") -> InputRef:
    """How a manifest names the weights a model started from, once they are known to fit `architecture`
    as far as that can be told before loading them (a stage calls this before any work)."""
    if base is None:
        return InputRef("base", "random-weights", f"random:{architecture}", architecture)
    if base.startswith(HF_HUB):
        _check_architecture(base, hub_architecture(base), architecture, architecture_option)
        return InputRef("base", "open_clip-hub", f"open_clip:{base}", base)
    if base.startswith(LOCAL_DIR):
        folder = _open_clip_folder(base, architecture, architecture_option)
        return InputRef("base", "open_clip-folder", release_fingerprint([folder / OPEN_CLIP_CONFIG, folder / OPEN_CLIP_WEIGHTS]), base)
    path = Path(base)
    if path.is_dir():
        manifest = require_checkpoint(path)
        return InputRef("base", manifest.kind, manifest.content_id, base)
    if path.is_file():
        return InputRef("base", "open_clip-file", release_fingerprint([path]), base)
    _check_tag(base, architecture, architecture_option)
    return InputRef("base", "open_clip-tag", f"open_clip:{base}", base)


def _open_clip_folder(base: str, architecture: str, architecture_option: str) -> Path:
    """A `local-dir:PATH` base: an open_clip folder (famevil export --format open_clip writes one)
    whose architecture is the model's."""
    folder = Path(base[len(LOCAL_DIR) :])
    if not (folder / OPEN_CLIP_CONFIG).is_file() or not (folder / OPEN_CLIP_WEIGHTS).is_file():
        raise FamevilError(f"--base {base}: not an open_clip folder (it needs {OPEN_CLIP_CONFIG} and {OPEN_CLIP_WEIGHTS})")
    try:
        model_cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text(encoding="utf-8"))["model_cfg"]
    except (json.JSONDecodeError, KeyError):
        raise FamevilError(f"--base {base}: {OPEN_CLIP_CONFIG} has no model_cfg") from None
    _check_architecture(base, model_cfg, architecture, architecture_option)
    return folder


def _check_architecture(base: str, model_cfg: dict, architecture: str, architecture_option: str) -> None:
    """An open_clip folder's or Hub model's model_cfg is the model's architecture."""
    if model_cfg != backbone_config(architecture):
        raise FamevilError(f"--base {base}: its model_cfg is not the {architecture} architecture; pass {architecture_option}NAME of its architecture")


def write_open_clip_folder(model: MultiTaskModel, directory: Path, preprocess: dict) -> None:
    """The backbone as an open_clip folder: `open_clip.create_model_and_transforms("local-dir:DIR")`
    loads it with open_clip alone, and `--base local-dir:DIR` back into famevil."""
    config = {"model_cfg": model.backbone_config, "preprocess_cfg": preprocess}
    (directory / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    export_open_clip(model, directory / OPEN_CLIP_WEIGHTS)


def _check_tag(base: str, architecture: str, architecture_option: str) -> None:
    """An open_clip NAME:TAG names a known architecture, the model's."""
    if ":" not in base:
        raise FamevilError(f"--base {base}: not a directory, a .pt/.bin/.safetensors file, or an open_clip NAME:TAG")
    name = base.split(":", 1)[0]
    backbone_config(name, option=f"--base {base}")
    if name != architecture:
        raise FamevilError(f"--base {base}: is a {name} but the model is a {architecture}; pass {architecture_option}{name}")


def load_base(model: MultiTaskModel, base: str, architecture_option: str = "--set model=") -> None:
    """Load a backbone's weights: a famevil checkpoint directory, a local open_clip file, or NAME:TAG.
    architecture_option: how the user chooses the model's architecture ("--set model=", "--arch "),
    for the error when the two differ."""
    if base.startswith(HF_HUB):
        load_hub(model.backbone, base)
        return
    if base.startswith(LOCAL_DIR):
        folder = _open_clip_folder(base, model.config.backbone, architecture_option)
        load_strict(model.backbone, read_state_dict(folder / OPEN_CLIP_WEIGHTS), base)
        return
    path = Path(base)
    if path.is_dir():
        source = load_checkpoint(path)
        if source.config.backbone != model.config.backbone:
            raise FamevilError(
                f"--base {base}: holds a {source.config.backbone} backbone but the model is a {model.config.backbone}; "
                f"pass {architecture_option}{source.config.backbone}"
            )
        load_strict(model.backbone, source.backbone.state_dict(), base)
    elif path.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        load_strict(model.backbone, read_state_dict(path), base)
    else:
        _check_tag(base, model.config.backbone, architecture_option)
        name, tag = base.split(":", 1)
        load_pretrained(model.backbone, name, tag)


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
