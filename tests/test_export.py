"""famevil export: an open_clip folder open_clip loads by itself, a famevil copy, the model card, and
--base local-dir: / hf-hub: back into famevil."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch

import famevil
from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from famevil.bases import resolve_base
from famevil.checkpoint import load_checkpoint
from famevil.multitask import ModelConfig
from stages.evaluate import evaluate
from stages.export import export
from stages.pretrain import pretrain
from tests.conftest import TINY


@pytest.fixture(scope="module")
def tiny_base(tiny_shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "base"
    pretrain(tiny_shards, out, overrides=TINY | {"max_steps": 2, "eval_every": 0})
    return out


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(2, 3, 32, 32), open_clip.get_tokenizer("famevil-tiny")(["navy wool cardigan", "red dress"])


@torch.no_grad()
def test_an_open_clip_export_loads_in_open_clip_alone_with_famevils_embeddings(tiny_base, tmp_path):
    result = export(tiny_base, tmp_path / "export", form="open_clip")
    assert sorted(p.name for p in result.out.iterdir()) == ["README.md", "manifest.json", "open_clip_config.json", "open_clip_model.safetensors"]
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in result.out.iterdir())  # for others to read, though safetensors writes 0600
    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{result.out}")
    images, tokens = _inputs()
    ours = famevil.load(tiny_base).network
    assert torch.allclose(clip.eval().encode_image(images, normalize=True), ours.encode_image(images, "xmr"), atol=1e-5)
    assert torch.allclose(clip.encode_text(tokens, normalize=True), ours.encode_text(tokens, "xmr"), atol=1e-5)
    card = (result.out / "README.md").read_text()
    assert "embeddings equal famevil's contrastive ones" in card and "synthetic" in card


@torch.no_grad()
def test_a_trained_models_open_clip_export_says_its_embeddings_differ(tiny_dumps, tmp_path):
    teacher = tiny_dumps["xmr"][0]
    result = export(teacher, tmp_path / "export", form="open_clip")
    clip, _, _ = open_clip.create_model_and_transforms(f"local-dir:{result.out}")
    images, _ = _inputs()
    assert not torch.allclose(clip.eval().encode_image(images, normalize=True), famevil.load(teacher).network.encode_image(images, "xmr"), atol=1e-4)
    assert "The adapters of xmr were trained, so famevil's embeddings for those tasks differ" in (result.out / "README.md").read_text()


def test_a_famevil_export_with_its_card(tiny_student, tiny_shards, tmp_path):
    evaluation = tmp_path / "eval"
    evaluate(evaluation, tiny_shards, model=tiny_student, tasks=["scr"], batch_size=16)
    result = export(tiny_student, tmp_path / "export", metrics=evaluation)
    assert famevil.load(result.out).tasks == load_checkpoint(tiny_student).tasks
    card = (result.out / "README.md").read_text()
    header = card.split("---")[1]
    for key in ("license:", "library_name:", "tags:", "datasets:", "metrics:"):
        assert key in header
    assert '"synthetic (famevil synth)"' in header and '"scr.accuracy"' in header
    assert "| scr.accuracy |" in card
    assert "- `student` " in card and "- `shards` " in card and "- `raw-dataset` " in card  # where it came from, with the commands
    assert "Trained on famevil's procedural (synthetic) data set" in card
    assert require_artifact(result.out, "model").inputs[1].kind == "metrics"
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in result.out.rglob("*") if path.is_file())  # the copied weights were 0600


def test_the_card_takes_figures_only_from_an_evaluation_of_this_model(cli, tiny_student, tiny_dumps, tiny_shards, tmp_path):
    """An XMR-only teacher's card once showed the student's TGIR, SCR and FIC figures as its own."""
    evaluation = tmp_path / "eval-student"
    evaluate(evaluation, tiny_shards, model=tiny_student, tasks=["scr"], batch_size=16)
    teacher = tiny_dumps["xmr"][0]
    result = cli("export", "--model", teacher, "--metrics", evaluation, "--out", tmp_path / "export")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    student_id, teacher_id = (require_artifact(model).content_id[:19] for model in (tiny_student, teacher))
    assert result.stderr.strip() == (
        f"error: --metrics {evaluation}: is an evaluation of the model at {tiny_student} ({student_id}…), not of --model {teacher} ({teacher_id}…); "
        f"evaluate this model (famevil evaluate --model {teacher}) or drop --metrics"
    )
    assert not (tmp_path / "export").exists()


def test_local_dir_and_hf_hub_bases(tiny_base, tmp_path):
    folder = export(tiny_base, tmp_path / "export", form="open_clip").out
    exported = json.loads((folder / "open_clip_config.json").read_text())
    source = load_checkpoint(tiny_base)
    assert exported["preprocess_cfg"] == source.preprocess.open_clip_dict()  # the export's preprocessing is the model's own
    _, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    assert "interpolation=bilinear" in str(preprocess)  # open_clip reads it back: famevil-tiny's bilinear resize
    base = resolve_base(f"local-dir:{folder}", "ViT-B-16")  # the folder defines the architecture: --set model= plays no part
    model = base.model(ModelConfig(backbone="famevil-tiny", tasks=("xmr",)))
    assert (model.backbone_config, model.preprocess.open_clip_dict()) == (source.backbone_config, source.preprocess.open_clip_dict())
    expected = source.backbone.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in model.backbone.state_dict().items())
    with pytest.raises(FamevilError, match="not an open_clip folder"):
        resolve_base(f"local-dir:{tmp_path}", "famevil-tiny")
    with pytest.raises(FamevilError, match="--base hf-hub:nobody/nothing: could not fetch it"):
        resolve_base("hf-hub:nobody/nothing", "famevil-tiny")
    with pytest.raises(FamevilError, match="--format zip: choose famevil, open_clip or onnx"):
        export(tiny_base, tmp_path / "other", form="zip")
