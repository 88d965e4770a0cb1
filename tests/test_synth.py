"""`famevil synth`: the public layouts, the content's properties, determinism."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from data_specs.manifest import file_listing, require_artifact
from famevil.data.fashiongen import ALL_TEXT_FIELDS, FashionGenFile
from famevil.data.synthetic.products import PRESETS, fashiongen_catalogue, fashioniq_catalogue
from famevil.data.synthetic.taxonomy import SUBCATEGORIES
from stages.synth import synth


def test_a_contact_sheet_inside_out_is_refused_before_any_work(cli, tmp_path):
    """It would change the artifact under its manifest, so famevil verify would fail it."""
    result = cli("synth", "--preset", "tiny", "--out", tmp_path / "raw", "--contact-sheet", tmp_path / "raw" / "sheet.png")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: --contact-sheet {tmp_path / 'raw' / 'sheet.png'}: lies inside --out {tmp_path / 'raw'}, which its manifest describes whole; choose a path outside it"
    )
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("name", ["fashiongen_256_256_train.h5", "fashiongen_256_256_validation.h5"])
def test_fashiongen_h5_has_the_release_layout(tiny_raw, name):
    with h5py.File(tiny_raw / "fashiongen" / name, "r") as h5:
        n = h5["input_image"].shape[0]
        assert h5["input_image"].shape == (n, 64, 64, 3) and h5["input_image"].dtype == np.uint8
        assert h5["input_productID"].shape == (n, 1)
        for field in ALL_TEXT_FIELDS:
            assert h5[field].shape == (n, 1) and h5[field].dtype.kind == "S", field  # fixed-width bytes


def test_fashiongen_text_carries_the_release_quirks_and_reads_back_clean(tiny_raw):
    path = tiny_raw / "fashiongen" / "fashiongen_256_256_train.h5"
    with h5py.File(path, "r") as h5:
        raw = b" ".join(h5["input_description"][:, 0])
    assert b"&amp;" in raw and b"<br>" in raw and "ô".encode("latin-1") in raw
    products = fashiongen_catalogue(PRESETS["tiny"], seed=0)["train"]
    with FashionGenFile(path) as release:
        rows = list(release.rows(range(len(release))))
    expected = [(p.product_id, view, p.description, p.garment.subcategory) for p in products for view in p.views]
    assert [(r.product_id, r.view, r.description, r.subcategory) for r in rows] == expected


def test_views_subcategories_and_validation_only_labels(tiny_raw):
    catalogue = fashiongen_catalogue(PRESETS["demo"], seed=0)
    views = [len(p.views) for split in catalogue.values() for p in split]
    assert set(views) == {1, 2, 3}
    train = {p.garment.subcategory for p in catalogue["train"]}
    val = {p.garment.subcategory for p in catalogue["val"]}
    validation_only = {s.name for s in SUBCATEGORIES if s.validation_only}
    assert validation_only <= val and not validation_only & train
    assert train == {s.name for s in SUBCATEGORIES} - validation_only


def test_near_duplicates_differ_in_exactly_one_fine_detail():
    products = fashiongen_catalogue(PRESETS["demo"], seed=3)["train"]
    garments = [p.garment for p in products]
    one_detail_apart = 0
    for i, a in enumerate(garments):
        for b in garments[:i]:
            differing = [f for f in a.__dataclass_fields__ if getattr(a, f) != getattr(b, f)]
            one_detail_apart += differing in (["pockets"], ["buttons"], ["neckline"], ["accent"], ["closure", "buttons"], ["closure"])
    assert one_detail_apart > len(products) * 0.1


def test_fashioniq_layout_targets_and_missing_images(tiny_raw):
    root = tiny_raw / "fashioniq"
    test = json.loads((root / "captions" / "cap.dress.test.json").read_text())
    assert test and all("target" not in entry and len(entry["captions"]) == 2 for entry in test)
    val = json.loads((root / "captions" / "cap.shirt.val.json").read_text())
    assert all(entry["target"] != entry["candidate"] for entry in val)
    listed = {
        a
        for g in ("dress", "shirt", "toptee")
        for s in ("train", "val", "test")
        for a in json.loads((root / "image_splits" / f"split.{g}.{s}.json").read_text())
    }
    on_disk = {p.stem for p in (root / "images").glob("*.png")}
    assert on_disk <= listed
    catalogue = fashioniq_catalogue(PRESETS["tiny"], seed=0)
    missing = {i.asin for part in catalogue.values() for i in part.images if not i.present}
    assert listed - on_disk == missing
    with Image.open(next((root / "images").glob("*.png"))) as image:
        assert image.size == (64, 64)


def test_fashioniq_targets_differ_from_references_in_one_or_two_attributes():
    catalogue = fashioniq_catalogue(PRESETS["demo"], seed=0)
    for part in catalogue.values():
        garment = {i.asin: i.garment for i in part.images}
        for triplet in part.triplets:
            reference, target = garment[triplet.candidate], garment[triplet.target]
            differing = {f for f in reference.__dataclass_fields__ if getattr(reference, f) != getattr(target, f)} - {"accent"}
            assert 1 <= len(differing) <= 2, (reference, target)


def test_manifest_sizes_and_chance(tiny_raw):
    manifest = require_artifact(tiny_raw, "raw-dataset")
    assert manifest.files == file_listing(tiny_raw)
    assert manifest.details["seed"] == 0 and manifest.details["preset"] == "tiny"
    chance = manifest.details["chance_percent"]
    assert abs(chance["xmr"]["random100_r1"] - 100 / 101) < 1e-9
    assert 0 <= chance["scr"]["accuracy"] < 50 and 0 < chance["fic"]["coco_bleu4"] < 30
    assert manifest.details["sizes"]["fashiongen"]["train"]["products"] == PRESETS["tiny"].fashiongen_products["train"]


def test_same_seed_same_data_other_seed_other_data(tiny_raw, tmp_path):
    again = synth(tmp_path / "again", preset="tiny", seed=0, workers=1)
    other = synth(tmp_path / "other", preset="tiny", seed=1, workers=2, image_size=48, contact_sheet=tmp_path / "sheet.png")
    assert again.manifest.content_id == require_artifact(tiny_raw).content_id
    assert other.manifest.content_id != again.manifest.content_id
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width > 400 and sheet.height > 200
