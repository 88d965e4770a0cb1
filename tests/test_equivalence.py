"""The equivalence contract: at zero adapters famevil's towers compute what open_clip's own
create_model_and_transforms builds from the same base, on the same pixels and tokens, and famevil feeds
the network the pixels the base's preprocessing makes, in the paper's geometry.

Four routes, offline: an OpenAI tag (QuickGELU), a LAION tag (GELU), an hf-hub: model and a local-dir:
folder. Their random weights lie where open_clip looks (this suite's own HF_HOME, see conftest.py), with
every MLP's pre-activations shifted to where GELU and QuickGELU part, so that the wrong activation shows
(a trained network's MLPs work there; a random one's barely reach it)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms as T

import famevil
from data_specs.errors import FamevilError, FamevilWarning
from famevil.bases import resolve_base
from famevil.checkpoint import load_checkpoint
from famevil.data.transforms import OPEN_CLIP_KEYS, image_transform
from famevil.model.backbone import create_backbone
from famevil.multitask import ModelConfig
from stages.export import export
from stages.teach import teach
from tests.conftest import TINY

EQUAL = 0.99999  # the contract: cosine of famevil's and open_clip's embeddings of the same input
TEXTS = ["navy wool cardigan with ribbed cuffs", "Red Silk Dress. A long-sleeved dress in red silk, 100% silk."]
# A Hub model and a folder of small, distinct architectures and preprocessings (SigLIP's 0.5 mean and
# std, a bilinear resize, other image sizes), so that nothing passes by matching famevil's defaults.
HUB_MODEL = "famevil-tests/tiny-quickgelu-clip"
HUB_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 48, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear", "resize_mode": "squash"},
}
FOLDER_CONFIG = {
    "model_cfg": {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 40, "layers": 3, "width": 48, "head_width": 24, "patch_size": 8},
        "text_cfg": {"context_length": 64, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 3},
    },
    "preprocess_cfg": {"mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3], "interpolation": "bicubic"},
}


def random_weights(architecture: str | dict, seed: int) -> dict[str, torch.Tensor]:
    """Random open_clip weights of an architecture, each MLP's pre-activations shifted by -2 and its output
    doubled: there GELU and QuickGELU differ by about 0.02 a unit, so the embeddings part (cosine near 0.95)."""
    torch.manual_seed(seed)
    config = open_clip.get_model_config(architecture) if isinstance(architecture, str) else architecture
    model = open_clip.model.CLIP(**config)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("mlp.c_fc.bias"):
            tensor = tensor - 2.0
        elif name.endswith("mlp.c_proj.weight"):
            tensor = tensor * 8.0
        state[name] = tensor.contiguous()
    return state


def hub_file(repository: str, filename: str) -> Path:
    """Where huggingface_hub's cache keeps a repository's file at its main revision (HF_HOME/hub)."""
    root = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repository.replace('/', '--')}"
    commit = "0" * 40
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    path = root / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def tag_repository(name: str, tag: str) -> str:
    return "/".join(open_clip.get_pretrained_cfg(name, tag)["hf_hub"].split("/")[:2])


# route -> (the --base famevil takes, open_clip's create_model_and_transforms arguments)
ROUTES = {
    "openai tag": ("ViT-B-16:openai", {"model_name": "ViT-B-16", "pretrained": "openai", "force_quick_gelu": True}),
    "laion tag": ("ViT-B-32:laion2b_s34b_b79k", {"model_name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}),
    "hf-hub": (f"hf-hub:{HUB_MODEL}", {"model_name": f"hf-hub:{HUB_MODEL}"}),
    "local-dir": (None, None),  # the folder's path is the fixture's
}


@pytest.fixture(scope="session")
def bases(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """Each route's random weights placed where open_clip finds them offline: the two tags in the Hub
    cache under their repositories (as open_clip_model.safetensors, which open_clip looks for first), the
    Hub model with its open_clip_config.json, the folder with open_clip's other weights name."""
    save_file(random_weights("ViT-B-16", 1), hub_file(tag_repository("ViT-B-16", "openai"), "open_clip_model.safetensors"))
    save_file(random_weights("ViT-B-32", 2), hub_file(tag_repository("ViT-B-32", "laion2b_s34b_b79k"), "open_clip_model.safetensors"))
    hub_file(HUB_MODEL, "open_clip_config.json").write_text(json.dumps(HUB_CONFIG))
    save_file(random_weights(HUB_CONFIG["model_cfg"], 3), hub_file(HUB_MODEL, "open_clip_model.safetensors"))
    folder = tmp_path_factory.mktemp("open-clip-folder")
    (folder / "open_clip_config.json").write_text(json.dumps(FOLDER_CONFIG))
    torch.save(random_weights(FOLDER_CONFIG["model_cfg"], 4), folder / "open_clip_pytorch_model.bin")
    return ROUTES | {"local-dir": (f"local-dir:{folder}", {"model_name": f"local-dir:{folder}"})}


def _famevil(base: str):
    backbone = resolve_base(base, "ViT-B-16")
    return backbone.model(ModelConfig(backbone=backbone.backbone, tasks=("xmr",))).eval()


def _open_clip(arguments: dict):
    model, _, preprocess = open_clip.create_model_and_transforms(**arguments)
    return model.eval(), preprocess


def _inputs(model, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(2, 3, model.preprocess.size, model.preprocess.size)


def _cosines(ours, theirs, pixels: torch.Tensor, tokens: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        image = F.cosine_similarity(ours.encode_image(pixels, "xmr"), theirs.encode_image(pixels, normalize=True)).min().item()
        text = F.cosine_similarity(ours.encode_text(tokens, "xmr"), theirs.encode_text(tokens, normalize=True)).min().item()
    return image, text


@pytest.mark.slow  # ViT-B-16 and ViT-B-32 at full size, twice each
@pytest.mark.parametrize("route", list(ROUTES))
def test_famevil_computes_what_open_clip_builds_from_the_same_base(bases, route):
    base, arguments = bases[route]
    ours = _famevil(base)
    theirs, _ = _open_clip(arguments)
    tokens = open_clip.get_tokenizer(arguments["model_name"])(TEXTS)
    assert torch.equal(ours.tokenizer()(TEXTS), tokens)  # the base's tokenizer, its context length included
    image, text = _cosines(ours, theirs, _inputs(ours), tokens)
    print(f"{route}: image cosine {image:.7f}, text cosine {text:.7f}")  # the figures the closing note quotes (pytest -s)
    assert image >= EQUAL and text >= EQUAL, (image, text)


@pytest.mark.slow
@pytest.mark.parametrize(("route", "forced"), [("openai tag", False), ("laion tag", True), ("hf-hub", False)])
def test_the_wrong_activation_would_fail_the_contract(bases, route, forced):
    """The test above can fail: open_clip's model of the same weights with the other activation parts from famevil's."""
    base, arguments = bases[route]
    ours = _famevil(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # open_clip warns about the mismatch this test makes on purpose
        if route == "hf-hub":  # a folder's activation is its model_cfg's: drop it
            folder_config = HUB_CONFIG["model_cfg"] | {"quick_gelu": False}
            theirs = open_clip.model.CLIP(**folder_config).eval()
            theirs.load_state_dict(ours.backbone.state_dict())
        else:
            theirs, _ = _open_clip(arguments | {"force_quick_gelu": forced})
    tokens = open_clip.get_tokenizer(arguments["model_name"])(TEXTS)
    image, text = _cosines(ours, theirs, _inputs(ours), tokens)
    assert image < 0.999 and text < 0.999, (image, text)


def _photo(width: int = 300, height: int = 260) -> Image.Image:
    """A tall-ish product photo stand-in with edges and texture, where resampling filters differ."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x * 3) % 256, (y * 5) % 256, ((x + y) * 2) % 256], axis=-1) + rng.integers(0, 40, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def reference_transform(preprocess_cfg: dict, interpolation: str | None = None) -> T.Compose:
    """The authors' evaluation geometry (squash to a square of 256/224 of the input, centre crop) in a
    base's preprocessing, with torchvision's classic PIL transforms, as open_clip's own transform runs them."""
    size = preprocess_cfg["size"] if isinstance(preprocess_cfg["size"], int) else preprocess_cfg["size"][0]
    mode = T.InterpolationMode.BICUBIC if (interpolation or preprocess_cfg["interpolation"]) == "bicubic" else T.InterpolationMode.BILINEAR
    fitted = round(size * 256 / 224)
    return T.Compose(
        [T.Resize((fitted, fitted), interpolation=mode), T.CenterCrop(size), T.ToTensor(), T.Normalize(preprocess_cfg["mean"], preprocess_cfg["std"])]
    )


@pytest.mark.slow
@pytest.mark.parametrize("route", list(ROUTES))
def test_famevil_feeds_the_pixels_of_the_bases_preprocessing(bases, route):
    base, arguments = bases[route]
    ours = _famevil(base)
    theirs, _ = _open_clip(arguments)
    settled = theirs.visual.preprocess_cfg  # open_clip's own reading of the base: tag, Hub or folder config
    size = settled["size"] if isinstance(settled["size"], int) else settled["size"][0]
    recorded = ours.preprocess.open_clip_dict()
    assert recorded == {key: list(v) if isinstance(v, tuple) else v for key, v in settled.items() if key in OPEN_CLIP_KEYS} | {"size": size}
    photo = _photo()
    fed = image_transform(ours.preprocess, train=False)(photo)
    assert torch.allclose(fed, reference_transform(settled)(photo), atol=1e-6, rtol=0)
    other = "bilinear" if settled["interpolation"] == "bicubic" else "bicubic"
    assert (fed - reference_transform(settled, other)(photo)).abs().max() > 0.05  # the other filter would fail the check above


@pytest.mark.slow
def test_a_teacher_from_a_hub_base_keeps_its_preprocessing_through_load_and_export(bases, tiny_shards, tmp_path):
    base = bases["hf-hub"][0]
    teacher = teach("xmr", tiny_shards, tmp_path / "teacher", base=base, overrides={k: v for k, v in TINY.items() if k != "model"} | {"max_steps": 2})
    written = json.loads((teacher.out / "config.json").read_text())
    assert written["open_clip"]["quick_gelu"] is True and written["open_clip"] == HUB_CONFIG["model_cfg"]
    assert {key: written["preprocess"][key] for key in ("size", "mean", "std", "interpolation", "resize_mode")} == {
        "size": 48,
        **{key: HUB_CONFIG["preprocess_cfg"][key] for key in ("mean", "std", "interpolation", "resize_mode")},
    }
    assert json.loads((teacher.out / "train_config.json").read_text())["model"] == base  # the base named the architecture
    loaded = famevil.load(teacher.out)
    photo = _photo()
    assert torch.equal(loaded.transform(photo), image_transform(resolve_base(base, "ViT-B-16").preprocess, train=False)(photo))
    folder = export(teacher.out, tmp_path / "export", form="open_clip").out
    assert json.loads((folder / "open_clip_config.json").read_text())["preprocess_cfg"] == load_checkpoint(teacher.out).preprocess.open_clip_dict()
    clip, _, _ = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    assert clip.visual.preprocess_cfg["mean"] == [0.5, 0.5, 0.5] and clip.visual.preprocess_cfg["interpolation"] == "bilinear"


def test_a_known_tags_weights_under_the_wrong_activation_are_warned_about(bases, tmp_path):
    weights = hub_file(tag_repository("ViT-B-16", "openai"), "open_clip_model.safetensors")
    with pytest.warns(
        FamevilWarning, match=r"open_clip's ViT-B-16:openai weights, trained with QuickGELU, but ViT-B-16 runs GELU; pass --set model=ViT-B-16-quickgelu"
    ):
        plain = resolve_base(str(weights), "ViT-B-16")
    assert "quick_gelu" not in plain.architecture  # a bare file runs the architecture it is named with
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paired = resolve_base(str(weights), "ViT-B-16-quickgelu")
    assert paired.architecture["quick_gelu"] is True and paired.preprocess.interpolation == "bicubic"
    with pytest.warns(FamevilWarning, match=r"--set model=ViT-B-16 runs GELU, but --base ViT-B-16:openai was trained with QuickGELU"):
        resolve_base("ViT-B-16:openai", "ViT-B-16", explicit=True)


def test_a_base_famevil_cannot_adapt_is_one_line_naming_what_is_missing(tmp_path):
    folder = tmp_path / "unadaptable"
    folder.mkdir()
    (folder / "open_clip_model.safetensors").write_bytes(b"")
    expected = {
        "coca_ViT-B-32:laion2b_s13b_b90k": "a captioning \\(CoCa\\) model",
        "RN50:openai": "a ResNet image tower",
    }
    for base, missing in expected.items():
        with pytest.raises(FamevilError, match=f"--base {base}: famevil cannot adapt {missing}") as refusal:
            resolve_base(base, "ViT-B-16")
        assert "\n" not in str(refusal.value)
    custom = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8}, "text_cfg": {"layers": 1, "width": 32, "heads": 2}}
    for change, missing in [
        ({"vision_cfg": {"image_size": 32, "timm_model_name": "famevil_vit_tiny_map", "timm_pool": "abs_attn"}}, "attention pool"),
        ({"text_cfg": custom["text_cfg"] | {"hf_model_name": "org/bert"}}, r"a Hugging Face text model \(org/bert\)"),
        ({"text_cfg": custom["text_cfg"] | {"embed_cls": True}}, "appended class token"),
        ({"text_cfg": custom["text_cfg"] | {"pool_type": "none"}}, "without a pooled vector"),
        ({"vision_cfg": custom["vision_cfg"] | {"qk_norm": True}}, r"open_clip's custom attention blocks \(image qk_norm\)"),
    ]:
        (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": custom | change}))
        with pytest.raises(FamevilError, match=missing):
            resolve_base(f"local-dir:{folder}", "ViT-B-16")


def test_timm_blocks_famevil_cannot_split_are_refused_when_built():
    """A trunk of timm blocks other than Block and ResPostBlock (here relative-position attention) is
    refused by name once built, before any work."""
    with torch.device("meta"), pytest.raises(FamevilError, match="famevil adapts timm's VisionTransformer trunks, not a VisionTransformerRelPos"):
        create_backbone("vit_relpos_medium_patch16_cls_224")
