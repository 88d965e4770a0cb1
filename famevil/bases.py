"""Where a new model's backbone comes from (`--base`): its weights, and the architecture (activation
included) and image preprocessing those weights were trained with. The base defines them; a stage
resolves it before any work and builds the model on it.

    (none)                         random weights of the architecture --set model= names
    NAME:TAG                       an open_clip pretrained tag, through open_clip's download and cache;
                                   the tag's config gives the activation (quick_gelu) and preprocessing
    FILE.pt | .bin | .safetensors  a local open_clip checkpoint of the architecture --set model= names
    hf-hub:ORG/NAME                an open_clip model on the Hugging Face Hub: its open_clip_config.json
    local-dir:DIR                  an open_clip folder (famevil export --format open_clip writes one): likewise
    DIR                            a famevil checkpoint: its backbone, architecture and preprocessing
    DIR | hf-hub:ORG/NAME          a transformers CLIPModel (FashionCLIP 2.0), locally or on the Hub without an
                                   open_clip_config.json: its config.json and preprocessor_config.json, its
                                   weights renamed onto open_clip's native CLIP (famevil.model.transformers_clip)

Each is what open_clip's own create_model_and_transforms builds from the same name, with OpenAI's
weights run with the QuickGELU they were trained with (tests/test_equivalence.py proves it offline).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import open_clip
from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

from data_specs.errors import FamevilError, FamevilWarning
from data_specs.manifest import InputRef, release_fingerprint
from famevil.checkpoint import OPEN_CLIP_CONFIG, checkpoint_config, checkpoint_tokenizer_files, load_checkpoint, require_checkpoint
from famevil.data.transforms import Preprocess
from famevil.model.backbone import (
    HF_HUB,
    LOCAL_DIR,
    QUICK_GELU,
    architecture_config,
    backbone_config,
    check_adaptable,
    default_preprocess,
    load_strict,
    read_state_dict,
    same_shape,
)
from famevil.model.tokenizer import TextTokenizer, text_tokenizer
from famevil.model.transformers_clip import (
    CONFIG_FILE,
    PREPROCESSOR_CONFIG,
    WEIGHTS_FILES,
    is_transformers_clip,
    open_clip_state_dict,
    read_clip_folder,
    weights_file,
)
from famevil.multitask import ModelConfig, MultiTaskModel

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
TRANSFORMERS_FOLDER, TRANSFORMERS_HUB = "transformers-clip-folder", "transformers-clip-hub"  # their InputRef kinds


@dataclass(frozen=True)
class Base:
    given: str | None  # as --base gave it; None: random weights
    backbone: str  # the architecture's name (ModelConfig.backbone)
    architecture: dict  # open_clip's model_cfg, quick_gelu included where the weights need it
    preprocess: Preprocess  # how images are prepared, as the weights were trained
    ref: InputRef  # how a manifest names the weights
    tokenizer_files: str | None = None  # where its Hugging Face tokenizer's files are, if its text tower has one; else the config's Hub name

    def tokenizer(self) -> TextTokenizer:
        return text_tokenizer(self.architecture, self.tokenizer_files)

    def model(self, config: ModelConfig) -> MultiTaskModel:
        """A model of `config` on this base: its architecture, preprocessing and tokenizer, its weights loaded strictly."""
        model = MultiTaskModel(replace(config, backbone=self.backbone), self.architecture, self.preprocess, self.tokenizer_files)
        if self.given is not None:
            load_strict(model.backbone, _weights(self.given, self.ref.kind), self.given)
        return model


def resolve_base(base: str | None, architecture: str, option: str = "--set model=", explicit: bool = False) -> Base:
    """The base, checked before any work: everything but its weights, which Base.model loads.

    architecture: the architecture's name where the base has none (random weights, a bare weights
    file); option: how the user sets it ("--set model=", "--arch "), for messages. explicit: the user
    named it, so a base of another architecture is an error rather than the base's to decide."""
    if base is None:
        config = _adaptable(backbone_config(architecture, option=option.rstrip("= ")), f"{option}{architecture}")
        return Base(
            None, architecture, config, default_preprocess(architecture, config), InputRef("base", "random-weights", f"random:{architecture}", architecture)
        )
    if base.startswith((HF_HUB, LOCAL_DIR)):
        resolved = _open_clip_folder(base)
    elif is_transformers_clip(Path(base)):
        resolved = _transformers_folder(base)
    elif Path(base).is_dir():
        manifest = require_checkpoint(Path(base), weights_now=True)  # Base.model loads them inside the training run
        model_config, config, preprocess = checkpoint_config(Path(base))
        ref = InputRef("base", manifest.kind, manifest.content_id, base)
        resolved = Base(base, model_config.backbone, config, preprocess, ref, checkpoint_tokenizer_files(Path(base)))
    elif Path(base).suffix in WEIGHT_SUFFIXES:
        resolved = _weights_file(base, architecture, option)
    else:
        resolved = _tag(base)
    named = backbone_config(architecture, option=option.rstrip("= ")) if explicit else None
    if named is not None and not same_shape(named, resolved.architecture):
        kind = "has an architecture of its own" if resolved.backbone == base else f"is a {resolved.backbone}"
        raise FamevilError(f"{option}{architecture}: --base {base} {kind}; drop {option}NAME, the base defines the architecture")
    if named is not None and bool(named.get(QUICK_GELU)) != bool(resolved.architecture.get(QUICK_GELU)):
        warnings.warn(
            f"{option}{architecture} runs {_activation(named)}, but --base {base} was trained with {_activation(resolved.architecture)}: "
            f"famevil runs it with {_activation(resolved.architecture)}",
            FamevilWarning,
            stacklevel=2,
        )
    return resolved


def _activation(architecture: dict) -> str:
    return "QuickGELU" if architecture.get(QUICK_GELU) else "GELU"


def _adaptable(architecture: dict, where: str) -> dict:
    check_adaptable(architecture, where)
    return architecture


def _tag(base: str) -> Base:
    """An open_clip NAME:TAG: NAME's architecture with the tag's activation, and the tag's preprocessing."""
    name, separator, tag = base.partition(":")
    if not separator:
        raise FamevilError(f"--base {base}: not a directory, a .pt/.bin/.safetensors file, an hf-hub:/local-dir: model or an open_clip NAME:TAG")
    config = _adaptable(backbone_config(name, option=f"--base {base}"), f"--base {base}")
    pretrained = open_clip.get_pretrained_cfg(name, tag)
    if not pretrained:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise FamevilError(f"--base {base}: open_clip has no such pretrained tag (for {name}: {tags})")
    config.pop(QUICK_GELU, None)
    if pretrained.get(QUICK_GELU):  # OpenAI's weights (and others) were trained with QuickGELU
        config[QUICK_GELU] = True
    preprocess = Preprocess.from_open_clip(pretrained, config["vision_cfg"]["image_size"], f"--base {base}")
    return Base(base, name, config, preprocess, InputRef("base", "open_clip-tag", f"open_clip:{base}", base))


def _open_clip_folder(base: str) -> Base:
    """hf-hub:ORG/NAME or local-dir:DIR: the architecture and preprocessing of its open_clip_config.json."""
    where = f"--base {base}"
    if base.startswith(HF_HUB):
        try:
            config_file = Path(hf_hub_download(base[len(HF_HUB) :], OPEN_CLIP_CONFIG))
        except Exception as error:  # hub, network and format errors come in many types
            return _transformers_hub(base, error)
        ref, tokenizer_files = InputRef("base", "open_clip-hub", f"open_clip:{base}", base), None
    else:
        folder = Path(base[len(LOCAL_DIR) :])
        config_file, weights = folder / OPEN_CLIP_CONFIG, _folder_weights(folder)
        if not config_file.is_file() and is_transformers_clip(folder):
            raise FamevilError(f"{where}: is a transformers CLIPModel folder, not an open_clip one; pass --base {folder} (without local-dir:)")
        if not config_file.is_file() or weights is None:
            raise FamevilError(f"{where}: not an open_clip folder (it needs {OPEN_CLIP_CONFIG} and open_clip_model.safetensors or open_clip_pytorch_model.bin)")
        ref = InputRef("base", "open_clip-folder", release_fingerprint([config_file, weights]), base)
        tokenizer_files = str(folder)  # open_clip reads a local-dir: model's Hugging Face tokenizer from the folder itself
    config = _open_clip_config(config_file, where)
    architecture, preprocess_cfg = config["model_cfg"], config.get("preprocess_cfg") or {}
    _adaptable(architecture, where)
    preprocess = Preprocess.from_open_clip(preprocess_cfg, architecture["vision_cfg"]["image_size"], where)
    return Base(base, base, architecture, preprocess, ref, tokenizer_files)


def _open_clip_config(path: Path, where: str) -> dict:
    """An open_clip_config.json checked to have the shape open_clip writes (an object whose model_cfg has
    a vision_cfg with an image_size, and a preprocess_cfg object if any): a file of any other shape,
    or not text at all, is one line here rather than a traceback wherever a field is first read."""
    again = "export or download the folder again"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise FamevilError(f"{where}: {path} is not UTF-8 text (byte {error.start}); {again}") from None
    except json.JSONDecodeError as error:
        raise FamevilError(f"{where}: {path}: malformed JSON at line {error.lineno} ({error.msg}); {again}") from None
    model_cfg = config.get("model_cfg") if isinstance(config, dict) else None
    vision_cfg = model_cfg.get("vision_cfg") if isinstance(model_cfg, dict) else None
    if not isinstance(vision_cfg, dict) or "image_size" not in vision_cfg:
        raise FamevilError(f"{where}: {path} has no model_cfg with a vision_cfg; {again}")
    if not isinstance(config.get("preprocess_cfg") or {}, dict):
        raise FamevilError(f"{where}: {path}: its preprocess_cfg is not an object; {again}")
    return config


def _folder_weights(folder: Path) -> Path | None:
    """The weights file open_clip would load from a local-dir: folder (its own choice among several)."""
    found = open_clip.factory._find_checkpoint_in_dir(folder) if folder.is_dir() else None
    return Path(found) if found else None


def _transformers_folder(base: str) -> Base:
    """A local transformers CLIPModel folder, named by the contents of its config, weights and preprocessor config."""
    folder = Path(base)
    weights = weights_file(folder)
    if weights is None:
        raise FamevilError(
            f"--base {base}: a transformers CLIP folder without {' or '.join(WEIGHTS_FILES)} (sharded weights are not read); save or download it again"
        )
    described = [folder / CONFIG_FILE, weights, *[path for path in [folder / PREPROCESSOR_CONFIG] if path.is_file()]]
    return _transformers_base(base, folder, InputRef("base", TRANSFORMERS_FOLDER, release_fingerprint(described), base))


def _transformers_hub(base: str, open_clip_error: Exception) -> Base:
    """hf-hub:ORG/NAME without an open_clip_config.json: a transformers CLIPModel repository where its
    config.json says so; else the Hub (or the cache) failed, as open_clip_error says."""
    try:
        folder = Path(hf_hub_download(base[len(HF_HUB) :], CONFIG_FILE)).parent  # the snapshot the repository's files land in
    except Exception:  # hub and network errors come in many types
        raise _unreachable(base, open_clip_error) from None
    if not is_transformers_clip(folder):
        raise FamevilError(
            f"--base {base}: has no {OPEN_CLIP_CONFIG}, and its {CONFIG_FILE} is not a transformers CLIPModel's; famevil reads only those two kinds"
        )
    _hub_file(base, (PREPROCESSOR_CONFIG,))  # into the snapshot, where there is one
    return _transformers_base(base, folder, InputRef("base", TRANSFORMERS_HUB, f"transformers:{base}", base))


def _transformers_base(base: str, folder: Path, ref: InputRef) -> Base:
    architecture, preprocess = read_clip_folder(folder, f"--base {base}")
    return Base(base, base, architecture, preprocess, ref)


def _hub_file(base: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of filenames the Hub repository has, fetched; None where it has none of them, as the Hub
    says, or the cache's record of what it said. A file neither fetched nor known to be absent is an
    error, not an absence: offline, a preprocessing left out of the cache must not become OpenAI's."""
    repository, unreachable = base[len(HF_HUB) :], None
    for filename in filenames:
        try:
            return Path(hf_hub_download(repository, filename))
        except EntryNotFoundError as error:
            if isinstance(error, LocalEntryNotFoundError) and try_to_load_from_cache(repository, filename) is not _CACHED_NO_EXIST:
                unreachable = unreachable or error
        except Exception as error:  # hub and network errors come in many types
            raise _unreachable(base, error) from None
    if unreachable is not None:
        raise _unreachable(base, unreachable)
    return None


def _weights_file(base: str, architecture: str, option: str) -> Base:
    """A bare weights file: the architecture and preprocessing are those of the architecture it is named with."""
    path = Path(base)
    if not path.is_file():
        raise FamevilError(f"--base {base}: no such weights file")
    config = _adaptable(backbone_config(architecture, option=option.rstrip("= ")), f"{option}{architecture}")
    known = _released_as(path)
    if known is not None and bool(known[1].get(QUICK_GELU)) != bool(config.get(QUICK_GELU)):
        name, pretrained = known
        warnings.warn(
            f"--base {base}: these are open_clip's {name} weights, trained with {_activation(pretrained)}, but {architecture} runs "
            f"{_activation(config)}; pass {option}{_paired_architecture(architecture, pretrained)}",
            FamevilWarning,
            stacklevel=3,
        )
    return Base(base, architecture, config, default_preprocess(architecture, config), InputRef("base", "open_clip-file", release_fingerprint([path]), base))


def _released_as(path: Path) -> tuple[str, dict] | None:
    """The open_clip NAME:TAG (and its pretrained config) whose released weights this file is, as far as
    its place in the Hugging Face cache tells: a file under models--ORG--REPO of a tag's repository."""
    repositories = {part[len("models--") :].replace("--", "/") for part in path.absolute().parts if part.startswith("models--")}
    for name, tag in open_clip.list_pretrained() if repositories else ():
        pretrained = open_clip.get_pretrained_cfg(name, tag)
        if "/".join(pretrained.get("hf_hub", "").split("/")[:2]) in repositories:
            return f"{name}:{tag}", pretrained
    return None


def _paired_architecture(architecture: str, pretrained: dict) -> str:
    """The name of the architecture's variant with the activation the weights were trained with."""
    plain = architecture.removesuffix("-quickgelu")
    wanted = f"{plain}-quickgelu" if pretrained.get(QUICK_GELU) else plain
    return wanted if architecture_config(wanted) is not None else plain


def _unreachable(base: str, error: Exception) -> FamevilError:
    return FamevilError(
        f"--base {base}: could not fetch it ({type(error).__name__}); this needs the internet or open_clip's local cache (HF_HOME); "
        "or pass a local weights file with --set model=ARCHITECTURE"
    )


def _weights(base: str, kind: str) -> dict:
    """The backbone's weights of a resolved base (kind: its InputRef's), fetched through open_clip's download
    and cache where they are remote, a transformers model's through huggingface_hub's."""
    if kind in (TRANSFORMERS_FOLDER, TRANSFORMERS_HUB):
        weights = weights_file(Path(base)) if kind == TRANSFORMERS_FOLDER else _hub_file(base, WEIGHTS_FILES)
        if weights is None:
            raise FamevilError(f"--base {base}: has neither {' nor '.join(WEIGHTS_FILES)} (sharded weights are not read)")
        return open_clip_state_dict(weights)
    if base.startswith(LOCAL_DIR):
        return read_state_dict(_folder_weights(Path(base[len(LOCAL_DIR) :])))
    if Path(base).is_dir():
        return load_checkpoint(Path(base)).backbone.state_dict()
    if Path(base).suffix in WEIGHT_SUFFIXES:
        return read_state_dict(Path(base))
    try:
        if base.startswith(HF_HUB):
            path = open_clip.pretrained.download_pretrained_from_hf(base[len(HF_HUB) :])
        else:
            path = open_clip.download_pretrained(open_clip.get_pretrained_cfg(*base.split(":", 1)))
    except Exception as error:  # hub and network errors come in many types
        raise _unreachable(base, error) from None
    return read_state_dict(Path(path))
