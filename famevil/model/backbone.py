"""The open_clip backbone: famevil's own tiny configs beside open_clip's, and weights from a tag or a file."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file
from torch import nn

from data_specs.errors import FamevilError

CONFIG_DIR = Path(__file__).parent / "configs"
# famevil's one key beside open_clip's in an architecture config: the channels of a convolutional stem
# that replaces the image tower's patch embedding (conv_stem below). open_clip cannot build such a tower.
CONV_STEM = "conv_stem"
PAD_TOKEN = 0  # open_clip's tokenizer pads with 0; start and end of text are its two largest ids
open_clip.add_model_config(CONFIG_DIR)  # famevil-tiny, famevil-small, ... become open_clip model names


def backbone_config(name: str, option: str = "--set model") -> dict:
    """The open_clip architecture config (embed_dim, vision_cfg, text_cfg) of a model name; `option`
    is how the user gave the name, for the error."""
    config = open_clip.get_model_config(name)
    if config is None:
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
        hub = "; an open_clip folder is --base local-dir:PATH with --set model= its architecture" if name in ("hf-hub", "local-dir") else ""
        raise FamevilError(f"{option}: {name!r} is not an open_clip model config; try ViT-B-16 or one of famevil's: {known}{hub}")
    return json.loads(json.dumps(config))  # a private copy: open_clip hands out its registry's dict


def tokenizer(name: str):
    """open_clip's tokenizer for the architecture (its bundled BPE vocabulary: nothing is downloaded)."""
    backbone_config(name)  # a clear error for an unknown name
    return open_clip.get_tokenizer(name)


def create_backbone(name: str, config: dict | None = None) -> open_clip.model.CLIP:
    """A randomly initialised open_clip CLIP of the named architecture (or of `config`, an open_clip
    architecture dict, as a checkpoint stores it)."""
    config = config or backbone_config(name)
    if "custom_text" in config or config.get("text_cfg", {}).get("hf_model_name"):
        raise FamevilError(f"--model {name!r} has a custom text tower; famevil adapts OpenAI-style CLIP towers only")
    if "multimodal_cfg" in config:
        raise FamevilError(f"--model {name!r} is a captioning (CoCa) model; famevil adapts CLIP models only")
    model = open_clip.model.CLIP(**{key: value for key, value in config.items() if key != CONV_STEM})
    if CONV_STEM in config:
        model.visual.conv1 = conv_stem(config[CONV_STEM], model.visual.conv1, name)
    return model


def conv_stem(channels: list[int], patch_embedding: nn.Conv2d, name: str) -> nn.Sequential:
    """Early convolutions (Xiao et al., 2021) in place of a ViT's patch embedding: 3x3 stride-2
    convolutions, each with BatchNorm and ReLU, then a 1x1 convolution to the tower's width. The tokens
    are the patches' grid, so the stem has log2(patch_size) convolutions.

    famevil-small has one: its image tower is trained from scratch in two CPU-minutes, and a patch
    embedding followed by four blocks had not learnt to tell garments apart by their shape by then,
    which left the demo's captioner naming colours only (docs/captioning.md). A real CLIP has no need."""
    patch = patch_embedding.kernel_size[0]
    if not channels or 2 ** len(channels) != patch:
        raise FamevilError(
            f"--model {name}: conv_stem {channels} halves the image {len(channels)} times, but the tower's patches are "
            f"{patch} pixels wide; give one channel count per halving (log2 of patch_size)"
        )
    layers: list[nn.Module] = []
    for channels_in, channels_out in zip([3, *channels[:-1]], channels, strict=True):
        layers += [nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(channels[-1], patch_embedding.out_channels, 1))
    return nn.Sequential(*layers)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from a local .safetensors, .pt or .bin file. Pickles are read with weights_only=True,
    so a checkpoint can carry tensors but no code."""
    if not path.is_file():
        raise FamevilError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as error:  # safetensors raises its own SafetensorError, or OSError, for a bad file
            raise FamevilError(f"{path}: not a readable safetensors file ({str(error).splitlines()[0]}); download or export it again") from None
    if path.suffix not in (".pt", ".pth", ".bin"):
        raise FamevilError(f"{path}: unknown weights format; expected .safetensors, .pt, .pth or .bin")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError and RuntimeError alike
        raise FamevilError(f"{path}: not loadable as plain tensors ({str(error).splitlines()[0]})") from None
    for key in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise FamevilError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True), with a one-line error that lists what does not fit."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or mismatched:

        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "") if keys else "none"

        raise FamevilError(
            f"{source}: weights do not fit the architecture: missing keys: {listing(missing)}; unexpected keys: "
            f"{listing(unexpected)}; wrong shapes: {listing(mismatched)}; check --model matches the checkpoint"
        )
    module.load_state_dict(state, strict=True)


HF_HUB = "hf-hub:"  # open_clip's schema for a model on the Hugging Face Hub


def _unreachable(base: str, error: Exception) -> FamevilError:
    return FamevilError(f"--base {base}: could not fetch it ({type(error).__name__}); this needs the internet or open_clip's local cache (HF_HOME)")


def hub_architecture(base: str) -> dict:
    """The open_clip architecture of a model on the Hub (hf-hub:ORG/NAME): its config alone, fetched
    (or read from the cache) before any work."""
    try:
        config = hf_hub_download(base[len(HF_HUB) :], "open_clip_config.json")
        return json.loads(Path(config).read_text(encoding="utf-8"))["model_cfg"]
    except Exception as error:  # hub, network and format errors come in many types
        raise _unreachable(base, error) from None


def load_hub(model: open_clip.model.CLIP, base: str) -> None:
    """Weights of an open_clip model on the Hugging Face Hub, through open_clip's own download and cache."""
    try:
        hub_model = open_clip.create_model(base)
    except Exception as error:  # hub and network errors come in many types
        raise _unreachable(base, error) from None
    load_strict(model, hub_model.state_dict(), base)


def load_pretrained(model: open_clip.model.CLIP, name: str, tag: str) -> None:
    """Weights of an open_clip pretrained tag, through open_clip's own download and cache."""
    if tag not in open_clip.list_pretrained_tags_by_model(name):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise FamevilError(f"--base {name}:{tag}: open_clip has no such pretrained tag (for {name}: {tags})")
    try:
        path = open_clip.download_pretrained(open_clip.get_pretrained_cfg(name, tag))
    except Exception as error:  # hub and network errors come in many types
        raise FamevilError(
            f"--base {name}:{tag}: could not fetch the weights ({type(error).__name__}); this needs the internet or "
            f"open_clip's local cache (HF_HOME); or pass a local checkpoint file"
        ) from None
    load_strict(model, read_state_dict(Path(path)), f"{name}:{tag}")
