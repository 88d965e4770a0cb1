"""`famevil evaluate` end to end on the tiny synthetic shards, and what it refuses."""

from __future__ import annotations

import json

import pytest
import torch

import famevil
from data_specs.errors import FamevilError
from data_specs.evaluations import flatten
from data_specs.manifest import file_sha256, require_artifact
from data_specs.shards import Shards, read_sizes
from famevil.checkpoint import save_checkpoint
from famevil.data.loading import samples
from famevil.multitask import ModelConfig, MultiTaskModel
from famevil.tasks.product_text import product_text
from stages.evaluate import evaluate
from stages.prepare import prepare

EXPECTED = {
    "xmr.full": ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean"],
    "xmr.random100": ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean"],
    "tgir": ["dress_r10", "dress_r50", "shirt_r10", "shirt_r50", "toptee_r10", "toptee_r50", "avg_r10", "avg_r50", "mean"],
    "scr": ["accuracy", "macro_f1"],
    "fic": ["bleu4", "coco_bleu4", "meteor", "rouge_l", "cider", "grounding_gap", "distinct_captions"],
}


@pytest.fixture(scope="module")
def random_baseline(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "random"
    return evaluate(out, tiny_shards, base="famevil-tiny", batch_size=16, max_new_tokens=8, random100_runs=2)


@pytest.mark.slow  # a random model evaluated on every protocol (the random_baseline fixture)
def test_metrics_json_has_every_protocol_in_percent(random_baseline):
    payload = json.loads((random_baseline.out / "metrics.json").read_text())
    metrics = payload["metrics"]
    expected = {f"{group}.{name}" for group, names in EXPECTED.items() for name in names}
    assert set(flatten(metrics)) == expected
    # The grounding gap is a relative change in loss, of either sign; every other figure is a percentage.
    assert all(value is None or 0 <= value <= 100 for key, value in flatten(metrics).items() if key != "fic.grounding_gap")
    assert metrics["xmr"]["full"]["i2t_r1"] <= metrics["xmr"]["full"]["i2t_r5"] <= metrics["xmr"]["full"]["i2t_r10"]
    assert any("random-100" in warning for warning in payload["warnings"])  # 30 images cannot give 100 negatives


@pytest.mark.slow  # a random model evaluated on every protocol (the random_baseline fixture)
def test_the_artifact_names_its_inputs_and_keeps_the_predictions(random_baseline, tiny_shards):
    manifest = require_artifact(random_baseline.out, "metrics")
    assert {ref.role for ref in manifest.inputs} == {"base", "shards"}
    assert next(ref for ref in manifest.inputs if ref.role == "shards").id == require_artifact(tiny_shards).content_id
    assert sorted(p.name for p in random_baseline.out.iterdir()) == [
        "captions.jsonl",
        "classifications.jsonl",
        "manifest.json",
        "metrics.json",
        "retrieval.jsonl",
    ]
    captions = [json.loads(line) for line in (random_baseline.out / "captions.jsonl").read_text().splitlines()]
    assert len(captions) == read_sizes(tiny_shards)["subsets"]["fashiongen/val"]["samples"]
    assert set(captions[0]) == {"key", "generated", "references"}
    retrieval = [json.loads(line) for line in (random_baseline.out / "retrieval.jsonl").read_text().splitlines()]
    assert {line["task"] for line in retrieval} == {"xmr-i2t", "xmr-t2i", "tgir"}
    assert all(len(line["top10"]) == 10 for line in retrieval)


def test_the_classifications_are_the_predictions_the_metrics_come_from(tiny_student, tiny_shards, tmp_path):
    result = evaluate(tmp_path / "eval", tiny_shards, model=tiny_student, tasks=["scr"], batch_size=8)
    lines = [json.loads(line) for line in (result.out / "classifications.jsonl").read_text().splitlines()]
    listed = require_artifact(result.out, "metrics").files["classifications.jsonl"]
    assert listed["sha256"] == file_sha256(result.out / "classifications.jsonl")
    views = list(samples(Shards.open(tiny_shards), "fashiongen/val"))
    assert [line["key"] for line in lines] == [view["__key__"] for view in views]
    assert [line["label"] for line in lines] == [view["json"]["subcategory"] for view in views] and {line["task"] for line in lines} == {"scr"}
    model = famevil.load(tiny_student)
    for start in range(0, len(views), 8):  # the batches evaluate ran: the same logits to the last bit
        batch = views[start : start + 8]
        predicted = model.classify([view["jpg"] for view in batch], [product_text(view["json"]) for view in batch], top=1)
        assert [line["predicted"] for line in lines[start : start + 8]] == [top[0].label for top in predicted]
    correct = sum(line["label"] == line["predicted"] for line in lines)
    assert 100 * correct / len(lines) == pytest.approx(result.metrics["scr"]["accuracy"])


def test_a_checkpoint_evaluates_its_own_task_only(tiny_shards, tmp_path):
    torch.manual_seed(0)
    model = MultiTaskModel(ModelConfig(backbone="famevil-tiny", tasks=("xmr",)))
    (tmp_path / "teacher").mkdir()
    save_checkpoint(model, tmp_path / "teacher")
    result = evaluate(tmp_path / "eval", tiny_shards, model=tmp_path / "teacher", random100_runs=1)
    assert set(result.metrics) == {"xmr"}
    with pytest.raises(FamevilError, match="the model has no 'scr' adapters or head"):
        evaluate(tmp_path / "eval-scr", tiny_shards, model=tmp_path / "teacher", tasks=["scr"])


def test_shards_without_a_tasks_split_are_refused(tiny_raw, tmp_path):
    prepare(tmp_path / "fg-only", fashiongen=tiny_raw / "fashiongen", workers=1)
    with pytest.raises(FamevilError, match="has no 'fashioniq/gallery-val' samples, which tgir .text-guided image retrieval. needs"):
        evaluate(tmp_path / "eval", tmp_path / "fg-only", base="famevil-tiny", tasks=["tgir"])
    with pytest.raises(FamevilError, match="test captions have no targets"):
        evaluate(tmp_path / "eval", tmp_path / "fg-only", base="famevil-tiny", tasks=["tgir"], split="test")
    on_train = evaluate(tmp_path / "eval-train", tmp_path / "fg-only", base="famevil-tiny", tasks=["scr"], split="train")
    assert set(on_train.metrics) == {"scr"} and require_artifact(on_train.out).details["split"] == "train"
    assert not (tmp_path / "eval").exists()


def test_an_output_holding_another_artifact_is_refused(tiny_shards, tiny_raw, tmp_path):
    with pytest.raises(FamevilError, match="holds a 'shards' artifact; refusing to replace it"):
        evaluate(tiny_shards, tiny_shards, base="famevil-tiny", overwrite=True)
    with pytest.raises(FamevilError, match="is a 'raw-dataset' artifact, expected 'shards'"):
        evaluate(tmp_path / "eval", tiny_raw, base="famevil-tiny")


@pytest.mark.slow  # a random model evaluated on every protocol (the random_baseline fixture)
def test_compare_prints_runs_beside_the_paper(cli, random_baseline):
    result = cli("evaluate", "--compare", random_baseline.out, random_baseline.out)
    assert result.exit_code == 0
    assert "paper" in result.stdout and "65.94" in result.stdout and "xmr.random100.i2t_r1" in result.stdout


@pytest.mark.parametrize(
    ("base", "says"),
    [
        ("hf-hub:org/name", "--base hf-hub:org/name: could not fetch it"),
        ("no-such-model", "--base: 'no-such-model' is not an open_clip model config"),
    ],
)
def test_a_bad_base_names_the_base_flag(tiny_shards, tmp_path, cli, base, says):
    result = cli("evaluate", "--base", base, "--shards", tiny_shards, "--out", tmp_path / "eval")
    assert result.exit_code == 1 and says in result.stderr and "--model" not in result.stderr
    assert not (tmp_path / "eval").exists()
