"""The open_clip backbone: architectures (famevil's own tiny configs beside open_clip's), what famevil can adapt,
the default preprocessing of an architecture, and weights read from a file."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import load_file
from torch import nn

from data_specs.errors import FamevilError
from famevil.data.transforms import Preprocess, scratch_preprocess, square_size
from famevil.model import tiny_trunks  # noqa: F401 - registers famevil's tiny timm trunks with timm
from famevil.model.towers import check_steppable

CONFIG_DIR = Path(__file__).parent / "configs"
# famevil's one key beside open_clip's in an architecture config: the channels of a convolutional stem
# that replaces the image tower's patch embedding (conv_stem below). open_clip cannot build such a tower.
CONV_STEM = "conv_stem"
HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"  # open_clip's schemas for a Hub model and a local folder
OPEN_CLIP_SCHEMAS = (HF_HUB, LOCAL_DIR)
QUICK_GELU = "quick_gelu"  # an architecture's activation: QuickGELU (OpenAI's CLIP) where true, else GELU
# Settings that make open_clip build its CustomResidualAttentionBlock, whose attention famevil cannot step.
CUSTOM_BLOCK_KEYS = ("block_type", "qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc")
open_clip.add_model_config(CONFIG_DIR)  # famevil-tiny, famevil-small, ... become open_clip model names
FAMEVIL_ARCHITECTURES = tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.json")))


def backbone_config(name: str, option: str = "--set model") -> dict:
    """The open_clip architecture config (embed_dim, vision_cfg, text_cfg) of a model name; `option`
    is how the user gave the name, for the error."""
    config = architecture_config(name)
    if config is None:
        known = ", ".join(FAMEVIL_ARCHITECTURES)
        hub = "; an open_clip folder is --base local-dir:PATH, a Hub model --base hf-hub:ORG/NAME" if name in ("hf-hub", "local-dir") else ""
        raise FamevilError(f"{option}: {name!r} is not an open_clip model config; try ViT-B-16 or one of famevil's: {known}{hub}")
    return json.loads(json.dumps(config))  # a private copy: open_clip hands out its registry's dict


def architecture_config(name: str) -> dict | None:
    """open_clip's architecture config of a name in its registry, None for any other name. A name under
    one of open_clip's schemas (hf-hub:, local-dir:) is another: open_clip would read its config file
    itself, where a malformed one is a traceback; famevil.bases reads it instead, and says what is wrong."""
    return None if name.startswith(OPEN_CLIP_SCHEMAS) else open_clip.get_model_config(name)


def same_shape(first: dict, second: dict) -> bool:
    """Two architectures that differ at most in their activation (ViT-B-16 and ViT-B-16-quickgelu):
    the same weights fit both."""
    return {k: v for k, v in first.items() if k != QUICK_GELU} == {k: v for k, v in second.items() if k != QUICK_GELU}


def default_preprocess(name: str, architecture: dict) -> Preprocess:
    """The preprocessing of an architecture's fresh, randomly initialised weights: famevil's own
    architectures keep the transform their demo figures were measured with; open_clip's get open_clip's
    defaults (OpenAI's mean and std, bicubic)."""
    size = square_size(architecture["vision_cfg"]["image_size"], name)
    return scratch_preprocess(size) if name in FAMEVIL_ARCHITECTURES else Preprocess.from_open_clip({}, size, name)


def check_adaptable(architecture: dict, where: str) -> None:
    """One line, before any work, for an architecture whose towers famevil cannot step block by block yet:
    it names what is missing. famevil adapts open_clip's own ViT image tower and timm's ViT trunks, and
    open_clip's own text towers, causal (CLIP's) or not (SigLIP's); famevil.model.towers steps them."""
    vision, text = architecture.get("vision_cfg", {}), architecture.get("text_cfg", {})
    missing = None
    if "multimodal_cfg" in architecture:
        missing = "a captioning (CoCa) model's multimodal decoder"
    elif vision.get("timm_model_name") and vision.get("timm_pool") in ("abs_attn", "rot_attn"):
        missing = f"a timm trunk pooled by open_clip's {vision['timm_pool']} attention pool"
    elif isinstance(vision.get("layers"), (list, tuple)):
        missing = "a ResNet image tower (open_clip's ModifiedResNet)"
    elif text.get("hf_model_name"):
        missing = f"a Hugging Face text model ({text['hf_model_name']})"
    elif custom := [
        f"{tower} {key}" for tower, cfg in (("image", vision), ("text", text)) for key in CUSTOM_BLOCK_KEYS if cfg.get(key) not in (None, False, "default")
    ]:
        missing = f"open_clip's custom attention blocks ({', '.join(custom)})"
    elif text.get("embed_cls"):
        missing = "a text tower with an appended class token (embed_cls)"
    elif text.get("pool_type", "argmax") not in ("argmax", "eos", "first", "last"):
        missing = f"a text tower without a pooled vector (pool_type {text['pool_type']!r})"
    if missing:
        raise FamevilError(
            f"{where}: famevil cannot adapt {missing} yet; it adapts open_clip's ViT and timm's ViT image towers and open_clip's own text towers "
            "(e.g. --base ViT-B-16:openai, --base ViT-B-16-SigLIP:webli)"
        )


def create_backbone(name: str, config: dict | None = None) -> open_clip.model.CLIP | open_clip.model.CustomTextCLIP:
    """A randomly initialised open_clip CLIP of the named architecture (or of `config`, an open_clip
    architecture dict, as a checkpoint stores it): a CustomTextCLIP where the config says custom_text,
    as open_clip's create_model builds it."""
    config = config or backbone_config(name)
    check_adaptable(config, f"--model {name}")
    arguments = {key: value for key, value in config.items() if key not in (CONV_STEM, "custom_text")}
    model = open_clip.model.CustomTextCLIP(**arguments) if config.get("custom_text") else open_clip.model.CLIP(**arguments)
    if CONV_STEM in config:
        model.visual.conv1 = conv_stem(config[CONV_STEM], model.visual.conv1, name)
    check_steppable(model, f"--model {name}")
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
