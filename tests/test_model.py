"""The FAME-ViL model on open_clip: equivalence at initialisation, masks, task isolation, weights in and out."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from famevil.bases import resolve_base
from famevil.checkpoint import export_open_clip, load_checkpoint, save_checkpoint
from famevil.data.examples import text_tokens
from famevil.model.adapter_config import AdapterConfig
from famevil.model.backbone import CONV_STEM, backbone_config, create_backbone, load_strict, read_state_dict
from famevil.model.decoding import generate
from famevil.model.tokenizer import text_tokenizer
from famevil.multitask import ModelConfig, MultiTaskModel, task_loss
from famevil.params import count_parameters
from famevil.tasks import find_task, task_names
from famevil.tasks.fic import caption_targets
from famevil.training.config import load_config
from famevil.training.recipe import build_model
from stages.export import export

TOKENIZE = text_tokenizer(backbone_config("famevil-tiny"))
TASK_NAMES = task_names()
SEVEN_CLASSES = {"subcategory": [f"class {i}" for i in range(7)]}


def _model(tasks=TASK_NAMES, seed=0) -> MultiTaskModel:
    torch.manual_seed(seed)
    return MultiTaskModel(ModelConfig(backbone="famevil-tiny", tasks=tasks, vocabularies=SEVEN_CLASSES)).eval()


def caption_logits(model: MultiTaskModel, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Teacher-forced next-token logits at every position."""
    return model.head("fic")(model.caption_states(images, tokens, "fic"))


def _perturb(module: torch.nn.Module, seed: int = 1, scale: float = 0.05) -> None:
    """Make zero-initialised adapters do something, so that a test of masks or isolation can fail."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


@pytest.fixture
def inputs():
    torch.manual_seed(3)
    return torch.randn(3, 3, 32, 32), TOKENIZE(["a red dress with long sleeves", "black wool coat", "shorts"])


@torch.no_grad()
def test_every_mode_equals_plain_open_clip_at_initialisation(inputs):
    images, tokens = inputs
    model = _model()
    clip = model.backbone
    for task in TASK_NAMES:
        assert torch.allclose(model.encode_image(images, task), clip.encode_image(images, normalize=True), atol=1e-5)
        assert torch.allclose(model.encode_text(tokens, task), clip.encode_text(tokens, normalize=True), atol=1e-5)
    image_vector, text_vector = model.fuse(images, tokens, "scr")
    assert torch.allclose(image_vector, clip.encode_image(images), atol=1e-5)
    assert torch.allclose(text_vector, clip.encode_text(tokens), atol=1e-5)
    hidden = clip.transformer(clip.token_embedding(tokens) + clip.positional_embedding, attn_mask=clip.attn_mask)
    expected = model.head("fic")(clip.ln_final(hidden))
    assert torch.allclose(caption_logits(model, images, tokens), expected, atol=1e-4)


@pytest.fixture
def busy_model() -> MultiTaskModel:
    """A model whose adapters all do something, so that a test of masks can fail."""
    model = _model()
    _perturb(model)
    return model


@torch.no_grad()
def test_causal_mask_in_generative_mode(inputs, busy_model):
    images, tokens = inputs
    model = busy_model
    changed = tokens.clone()
    changed[:, 4] = 1234  # token t + 1 = 4
    before, after = caption_logits(model, images, tokens), caption_logits(model, images, changed)
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert not torch.allclose(before[:, 4:], after[:, 4:], atol=1e-3)


@pytest.mark.parametrize("reads", ["block_outputs", "attention_states"])
@torch.no_grad()
def test_the_captioner_reads_what_caption_reads_says(inputs, reads):
    """Text layer i attends to image block i's output (the authors' captioner), or to its h'."""
    images, _ = inputs
    torch.manual_seed(0)
    model = MultiTaskModel(
        ModelConfig(backbone="famevil-tiny", tasks=("fic",), adapters=AdapterConfig(caption_reads=reads))
    ).eval()  # adapters at zero: open_clip's blocks
    state = model.start_decoding(images, "fic")
    x = model.backbone.visual._embeds(images)
    for block, cross, (keys, values) in zip(model.backbone.visual.transformer.resblocks, model.xaa["text"], state.image_keys_values, strict=True):
        attention_state = x + block.ls_1(block.attention(block.ln_1(x)))
        x = block(x)
        expected_keys, expected_values = cross.context_keys_values(x if reads == "block_outputs" else attention_state)
        assert torch.allclose(keys, expected_keys, atol=1e-5) and torch.allclose(values, expected_values, atol=1e-5)


def test_the_model_config_round_trips_flat_and_checks_its_adapters_once():
    """config.json keeps the adapter settings flat, by their option names; a bad one is refused where the config is made."""
    config = ModelConfig(backbone="famevil-tiny", tasks=("fic",), adapters=AdapterConfig(tsa_bottleneck=8, fusion="late"))
    written = config.to_dict()
    assert (written["tsa_bottleneck"], written["fusion"]) == (8, "late") and "adapters" not in written
    assert ModelConfig.from_dict(written) == config
    with pytest.raises(FamevilError, match="fusion='early': expected cross_attention or late"):
        AdapterConfig(fusion="early")
    with pytest.raises(FamevilError, match="tsa_bottleneck must be from 1 to 2048"):
        AdapterConfig(tsa_bottleneck=0)


def test_a_checkpoint_config_from_before_caption_reads_keeps_its_wiring():
    written = ModelConfig(backbone="famevil-tiny", tasks=("fic",)).to_dict()
    del written["caption_reads"]
    assert ModelConfig.from_dict(written).adapters.caption_reads == "attention_states"
    assert ModelConfig(backbone="famevil-tiny", tasks=("fic",)).adapters.caption_reads == "block_outputs"


@torch.no_grad()
def test_padding_changes_nothing(inputs, busy_model):
    images, tokens = inputs
    model = busy_model
    padded = tokens.clone()
    padding = tokens == 0
    padded[padding] = 777  # garbage where the tokenizer put padding
    for fused, garbage in zip(model.fuse(images, tokens, "tgir"), model.fuse(images, padded, "tgir"), strict=True):
        assert torch.allclose(fused, garbage, atol=1e-5)
    assert torch.allclose(model.encode_text(tokens, "xmr"), model.encode_text(padded, "xmr"), atol=1e-5)
    real = ~padding
    assert torch.allclose(caption_logits(model, images, tokens)[real], caption_logits(model, images, padded)[real], atol=1e-4)


@torch.no_grad()
def test_one_tasks_adapters_do_not_move_another_tasks_outputs(inputs):
    images, tokens = inputs
    model = _model()
    _perturb(model.xaa)
    before = {
        "xmr": model.encode_image(images, "xmr"),
        "tgir": model.composed(images, tokens, "tgir"),
        "fic": caption_logits(model, images, tokens),
    }
    _perturb(model.tsa["scr"], seed=9)
    assert torch.equal(model.encode_image(images, "xmr"), before["xmr"])
    assert torch.equal(model.composed(images, tokens, "tgir"), before["tgir"])
    assert torch.equal(caption_logits(model, images, tokens), before["fic"])
    assert not torch.allclose(model.composed(images, tokens, "scr"), model.composed(images, tokens, "tgir"), atol=1e-4)


def test_every_task_has_a_loss_that_trains(inputs):
    images, tokens = inputs
    model = _model()
    model.train()
    batch = {"images": images, "tokens": tokens, "targets": images.flip(0), "labels": torch.tensor([0, 3, 6]), "products": torch.tensor([1, 2, 3])}
    for task in TASK_NAMES:
        loss, _ = task_loss(model, task, batch)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.tsa["fic"]["text"][0].up.weight.grad.abs().sum() > 0  # zero-initialised, yet trainable


@torch.no_grad()
def test_caption_loss_reads_real_next_tokens_only(inputs):
    images, tokens = inputs
    model = _model(("fic",))
    _perturb(model)
    _, real, targets = caption_targets(tokens, TOKENIZE)
    logits = model("fic", {"images": images, "tokens": tokens})
    assert logits.log_probs.shape == (int(real.sum()), model.backbone.vocab_size) and len(targets) == real.sum()
    assert torch.equal(logits.tokens, torch.arange(model.backbone.vocab_size))
    every_position = caption_logits(model, images, tokens[:, :-1])
    assert torch.allclose(logits.log_probs, every_position[real].log_softmax(-1), atol=1e-4)
    labels = tokens[:, 1:].clone()
    for row, ids in enumerate(tokens.tolist()):
        labels[row, ids.index(TOKENIZE.end) :] = -100  # every position after the end token is padding
    expected = torch.nn.functional.cross_entropy(every_position.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(task_loss(model, "fic", {"images": images, "tokens": tokens})[0], expected, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("beams", [1, 3])
def test_cached_and_uncached_decoding_give_the_same_tokens(inputs, beams):
    images, _ = inputs
    model = _model(tasks=("fic",))
    _perturb(model, scale=0.1)
    cached = generate(model, model.head("fic"), images, "fic", max_new_tokens=10, beams=beams, use_cache=True)
    uncached = generate(model, model.head("fic"), images, "fic", max_new_tokens=10, beams=beams, use_cache=False)
    assert cached == uncached
    assert all(len(caption) <= 10 for caption in cached)


def test_task_registry_and_aliases():
    assert find_task("captioning").name == "fic" and find_task("retrieval").name == "xmr"
    assert {find_task(name).mode for name in TASK_NAMES} == {"contrastive", "fusion", "generative"}
    with pytest.raises(FamevilError, match="unknown task 'pose'; choose one of: xmr"):
        find_task("pose")


def test_strict_load_of_a_vit_b_16_open_clip_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = create_backbone("ViT-B-16")
    path = tmp_path / "vit-b-16.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    model = resolve_base(str(path), "ViT-B-16").model(ModelConfig(backbone="ViT-B-16", tasks=("xmr",)))
    assert torch.equal(model.backbone.visual.conv1.weight, reference.visual.conv1.weight)


def test_weights_that_do_not_fit_are_listed(tmp_path):
    model = _model(tasks=("xmr",))
    state = model.backbone.state_dict()
    state["visual.extra.weight"] = torch.zeros(1)
    del state["ln_final.bias"]
    with pytest.raises(FamevilError, match=r"missing keys: ln_final\.bias; unexpected keys: visual\.extra\.weight"):
        load_strict(model.backbone, state, "checkpoint.pt")


class _NotATensor:
    pass


def test_pickles_are_read_with_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _NotATensor()}, path)
    with pytest.raises(FamevilError, match="evil.pt: not loadable as plain tensors"):
        read_state_dict(path)
    plain = tmp_path / "plain.bin"
    torch.save({"state_dict": {"module.weight": torch.ones(2)}}, plain)
    assert list(read_state_dict(plain)) == ["weight"]


@pytest.mark.parametrize("content", [None, b"", b"\x00" * 40, b"random bytes that are not a header"], ids=["cut short", "empty", "zeros", "random"])
def test_a_broken_safetensors_file_is_one_line(tmp_path, content):
    path = tmp_path / "weights.safetensors"
    save_file({"weight": torch.ones(4, 4)}, path)
    path.write_bytes(path.read_bytes()[:30] if content is None else content)
    with pytest.raises(FamevilError, match=r"weights.safetensors: not a readable safetensors file") as refusal:
        read_state_dict(path)
    assert "\n" not in str(refusal.value)


@torch.no_grad()
def test_export_loads_back_into_open_clip_with_identical_embeddings(tmp_path, inputs):
    images, tokens = inputs
    model = _model()
    _perturb(model.backbone)  # trained backbone weights, not the random initialisation, must travel
    path = tmp_path / "exported.safetensors"
    export_open_clip(model, path)
    clip = open_clip.create_model("famevil-tiny", pretrained=str(path)).eval()
    assert torch.allclose(clip.encode_image(images, normalize=True), model.encode_image(images, "xmr"), atol=1e-5)
    assert torch.allclose(clip.encode_text(tokens, normalize=True), model.encode_text(tokens, "xmr"), atol=1e-5)


@torch.no_grad()
def test_checkpoint_directory_round_trip(tmp_path, inputs):
    images, tokens = inputs
    model = _model()
    _perturb(model)
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    save_checkpoint(model, directory, details={"note": "test"})
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "manifest.json", "model.safetensors"]
    assert require_artifact(directory, "model").details == {"note": "test"}
    loaded = load_checkpoint(directory).eval()
    assert torch.equal(loaded.composed(images, tokens, "scr"), model.composed(images, tokens, "scr"))
    torch.manual_seed(5)
    other = resolve_base(str(directory), "ViT-B-16").model(
        ModelConfig(backbone="famevil-tiny", tasks=("xmr",))
    )  # a famevil directory as a base: its backbone only
    assert other.backbone_name == "famevil-tiny" and other.preprocess == model.preprocess
    assert torch.equal(other.backbone.token_embedding.weight, model.backbone.token_embedding.weight)
    assert not torch.equal(other.tsa["xmr"]["text"][0].down.weight, model.tsa["xmr"]["text"][0].down.weight)


def test_pretrained_tag_offline_is_a_clear_error():
    base = resolve_base("ViT-B-32:openai", "ViT-B-16")  # its config is open_clip's, known offline; no test places its weights
    with pytest.raises(FamevilError, match=r"--base ViT-B-32:openai: could not fetch it .*open_clip's local cache \(HF_HOME\); or pass a local weights file"):
        base.model(ModelConfig(backbone="ViT-B-32", tasks=("xmr",)))


def test_parameter_accounting_adds_up():
    counts = count_parameters("ViT-B-16", 64)
    assert counts["backbone"] == 149_620_737  # open_clip's ViT-B-16
    assert 0.013 < counts["tsa"]["xmr"] / counts["backbone"] < 0.014  # "about 1.35% of CLIP" per task
    parts = counts["backbone"] + counts["xaa"] + sum(counts["tsa"].values()) + sum(counts["heads"].values())
    assert counts["multitask_total"] == parts
    assert counts["saving_percent"] == round(100 * (1 - parts / counts["separate_total"]), 2)
    assert count_parameters("ViT-B-16", 64, xaa_bottleneck=128)["xaa"] > counts["xaa"]
    assert count_parameters("ViT-B-16", 128)["tsa"]["scr"] > counts["tsa"]["scr"]


def test_params_command_prints_json(cli):
    result = cli("params", "--model", "famevil-tiny", "--bottleneck", 8, "--json")
    assert result.exit_code == 0
    counts = json.loads(result.stdout)
    assert set(counts) == {"backbone", "xaa", "tsa", "heads", "multitask_total", "separate_total", "saving_percent"}
    assert set(counts["tsa"]) == set(TASK_NAMES) and all(isinstance(v, int) for v in counts["tsa"].values())


@torch.no_grad()
def test_cutting_the_padding_columns_changes_no_output(inputs):
    images, tokens = inputs
    cut = text_tokens(["a red dress with long sleeves", "black wool coat", "shorts"], TOKENIZE)
    assert cut.shape[1] < tokens.shape[1] and torch.equal(cut, tokens[:, : cut.shape[1]])
    model = _model()
    _perturb(model)
    assert torch.allclose(model.encode_text(cut, "xmr"), model.encode_text(tokens, "xmr"), atol=1e-5)
    assert torch.allclose(model.composed(images, cut, "scr"), model.composed(images, tokens, "scr"), atol=1e-5)
    assert torch.allclose(caption_logits(model, images, cut), caption_logits(model, images, tokens)[:, : cut.shape[1]], atol=1e-4)


def _conv_stem_model() -> MultiTaskModel:
    """famevil-tiny with famevil-small's kind of image stem: three stride-2 convolutions for 8-pixel patches."""
    torch.manual_seed(0)
    architecture = backbone_config("famevil-tiny") | {CONV_STEM: [8, 16, 32]}
    return MultiTaskModel(ModelConfig(backbone="famevil-tiny", tasks=TASK_NAMES, vocabularies=SEVEN_CLASSES), architecture)


@torch.no_grad()
def test_a_conv_stem_replaces_the_patch_embedding_and_travels_with_the_checkpoint(tmp_path, inputs):
    images, tokens = inputs
    model = _conv_stem_model()
    convolutions = [layer for layer in model.backbone.visual.conv1 if isinstance(layer, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convolutions] == [(3, 8, 2), (8, 16, 2), (16, 32, 2), (32, 64, 1)]
    assert model.backbone.visual._embeds(images).shape == _model().backbone.visual._embeds(images).shape  # the same 4x4 grid of tokens
    model.train().encode_image(images, "xmr")  # BatchNorm's running statistics move: they must travel too
    model.eval()
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    save_checkpoint(model, directory, details={})
    loaded = load_checkpoint(directory).eval()
    assert loaded.backbone_config[CONV_STEM] == [8, 16, 32]
    assert torch.equal(loaded.encode_image(images, "xmr"), model.encode_image(images, "xmr"))
    with pytest.raises(FamevilError, match="--format open_clip: .*convolutional stem"):
        export(directory, tmp_path / "export", form="open_clip")
    assert not (tmp_path / "export").exists()


def test_a_conv_stem_that_does_not_make_the_patch_grid_is_refused():
    with pytest.raises(FamevilError, match=r"conv_stem \[8, 16\] halves the image 2 times, but the tower's patches are 8 pixels wide"):
        MultiTaskModel(ModelConfig(backbone="famevil-tiny", tasks=("xmr",)), backbone_config("famevil-tiny") | {CONV_STEM: [8, 16]})


@pytest.mark.parametrize("xaa_init", ["zero", "default"])
def test_xaa_init_decides_whether_the_image_path_trains_from_the_first_update(inputs, xaa_init):
    """Zero-initialised cross-attention adapters leave the model its backbone, and their attention no
    gradient until the last projection has grown; "default" lets the captioner's image path learn at once."""
    images, tokens = inputs
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="famevil-tiny", tasks=("fic",)), resolve_base(None, "famevil-tiny"), xaa_init)
    task_loss(model, "fic", {"images": images, "tokens": tokens})[0].backward()
    key_gradient = model.xaa["text"][0].key.weight.grad
    if xaa_init == "zero":
        assert all(not adapter.adapter.up.weight.any() for adapter in model.xaa["text"])
        assert key_gradient is None or not key_gradient.any()
    else:
        assert all(adapter.adapter.up.weight.abs().sum() > 0 for adapter in model.xaa["text"])
        assert key_gradient.abs().sum() > 0


def test_xaa_init_leaves_a_contrastive_model_alone():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="famevil-tiny", tasks=("xmr",)), resolve_base(None, "famevil-tiny"), "default")
    assert model.xaa is None


@pytest.mark.parametrize("head_init", ["backbone", "default"])
def test_head_init_decides_whether_the_captioning_head_starts_from_the_token_embedding(head_init):
    """The authors' captioning head starts from PyTorch's default initialisation (the paper presets);
    famevil's demo starts it from the token embedding."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="famevil-tiny", tasks=("fic",)), resolve_base(None, "famevil-tiny"), head_init=head_init)
    head, embedding = model.head("fic"), model.backbone.token_embedding.weight
    from_embedding = torch.equal(head.weight, embedding[head.tokens]) and not head.bias.any()
    assert from_embedding == (head_init == "backbone")
    assert all(load_config(name).head_init == "default" for name in ("paper", "paper-student"))
