"""The other backbones, offline: timm image trunks (SigLIP's attention-pool layout, layer scale, post-norm
blocks), a custom bidirectional text tower with a Hugging Face tokenizer, towers of different depths, and
(for the whole pipeline) a transformers CLIPModel folder, whose equivalence tests/test_transformers_clip.py holds.

Each is a tiny random model written as open_clip writes one (a local-dir: folder, or the Hub's cache for
hf-hub:). The contract: at zero adapters famevil computes what open_clip's own create_model_and_transforms
builds from the same folder, to cosine 0.99999 on the same pixels and tokens; then every task trains on
it, and a model on it captions, indexes and searches."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

import famevil
from data_specs.errors import FamevilError
from data_specs.shards import Shards
from famevil.bases import resolve_base
from famevil.data.loading import records
from famevil.model import towers
from famevil.model.backbone import create_backbone
from famevil.multitask import ModelConfig
from famevil.params import count_parameters
from famevil.serving import SearchSession
from famevil.tasks.product_text import product_text
from stages.distill import distill
from stages.dump import dump
from stages.export import export
from stages.index import index
from stages.teach import teach
from tests.conftest import TASK_NAMES, TINY
from tests.test_equivalence import EQUAL, TEXTS, hub_file
from tests.test_transformers_clip import random_clip

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 2}  # CLIP's own causal text tower
SIGLIP_TEXT = {  # SigLIP's: bidirectional, pooled at the last position, a projection with a bias, a Hugging Face tokenizer
    "context_length": 24,
    "hf_tokenizer_name": "famevil-tests/tiny-siglip",
    "width": 48,
    "heads": 2,
    "layers": 2,
    "no_causal_mask": True,
    "proj_bias": True,
    "pool_type": "last",
    "norm_kwargs": {"eps": 1e-6},
}
# name -> (open_clip model_cfg, preprocess_cfg). Depths: the trunks have 3 blocks, the text towers 2.
ARCHITECTURES = {
    "timm-layerscale": (
        {"embed_dim": 32, "vision_cfg": {"image_size": 32, "timm_model_name": "famevil_vit_tiny_ls", "timm_proj": "linear"}, "text_cfg": TEXT},
        {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]},
    ),
    "timm-postnorm": (
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "timm_model_name": "famevil_vit_tiny_post", "timm_proj": "linear"},
            "text_cfg": TEXT | {"layers": 3},
        },
        {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28], "interpolation": "bilinear"},
    ),
    "siglip": (
        {
            "embed_dim": 64,
            "init_logit_bias": -10,
            "custom_text": True,
            "vision_cfg": {"image_size": 32, "timm_model_name": "famevil_vit_tiny_map", "timm_pool": "map", "timm_proj": "none"},
            "text_cfg": SIGLIP_TEXT,
        },
        {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic"},
    ),
}


def siglip_like_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer trained here, as SigLIP's stands: no start token, the end token
    "</s>" after every text, and padding with that same id."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "</s>"]))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="</s>", unk_token="<unk>")


def write_model(folder: Path, name: str, tokenizer: PreTrainedTokenizerFast, seed: int) -> Path:
    """An open_clip folder (or Hub snapshot) of random weights of one of ARCHITECTURES."""
    architecture, preprocess = ARCHITECTURES[name]
    architecture = json.loads(json.dumps(architecture))
    if architecture["text_cfg"].get("hf_tokenizer_name"):
        architecture["text_cfg"]["vocab_size"] = len(tokenizer)
        tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    weights = {key: value.contiguous() for key, value in create_backbone(name, architecture).state_dict().items()}
    save_file(weights, folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": architecture, "preprocess_cfg": preprocess}))
    return folder


@pytest.fixture(scope="session")
def product_texts(tiny_shards) -> list[str]:
    return [product_text(record) for record in records(Shards.open(tiny_shards), "fashiongen/train")]


@pytest.fixture(scope="session")
def folders(tmp_path_factory, product_texts) -> dict[str, str]:
    """--base of each architecture: local-dir: folders, and the SigLIP-like one also on the (faked) Hub."""
    tokenizer = siglip_like_tokenizer(product_texts + TEXTS)
    root = tmp_path_factory.mktemp("backbones")
    bases = {}
    for seed, name in enumerate(ARCHITECTURES):
        (root / name).mkdir()
        bases[name] = f"local-dir:{write_model(root / name, name, tokenizer, seed)}"
    snapshot = hub_file("famevil-tests/tiny-siglip", "open_clip_config.json").parent
    write_model(snapshot, "siglip", tokenizer, seed=7)
    # The Hub's cache remembers the files a repository lacks; offline, transformers asks for a model config.json.
    missing = snapshot.parent.parent / ".no_exist" / snapshot.name / "config.json"
    missing.parent.mkdir(parents=True)
    missing.touch()
    bases["siglip hub"] = "hf-hub:famevil-tests/tiny-siglip"
    random_clip("quick_gelu", seed=3).save_pretrained(root / "transformers")  # FashionCLIP 2.0's format
    bases["transformers"] = str(root / "transformers")
    return bases


def _inputs(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _cosines(base: str, causal: bool | None = None) -> tuple[float, float]:
    """famevil's embeddings against open_clip's of the same base, on the same pixels and tokens."""
    ours = resolve_base(base, "famevil-tiny").model(ModelConfig(backbone="x", tasks=("xmr", "fic"))).eval()
    theirs, _, _ = open_clip.create_model_and_transforms(base)
    theirs.eval()
    tokens = open_clip.get_tokenizer(base)(TEXTS)
    assert torch.equal(ours.tokenizer()(TEXTS), tokens)  # the base's tokenizer, its context length included
    if causal is not None:  # the wrong mask, to show the check would catch it
        ours.text_causal = causal
    with torch.no_grad():
        image = F.cosine_similarity(ours.encode_image(_inputs(), "xmr"), theirs.encode_image(_inputs(), normalize=True)).min().item()
        text = F.cosine_similarity(ours.encode_text(tokens, "xmr"), theirs.encode_text(tokens, normalize=True)).min().item()
    return image, text


@pytest.mark.parametrize("route", ["timm-layerscale", "timm-postnorm", "siglip", "siglip hub"])
def test_famevil_computes_what_open_clip_builds_from_the_same_base(folders, route):
    image, text = _cosines(folders[route])
    assert image >= EQUAL and text >= EQUAL, (image, text)


def test_a_causal_mask_on_a_bidirectional_tower_would_fail_the_contract(folders):
    _, text = _cosines(folders["siglip"], causal=True)
    assert text < 0.999


def test_the_siglip_tokenizer_pads_with_its_end_token_and_captions_begin_with_padding(folders):
    tokenizer = resolve_base(folders["siglip"], "famevil-tiny").tokenizer()
    assert tokenizer.start == tokenizer.end == tokenizer.pad and not tokenizer.trims  # SigLIP's layout: no start token
    tokens = tokenizer(["navy wool cardigan", "a"])
    assert tokens.shape == (2, SIGLIP_TEXT["context_length"]) and not tokenizer.adds_start
    captions = tokenizer.for_captions()(["navy wool cardigan"])
    assert captions[0, 0] == tokenizer.start and torch.equal(captions[0, 1:], tokens[0, :-1])
    ends = tokenizer.ends(captions)  # the first end after the start, though start and end are one id
    assert int(ends[0]) == int(tokenizer.ends(tokens[:1])[0]) + 1
    assert tokenizer.decode(captions[0, 1 : int(ends[0])].tolist()) == "navy wool cardigan"


def test_towers_of_different_depths_pair_their_last_layers(folders):
    """Three trunk blocks, two text blocks: the trunk's first block runs alone, and its last two meet the
    text tower's two. A captioner's text layer i reads trunk block i + 1."""
    model = resolve_base(folders["timm-layerscale"], "famevil-tiny").model(ModelConfig(backbone="x", tasks=("tgir", "fic")))
    assert model.depths == {"vision": 3, "text": 2} and model.paired == 2 and model.unpaired == {"vision": 1, "text": 0}
    assert [len(model.xaa[side]) for side in ("vision", "text")] == [2, 2] and len(model.tsa["tgir"]["vision"]) == 3
    images, tokens = _inputs(), model.tokenizer()(TEXTS)
    torch.manual_seed(0)
    for parameter in model.xaa.parameters():  # open every adapter, so that where it reads shows in the output
        parameter.data.normal_(0, 0.2)
    with torch.no_grad():
        fused = model.composed(images, tokens, "tgir")
        state = model.start_decoding(images, "fic")
        _, image_states = model._run_tower("vision", towers.image_stem(model.backbone, images), "fic", None)
        expected = [model.xaa["text"][layer].context_keys_values(image_states[layer + 1]) for layer in range(2)]
        for (keys, values), (want_keys, want_values) in zip(state.image_keys_values, expected, strict=True):
            assert torch.allclose(keys, want_keys) and torch.allclose(values, want_values)
    assert fused.shape == (2, 32) and torch.isfinite(fused).all()


@pytest.mark.slow  # four tiny teachers, their outputs and a student, per base
@pytest.mark.parametrize("route", ["timm-layerscale", "timm-postnorm", "siglip", "transformers"])
def test_the_pipeline_runs_on_the_base_and_its_models_caption_index_and_search(folders, tiny_shards, tiny_raw, route, tmp_path):
    options = {key: value for key, value in TINY.items() if key != "model"} | {"max_steps": 2}
    teachers = {task: teach(task, tiny_shards, tmp_path / task, base=folders[route], overrides=options).out for task in TASK_NAMES}
    for task, teacher in teachers.items():
        assert json.loads((teacher / "train_config.json").read_text())["model"] == folders[route], task
    outputs = [dump(teacher, tiny_shards, tmp_path / f"outputs-{task}", top_k=4, batch_size=16).out for task, teacher in teachers.items()]
    student = distill(tiny_shards, tmp_path / "student", teacher_outputs=outputs, base=folders[route], overrides=options).out
    photos = sorted((tiny_raw / "fashioniq" / "images").iterdir())[:3]
    for captioner in (famevil.load(teachers["fic"]), famevil.load(student)):
        captions = captioner.caption(photos, max_new_tokens=8)
        assert len(captions) == 3 and all(isinstance(caption, str) for caption in captions)
    if route == "siglip":  # self-contained checkpoints: the Hugging Face tokenizer travels with them, into exports too
        assert (teachers["fic"] / "tokenizer" / "tokenizer.json").is_file() and (student / "tokenizer" / "tokenizer.json").is_file()
        card = (export(teachers["fic"], tmp_path / "card").out / "README.md").read_text()
        assert "captioning runs it with a causal mask" in card
        folder = export(student, tmp_path / "open_clip", form="open_clip").out
        assert torch.equal(open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS), famevil.load(student).network.tokenizer()(TEXTS))
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    for photo in photos:
        (catalogue / photo.name).write_bytes(photo.read_bytes())
    index(student, catalogue, tmp_path / "index", batch_size=2)
    hits = SearchSession(tmp_path / "index").search(text="navy wool cardigan", top=2).hits
    assert len(hits) == 2


@pytest.mark.parametrize("route", ["timm-layerscale", "siglip"])
def test_parameters_are_accounted_for_each_architecture(folders, route):
    """Table 4's accounting: one multi-task model against four single-task models, on this base."""
    counts = count_parameters(folders[route])
    assert counts["multitask_total"] < counts["separate_total"] and 0 < counts["saving_percent"] < 100
    assert counts["xaa"] > 0 and set(counts["tsa"]) == set(TASK_NAMES)


def test_a_text_tower_famevil_cannot_step_is_refused_before_work(folders, tmp_path):
    architecture, preprocess = ARCHITECTURES["timm-layerscale"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "open_clip_model.safetensors").write_bytes(b"")
    (broken / "open_clip_config.json").write_text(json.dumps({"model_cfg": architecture | {"text_cfg": TEXT | {"embed_cls": True}}}))
    with pytest.raises(FamevilError, match="appended class token"):
        resolve_base(f"local-dir:{broken}", "famevil-tiny")


def test_a_transformers_folder_under_local_dir_says_how_to_pass_it(folders):
    with pytest.raises(FamevilError, match=f"is a transformers CLIPModel folder, not an open_clip one; pass --base {folders['transformers']} "):
        resolve_base(f"local-dir:{folders['transformers']}", "famevil-tiny")


def test_naming_an_architecture_beside_a_folder_base_says_the_base_decides(folders):
    with pytest.raises(FamevilError, match=r"--base local-dir:\S+ has an architecture of its own; drop --set model=NAME"):
        resolve_base(folders["siglip"], "famevil-tiny", explicit=True)
