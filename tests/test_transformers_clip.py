"""FashionCLIP 2.0 and other transformers CLIPModel weights as a base: famevil reads the folder (or the Hub
repository) without transformers, and at zero adapters its towers compute what transformers' own
CLIPModel does, on the same pixels and tokens, fed the pixels transformers' image processor makes.

Tiny random CLIPModels stand in, written by save_pretrained (and, as older transformers did, as a
pytorch_model.bin with position_ids buffers), their MLPs' pre-activations shifted as
tests/test_equivalence.py's are, so that the wrong activation shows."""

from __future__ import annotations

import ast
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import famevil
from data_specs.errors import FamevilError
from famevil.bases import resolve_base
from famevil.data.transforms import CLIP_MEAN, CLIP_STD, image_transform
from famevil.model.backbone import QUICK_GELU
from famevil.model.transformers_clip import is_transformers_clip, read_clip_folder
from famevil.multitask import ModelConfig
from stages.evaluate import evaluate
from stages.teach import teach
from tests.conftest import TINY
from tests.test_equivalence import EQUAL, TEXTS, _inputs, _photo, hub_file
from tests.test_layout import MODULES

transformers = pytest.importorskip("transformers")

HUB_MODEL = "famevil-tests/tiny-transformers-clip"
# FashionCLIP 2.0's shape (ViT-B/32: QuickGELU, OpenAI's vocabulary and context), at famevil-tiny's size.
CLIP_CONFIG = {
    "projection_dim": 32,
    "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    "text_config": {"hidden_size": 48, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 49408},
}
# A processor other than famevil's defaults, so that nothing passes by matching them.
PROCESSOR = {"image_mean": [0.4, 0.45, 0.5], "image_std": [0.2, 0.25, 0.3], "resample": 3, "size": {"shortest_edge": 32}, "crop_size": 32}


def random_clip(activation: str, seed: int):
    """A random transformers CLIPModel of CLIP_CONFIG's shape, each MLP's pre-activations shifted by -2
    and its output scaled up, as tests/test_equivalence.py's random_weights does for open_clip's."""
    torch.manual_seed(seed)
    towers = {tower: CLIP_CONFIG[tower] | {"hidden_act": activation} for tower in ("vision_config", "text_config")}
    model = transformers.CLIPModel(transformers.CLIPConfig(projection_dim=CLIP_CONFIG["projection_dim"], **towers)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("mlp.fc1.bias"):
                parameter -= 2.0
            elif name.endswith("mlp.fc2.weight"):
                parameter *= 8.0
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """route -> (folder, the transformers model it holds). FashionCLIP's: QuickGELU, model.safetensors and
    a preprocessor_config.json. An older save: GELU, pytorch_model.bin with the position_ids buffers
    transformers kept before 4.31, and no preprocessor config."""
    fashion_clip, older = random_clip("quick_gelu", 0), random_clip("gelu", 1)
    folder = tmp_path_factory.mktemp("fashion-clip")
    fashion_clip.save_pretrained(folder)
    transformers.CLIPImageProcessor(**PROCESSOR).save_pretrained(folder)
    bin_folder = tmp_path_factory.mktemp("older-clip")
    older.config.save_pretrained(bin_folder)
    positions = {"text_model.embeddings.position_ids": torch.arange(77)[None], "vision_model.embeddings.position_ids": torch.arange(17)[None]}
    torch.save(older.state_dict() | positions, bin_folder / "pytorch_model.bin")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):  # the Hub repository: FashionCLIP's files
        shutil.copy(folder / name, hub_file(HUB_MODEL, name))
    return {"safetensors, quick_gelu": (folder, fashion_clip), "bin, gelu": (bin_folder, older), "hf-hub": (f"hf-hub:{HUB_MODEL}", fashion_clip)}


def _famevil(base: str, architecture: dict | None = None):
    resolved = resolve_base(str(base), "famevil-tiny")
    resolved = replace(resolved, architecture=architecture) if architecture else resolved
    return resolved.model(ModelConfig(backbone=resolved.backbone, tasks=("xmr",))).eval()


def _cosines(ours, theirs) -> tuple[float, float]:
    """famevil's XMR embeddings against transformers' features, on the same random pixels and open_clip's tokens."""
    pixels, tokens = _inputs(ours), ours.tokenizer()(TEXTS)
    features = lambda output: output if isinstance(output, torch.Tensor) else output.pooler_output  # noqa: E731 - transformers 5 returns the model output
    with torch.no_grad():
        image = F.cosine_similarity(ours.encode_image(pixels, "xmr"), features(theirs.get_image_features(pixel_values=pixels))).min().item()
        text = F.cosine_similarity(ours.encode_text(tokens, "xmr"), features(theirs.get_text_features(input_ids=tokens))).min().item()
    return image, text


@pytest.mark.parametrize("route", ["safetensors, quick_gelu", "bin, gelu", "hf-hub"])
def test_famevil_computes_what_transformers_clipmodel_computes(folders, route):
    base, theirs = folders[route]
    ours = _famevil(base)
    assert bool(ours.backbone_config.get(QUICK_GELU)) == (theirs.config.vision_config.hidden_act == "quick_gelu")
    assert torch.equal(ours.backbone.logit_scale, theirs.logit_scale)
    image, text = _cosines(ours, theirs)
    print(f"{route}: image cosine {image:.7f}, text cosine {text:.7f}")  # the figures the closing note quotes (pytest -s)
    assert image >= EQUAL and text >= EQUAL, (image, text)


@pytest.mark.parametrize("route", ["safetensors, quick_gelu", "bin, gelu"])
def test_the_wrong_activation_would_fail_the_contract(folders, route):
    base, theirs = folders[route]
    architecture = resolve_base(str(base), "famevil-tiny").architecture
    flipped = {key: value for key, value in architecture.items() if key != QUICK_GELU} | ({} if architecture.get(QUICK_GELU) else {QUICK_GELU: True})
    image, text = _cosines(_famevil(base, flipped), theirs)
    print(f"{route} under the other activation: image cosine {image:.7f}, text cosine {text:.7f}")
    assert image < 0.999 and text < 0.999, (image, text)


def test_famevil_feeds_the_pixels_of_transformers_image_processor(folders):
    """The folder's mean, std and filter, in the authors' geometry (squash to 256/224 of the input, centre
    crop), against CLIPImageProcessor told the same geometry: the resize's arithmetic is all that differs."""
    folder = folders["safetensors, quick_gelu"][0]
    preprocess = resolve_base(str(folder), "famevil-tiny").preprocess
    assert (preprocess.size, preprocess.mean, preprocess.std, preprocess.interpolation) == (32, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3), "bicubic")
    assert preprocess.resize_mode == "shortest"  # as open_clip's transform of the same processor would export it
    photo, fitted = _photo(), round(32 * 256 / 224)
    fed = image_transform(preprocess, train=False)(photo)
    one_level = 1 / 255 / min(preprocess.std)  # one step of an 8-bit pixel, normalised
    pil = getattr(transformers, "CLIPImageProcessorPil", None)  # transformers 5's PIL backend, which 4's CLIPImageProcessor was
    processors = [transformers.CLIPImageProcessor, *([pil] if pil else [])]
    for processor in processors:
        theirs = processor.from_pretrained(folder)(
            images=photo, size={"height": fitted, "width": fitted}, crop_size={"height": 32, "width": 32}, return_tensors="pt"
        )
        difference = (fed - theirs["pixel_values"][0]).abs()
        apart = (difference > 1e-5).float().mean().item()
        print(
            f"{processor.__name__}: max abs difference {difference.max():.6f} ({difference.max() / one_level:.2f} of a pixel level), {apart:.2%} of values apart"
        )
        assert difference.max() <= one_level + 1e-5 and apart < 0.02, (
            processor.__name__,
            difference.max(),
            apart,
        )  # a torch resize rounds otherwise than PIL's
    older = resolve_base(str(folders["bin, gelu"][0]), "famevil-tiny").preprocess  # no preprocessor_config.json: OpenAI's, as CLIPImageProcessor's defaults
    assert (older.mean, older.std, older.interpolation) == (CLIP_MEAN, CLIP_STD, "bicubic")


def test_a_hub_repository_is_named_by_its_base(folders):
    hub, folder = resolve_base(folders["hf-hub"][0], "famevil-tiny"), resolve_base(str(folders["safetensors, quick_gelu"][0]), "famevil-tiny")
    assert (hub.backbone, hub.ref.kind, hub.ref.id) == (f"hf-hub:{HUB_MODEL}", "transformers-clip-hub", f"transformers:hf-hub:{HUB_MODEL}")
    assert folder.ref.kind == "transformers-clip-folder" and (hub.architecture, hub.preprocess) == (folder.architecture, folder.preprocess)


def test_a_config_settles_as_transformers_settles_it(tmp_path):
    """What a config.json leaves out is transformers' default (OpenAI's ViT-B/32), and an older
    text_config_dict overrides text_config, as CLIPConfig has it."""
    config = {"model_type": "clip", "text_config": {"hidden_size": 64, "num_hidden_layers": 6}, "text_config_dict": {"hidden_size": 48}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    architecture, _ = read_clip_folder(tmp_path, "a test")
    assert architecture[QUICK_GELU] is True and architecture["embed_dim"] == 512
    assert (architecture["text_cfg"]["width"], architecture["text_cfg"]["layers"], architecture["text_cfg"]["mlp_ratio"]) == (48, 6, 2048 / 48)
    assert architecture["vision_cfg"] == {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "head_width": 64, "mlp_ratio": 4.0}


def test_a_hub_repository_of_another_model_is_refused_in_one_line():
    hub_file("famevil-tests/tiny-hf-siglip", "config.json").write_text(json.dumps({"model_type": "siglip", "architectures": ["SiglipModel"]}))
    with pytest.raises(
        FamevilError, match=r"hf-hub:famevil-tests/tiny-hf-siglip: has no open_clip_config.json, and its config.json is not a transformers CLIPModel's"
    ):
        resolve_base("hf-hub:famevil-tests/tiny-hf-siglip", "famevil-tiny")


@pytest.mark.parametrize(
    ("tower", "field", "value"),
    [("vision_config", "hidden_act", "gelu_new"), ("text_config", "layer_norm_eps", 1e-6), ("text_config", "vocab_size", 250002)],
)
def test_a_field_open_clips_towers_cannot_run_is_refused_in_one_line(folders, tmp_path, tower, field, value):
    config = json.loads((folders["safetensors, quick_gelu"][0] / "config.json").read_text())
    config[tower][field] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")  # never read: the config is refused first
    with pytest.raises(FamevilError, match=f"config.json {tower}.{field} is {value!r}, which famevil cannot run") as refusal:
        resolve_base(str(tmp_path), "famevil-tiny")
    assert "\n" not in str(refusal.value)


@pytest.mark.slow
def test_a_teacher_from_a_transformers_folder_trains_and_loads(folders, tiny_shards, tmp_path):
    folder = folders["safetensors, quick_gelu"][0]
    base = resolve_base(str(folder), "famevil-tiny")
    teacher = teach("xmr", tiny_shards, tmp_path / "teacher", base=str(folder), overrides={k: v for k, v in TINY.items() if k != "model"} | {"max_steps": 2})
    written = json.loads((teacher.out / "config.json").read_text())
    assert written["open_clip"] == base.architecture and written["preprocess"]["mean"] == PROCESSOR["image_mean"]
    assert json.loads((teacher.out / "train_config.json").read_text())["model"] == str(folder)  # the base named the architecture
    assert json.loads((teacher.out / "manifest.json").read_text())["inputs"][0]["kind"] == "transformers-clip-folder"
    assert not is_transformers_clip(teacher.out)  # a famevil checkpoint's config.json sits beside its manifest
    photo = _photo()
    assert torch.equal(famevil.load(teacher.out).transform(photo), image_transform(base.preprocess, train=False)(photo))


def test_an_evaluation_runs_on_a_transformers_folder(folders, tiny_shards, tmp_path):
    folder = folders["safetensors, quick_gelu"][0]
    result = evaluate(tmp_path / "eval", tiny_shards, base=str(folder), tasks=["xmr"], batch_size=16, random100_runs=1)
    assert result.manifest.inputs[0].kind == "transformers-clip-folder" and result.metrics


def test_no_module_of_famevil_imports_transformers():
    """transformers is a test dependency only: famevil renames the weights itself (open_clip may still
    import transformers where it is installed, for towers famevil does not adapt)."""
    importing = {module for module, path in MODULES.items() for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if _imports_transformers(node)}
    assert not importing, sorted(importing)


def _imports_transformers(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and not node.level:
        names = [node.module or ""]
    else:
        return False
    return any(name.split(".")[0] == "transformers" for name in names)
