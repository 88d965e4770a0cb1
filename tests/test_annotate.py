"""famevil annotate: what an annotations artifact holds, skipped rows, resume, models of fewer tasks, bad input."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import pytest

import famevil
import stages.annotate as annotate_module
from data_specs.errors import FamevilError, FamevilWarning
from data_specs.manifest import require_artifact
from famevil.checkpoint import load_checkpoint
from famevil.text.captions import degenerate_warning
from stages.annotate import annotate

CAPTION_TOKENS = 6  # enough to tell captions apart, and short decoding keeps the tests fast


@pytest.fixture
def shop(tiny_raw, tmp_path) -> dict[str, Path]:
    """A catalogue of six products over a folder of images: one with two views, one without text, one whose
    image is missing, one whose image is not an image, and a row that names no image; and attributes."""
    images = tmp_path / "photos"
    images.mkdir()
    pictures = sorted((tiny_raw / "fashioniq" / "images").iterdir())[:5]
    for picture in pictures:
        shutil.copy(picture, images / picture.name)
    (images / "broken.png").write_text("not an image")
    names = [picture.name for picture in pictures]
    rows = [
        ["p1", names[0], "Navy Cardigan", "Cardigan in navy wool.", "CARDIGANS"],
        ["p1", names[1], "Navy Cardigan", "Its back.", "CARDIGANS"],
        ["p2", names[2], "", "", ""],
        ["p3", "gone.png", "Red Dress", "A dress.", "DRESSES"],
        ["p4", "broken.png", "Black Coat", "A coat.", "Coats"],
        ["p5", "", "No Image", "Nothing to see.", "SHIRTS"],
        ["", names[3], "Striped Shirt", "Cotton shirt.", "shirts"],
    ]
    catalogue = tmp_path / "products.csv"
    with open(catalogue, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([["Product_ID", "Image", "Title", "Description", "Subcategory"], *rows])
    attributes = tmp_path / "attributes.json"
    attributes.write_text(json.dumps({"colour": ["black", "navy", "red"], "sleeve": {"labels": ["short", "long"], "template": "a garment with {} sleeves"}}))
    return {"images": images, "catalogue": catalogue, "attributes": attributes, "names": names}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_annotations_hold_each_products_caption_subcategories_and_attributes(tiny_student, shop, tmp_path):
    out = tmp_path / "annotations"
    result = annotate(
        tiny_student, shop["images"], out, catalogue=shop["catalogue"], attributes=shop["attributes"], top=2, max_new_tokens=CAPTION_TOKENS, batch_size=2
    )
    assert sorted(p.name for p in out.iterdir()) == ["annotations.csv", "annotations.jsonl", "manifest.json", "skipped.jsonl"]
    manifest = require_artifact(out, "annotations")
    assert [ref.role for ref in manifest.inputs] == ["model", "catalogue", "images", "attributes"]
    assert manifest.inputs[0].id == require_artifact(tiny_student).content_id
    names = shop["names"]
    records = _lines(out / "annotations.jsonl")
    assert [r["product_id"] for r in records] == ["p1", "p2", names[3]] and result.products == 3
    assert [r["image"] for r in records] == [names[0], names[2], names[3]]  # p1 from its first view
    model = famevil.load(tiny_student)
    pictures = [shop["images"] / r["image"] for r in records]
    assert [r["caption"] for r in records] == model.caption(pictures, max_new_tokens=CAPTION_TOKENS)
    recognised = model.classify([pictures[0], pictures[2]], ["Navy Cardigan. Cardigan in navy wool.", "Striped Shirt. Cotton shirt."], top=2)
    for record, predictions in zip([records[0], records[2]], recognised, strict=True):
        assert record["subcategories_by"] == "scr"
        assert record["subcategories"] == [{"label": p.label, "probability": round(p.probability, 4)} for p in predictions]
    vocabulary = load_checkpoint(tiny_student).config.vocabularies["subcategory"]
    assert records[1]["subcategories_by"] == "zero-shot" and all(s["label"] in vocabulary for s in records[1]["subcategories"])
    for record in records:
        assert record["attributes"]["colour"]["label"] in ("black", "navy", "red") and record["attributes"]["sleeve"]["label"] in ("short", "long")
        assert 0 < record["attributes"]["sleeve"]["probability"] <= 1 and len(record["subcategories"]) == 2
    assert manifest.details["subcategories_by"] == {"scr": 2, "zero-shot": 1} and manifest.details["captions"] is True
    assert manifest.details["zero_shot_labels_from"] == "the model's SCR vocabulary"
    skipped = _lines(out / "skipped.jsonl")
    assert skipped == result.skipped
    assert [(row["line"], row["reason"]) for row in skipped] == [(5, "missing image"), (6, "unreadable image"), (7, "no image")]
    assert all(row["file"] == str(shop["catalogue"]) for row in skipped) and skipped[0]["detail"] == "gone.png"
    with open(out / "annotations.csv", newline="", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    assert list(table[0]) == [
        "product_id", "image", "caption", "subcategories_by", "subcategory_1", "subcategory_1_probability", "subcategory_2",
        "subcategory_2_probability", "colour", "colour_probability", "sleeve", "sleeve_probability",
    ]  # fmt: skip
    assert [row["product_id"] for row in table] == ["p1", "p2", names[3]] and table[0]["caption"] == records[0]["caption"]
    assert table[2]["sleeve"] == records[2]["attributes"]["sleeve"]["label"]
    assert float(table[2]["subcategory_1_probability"]) == records[2]["subcategories"][0]["probability"]


def test_an_interrupted_annotate_resumes_its_finished_batches(tiny_student, shop, tmp_path, monkeypatch):
    write_chunk = annotate_module._write_chunk
    written = []

    def fail_on_the_third(path, *args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        write_chunk(path, *args)

    options = {"catalogue": shop["catalogue"], "max_new_tokens": CAPTION_TOKENS, "batch_size": 2}
    monkeypatch.setattr(annotate_module, "_write_chunk", fail_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        annotate(tiny_student, shop["images"], tmp_path / "a", **options)
    assert not (tmp_path / "a").exists()
    monkeypatch.setattr(annotate_module, "_write_chunk", write_chunk)
    resumed = annotate(tiny_student, shop["images"], tmp_path / "a", **options)
    fresh = annotate(tiny_student, shop["images"], tmp_path / "fresh", **options)
    assert resumed.resumed_chunks == 2 and fresh.resumed_chunks == 0
    for name in ("annotations.jsonl", "annotations.csv", "skipped.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()
    other = annotate(tiny_student, shop["images"], tmp_path / "a", overwrite=True, **options | {"top": 1})
    assert other.resumed_chunks == 0  # other settings: no batch of the old plan is reused


def test_a_model_annotates_what_it_was_trained_for(scr_artifacts, shop, tmp_path):
    """An SCR teacher: no caption (it has no captioning), SCR where the row has text, and nothing where it
    has none (zero-shot needs cross-modal retrieval), which also refuses attributes."""
    teacher = scr_artifacts["teacher"]
    out = tmp_path / "annotations"
    annotate(teacher, shop["images"], out, catalogue=shop["catalogue"])
    records = _lines(out / "annotations.jsonl")
    assert [("caption" in r, r.get("subcategories_by")) for r in records] == [(False, "scr"), (False, None), (False, "scr")]
    assert "caption" not in (out / "annotations.csv").read_text().splitlines()[0].split(",")
    details = require_artifact(out, "annotations").details
    assert details["captions"] is False and details["subcategories_by"] == {"scr": 2} and details["zero_shot_labels"] == []
    with pytest.raises(FamevilError, match="--attributes: zero-shot labels need a model trained for cross-modal retrieval"):
        annotate(teacher, shop["images"], tmp_path / "b", catalogue=shop["catalogue"], attributes=shop["attributes"])


def test_without_a_catalogue_each_image_is_a_product(tiny_student, shop, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = annotate(tiny_student, shop["images"], tmp_path / "a", max_new_tokens=CAPTION_TOKENS, top=1, batch_size=2)
    records = _lines(tmp_path / "a" / "annotations.jsonl")
    degenerate = degenerate_warning([r["caption"] for r in records], str(tiny_student))
    # Degenerate captions (a model after 2 updates) are one warning for the catalogue, not one a batch.
    assert [str(w.message) for w in caught if issubclass(w.category, FamevilWarning)] == ([degenerate] if degenerate else [])
    assert [r["product_id"] for r in records] == sorted(shop["names"]) and all(r["subcategories_by"] == "zero-shot" for r in records)
    assert all(len(r["subcategories"]) == 1 and r["caption"] for r in records)
    assert result.skipped == [
        {"file": str(shop["images"] / "broken.png"), "line": None, "reason": "unreadable image", "detail": "broken.png: not an image format PIL can decode"}
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "line 1: malformed JSON"),
        ('["black"]', "expected a JSON object of label sets"),
        ('{"colour": ["black"]}', "attribute 'colour': 1 label\\(s\\) given: zero-shot chooses among labels, so give two or more"),
        ('{"colour": ["black", " "]}', "attribute 'colour': label 2: an empty label"),
        ('{"colour": ["black", "Black "]}', "attribute 'colour': label 2: 'Black' repeats label 1"),
        ('{"colour": ["black", 7]}', "attribute 'colour': 'labels' must be a list of strings"),
        ('{"sleeve": {"labels": ["short", "long"], "template": "a garment with sleeves"}}', "attribute 'sleeve': template 1 .* has 0 {} where it needs one"),
        ('{"sleeve": {"labels": ["short", "long"], "templates": "a {}"}}', "attribute 'sleeve': unknown field 'templates'"),
        ('{"sleeve": "short"}', "attribute 'sleeve': expected a list of labels or"),
        ('{"caption": ["long", "short"]}', "attribute 'caption': the name is one of annotate's own columns"),
    ],
)
def test_a_malformed_attributes_file_is_one_line_naming_it(tiny_student, shop, tmp_path, content, message):
    attributes = tmp_path / "bad.json"
    attributes.write_text(content)
    with pytest.raises(FamevilError, match=message) as raised:
        annotate(tiny_student, shop["images"], tmp_path / "a", catalogue=shop["catalogue"], attributes=attributes)
    assert str(raised.value).startswith(str(attributes) if content.startswith('{"') else f"--attributes {attributes}") and "\n" not in str(raised.value)


def test_annotate_command(cli, tiny_student, shop, tmp_path):
    out = tmp_path / "annotations"
    given = ("annotate", "--model", tiny_student, "--images", shop["images"], "--catalogue", shop["catalogue"])
    result = cli(*given, "--out", out, "--max-new-tokens", CAPTION_TOKENS, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert "3 products annotated" in result.stdout and f"{shop['catalogue']}, line 5: missing image gone.png" in result.stderr
    result = cli(*given, "--out", tmp_path / "b", "--labels", "dress,,coat")
    assert result.exit_code == 1 and result.stderr.startswith("error: --labels: ") and result.stderr.count("\n") == 1, result.output
    (tmp_path / "bad.json").write_text('{"colour": ["red", "RED"]}')
    result = cli(*given, "--out", tmp_path / "c", "--attributes", tmp_path / "bad.json")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "repeats label 1" in result.stderr, result.output
