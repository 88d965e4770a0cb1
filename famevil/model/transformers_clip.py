"""A Hugging Face transformers CLIPModel folder (FashionCLIP 2.0, OpenAI's clip-vit-* repositories) read as
open_clip's native ViT CLIP: the architecture from its config.json, the preprocessing from its
preprocessor_config.json, and its weights renamed key by key.

transformers is never imported: its CLIP is open_clip's, layer for layer (pre-norm blocks, a class token,
pooling at the end-of-text token, the same BPE vocabulary), so a renaming is all it takes, and famevil keeps
running the towers it can step block by block."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from data_specs.errors import FamevilError
from data_specs.manifest import MANIFEST_FILE
from famevil.data.transforms import Preprocess, square_size
from famevil.model.backbone import QUICK_GELU, read_state_dict

CONFIG_FILE, PREPROCESSOR_CONFIG = "config.json", "preprocessor_config.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # save_pretrained's names, in the order transformers loads them
BPE_VOCABULARY, END_OF_TEXT = 49408, 49407  # open_clip's bundled tokenizer, which famevil tokenizes with
# transformers' defaults (CLIPTextConfig, CLIPVisionConfig): a config.json may leave out what equals them.
TOWER_DEFAULTS = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
TEXT_DEFAULTS = TOWER_DEFAULTS | {
    "vocab_size": BPE_VOCABULARY,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "eos_token_id": END_OF_TEXT,
}
VISION_DEFAULTS = TOWER_DEFAULTS | {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
}
ACTIVATIONS = {"quick_gelu": True, "gelu": False}  # transformers' name -> open_clip's quick_gelu (its "gelu" is exact, as nn.GELU)
# End-of-text ids at which transformers pools where open_clip does (the argmax of the tokens): 2 makes it
# take the argmax itself (configs written before transformers 4.31), 49407 the first end-of-text token.
POOLED_AT = (2, END_OF_TEXT)
RESAMPLE = {3: "bicubic", 2: "bilinear"}  # PIL's numbering, which preprocessor_config.json's resample uses

# transformers' module -> open_clip's, inside and outside the blocks. The blocks' q, k and v projections
# become one in_proj (nn.MultiheadAttention's), the embeddings' and projections' weights bare parameters.
MODULES = {
    "vision_model.embeddings.patch_embedding": "visual.conv1",
    "vision_model.pre_layrnorm": "visual.ln_pre",
    "vision_model.post_layernorm": "visual.ln_post",
    "text_model.embeddings.token_embedding": "token_embedding",
    "text_model.final_layer_norm": "ln_final",
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
PARAMETERS = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "logit_scale": "logit_scale",
}
TRANSPOSED = {"visual_projection.weight": "visual.proj", "text_projection.weight": "text_projection"}  # nn.Linear's (out, in) -> open_clip's x @ proj
BLOCK = re.compile(r"(?P<tower>vision_model|text_model)\.encoder\.layers\.(?P<index>\d+)\.(?P<rest>.+)")
TOWER_BLOCKS = {"vision_model": "visual.transformer.resblocks", "text_model": "transformer.resblocks"}
QKV = re.compile(r"self_attn\.(?P<part>[qkv])_proj\.(?P<kind>weight|bias)")


def is_transformers_clip(folder: Path) -> bool:
    """A folder transformers' CLIPModel.save_pretrained wrote, or a Hub snapshot of one; not a famevil
    checkpoint, whose config.json sits beside a manifest.json."""
    if not (folder / CONFIG_FILE).is_file() or (folder / MANIFEST_FILE).exists():
        return False
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and (config.get("model_type") == "clip" or "CLIPModel" in (config.get("architectures") or ()))


def weights_file(folder: Path) -> Path | None:
    """The weights file transformers would load from the folder."""
    return next((folder / name for name in WEIGHTS_FILES if (folder / name).is_file()), None)


def read_clip_folder(folder: Path, where: str) -> tuple[dict, Preprocess]:
    """The folder's open_clip architecture (model_cfg) and preprocessing; `where` is how the user named it."""
    config = _json(folder / CONFIG_FILE, where)
    architecture = _architecture(config, where)
    return architecture, _preprocess(folder / PREPROCESSOR_CONFIG, architecture["vision_cfg"]["image_size"], where)


def _json(path: Path, where: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FamevilError(f"{where}: {path.name} is not valid JSON ({error}); download the model again") from None


def _tower(config: dict, name: str, defaults: dict) -> dict:
    """A tower's settings as transformers' CLIPConfig settles them: its defaults, the config's text_config
    (vision_config), then the older text_config_dict (vision_config_dict), which takes precedence."""
    return defaults | (config.get(name) or {}) | (config.get(f"{name}_dict") or {})


def _architecture(config: dict, where: str) -> dict:
    """open_clip's model_cfg of the same network, refusing in one line what its native towers compute otherwise."""
    text, vision = _tower(config, "text_config", TEXT_DEFAULTS), _tower(config, "vision_config", VISION_DEFAULTS)
    for tower, settings in (("text_config", text), ("vision_config", vision)):
        _require(settings, tower, "hidden_act", ACTIVATIONS, "open_clip's towers run quick_gelu or exact gelu", where)
        _require(settings, tower, "layer_norm_eps", (1e-5,), "open_clip's LayerNorm has eps 1e-5", where)
    _require(text, "text_config", "vocab_size", (BPE_VOCABULARY,), f"famevil tokenizes with CLIP's BPE vocabulary of {BPE_VOCABULARY}", where)
    _require(text, "text_config", "eos_token_id", POOLED_AT, f"open_clip pools the text at its end-of-text token {END_OF_TEXT}", where)
    if text["hidden_act"] != vision["hidden_act"]:
        raise FamevilError(f"{where}: config.json's towers run {text['hidden_act']} (text) and {vision['hidden_act']} (vision); open_clip runs one activation")
    architecture = {
        "embed_dim": config.get("projection_dim", 512),
        "vision_cfg": {
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "width": vision["hidden_size"],
            "layers": vision["num_hidden_layers"],
            "head_width": vision["hidden_size"] // vision["num_attention_heads"],
            "mlp_ratio": vision["intermediate_size"] / vision["hidden_size"],
        },
        "text_cfg": {
            "context_length": text["max_position_embeddings"],
            "vocab_size": text["vocab_size"],
            "width": text["hidden_size"],
            "heads": text["num_attention_heads"],
            "layers": text["num_hidden_layers"],
            "mlp_ratio": text["intermediate_size"] / text["hidden_size"],
        },
    }
    return architecture | ({QUICK_GELU: True} if ACTIVATIONS[vision["hidden_act"]] else {})


def _require(settings: dict, tower: str, field: str, supported, why: str, where: str) -> None:
    if settings[field] not in supported:
        raise FamevilError(f"{where}: config.json {tower}.{field} is {settings[field]!r}, which famevil cannot run: {why}")


def _preprocess(path: Path, image_size: int, where: str) -> Preprocess:
    """The image processor's mean, std and resampling filter, OpenAI's where the folder has none (as
    CLIPImageProcessor's defaults are). Its resize of the shortest edge is open_clip's resize_mode
    "shortest", a {height, width} resize "squash"; evaluation keeps the authors' geometry either way."""
    settings = _json(path, where) if path.is_file() else {}
    resample, crop = settings.get("resample", 3), settings.get("crop_size", image_size)
    if resample not in RESAMPLE:
        raise FamevilError(f"{where}: {path.name} resample is {resample}; famevil resizes bicubic (3) or bilinear (2)")
    crop = square_size(list(crop.values()) if isinstance(crop, dict) else crop, f"{where}: {path.name} crop_size")
    if crop != square_size(image_size, where):
        raise FamevilError(f"{where}: {path.name} crop_size is {crop}, but config.json's image tower takes {image_size}; download the model again")
    squash = isinstance(settings.get("size"), dict) and "height" in settings["size"]
    preprocess_cfg = {"mean": settings.get("image_mean"), "std": settings.get("image_std"), "interpolation": RESAMPLE[resample]}
    return Preprocess.from_open_clip(preprocess_cfg | {"resize_mode": "squash" if squash else "shortest"}, image_size, where)


def open_clip_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    """The weights file's tensors under open_clip's names. A name it does not know is kept as it is, so
    that a strict load lists it; the position_ids buffers older transformers saved are dropped."""
    converted, attention = {}, {}
    for name, tensor in read_state_dict(weights).items():
        if name.endswith("embeddings.position_ids"):
            continue
        if name in TRANSPOSED:
            converted[TRANSPOSED[name]] = tensor.T.contiguous()
            continue
        block = BLOCK.fullmatch(name)
        qkv = QKV.fullmatch(block["rest"]) if block else None
        if qkv:
            attention.setdefault(f"{TOWER_BLOCKS[block['tower']]}.{block['index']}.attn.in_proj_{qkv['kind']}", {})[qkv["part"]] = tensor
        elif block:
            converted[f"{TOWER_BLOCKS[block['tower']]}.{block['index']}.{_renamed(block['rest'])}"] = tensor
        else:
            converted[PARAMETERS.get(name) or _renamed(name)] = tensor
    # nn.MultiheadAttention's in_proj is q, k and v stacked; a block short of one is left out, for the load to list
    converted |= {name: torch.cat([parts[part] for part in "qkv"]) for name, parts in attention.items() if len(parts) == 3}
    return converted


def _renamed(name: str) -> str:
    """A parameter's name with its module's renamed (layer norm and linear weights and biases keep their own)."""
    module, _, parameter = name.rpartition(".")
    return f"{MODULES[module]}.{parameter}" if module in MODULES else name
