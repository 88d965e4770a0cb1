"""The release readers against hand-built files in the public layouts, quirks included."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from data_specs.errors import FamevilError
from famevil.data.fashiongen import FashionGenFile, clean_text
from famevil.data.fashioniq import image_index, read_image_split, read_triplets
from tests.conftest import write_fashioniq, write_release_h5


def test_clean_text_resolves_release_quirks():
    raw = "Jacket in navy.<br>Cotton &amp; linen. Made in C\xf4te d'Ivoire.<BR/>Supplier: Cr&egrave;me   ".encode("latin-1")
    assert clean_text(raw) == "Jacket in navy. Cotton & linen. Made in Côte d'Ivoire. Supplier: Crème"
    assert clean_text(b"JACKETS &amp; COATS\x00\x00") == "JACKETS & COATS"


def test_fashiongen_rows_are_streamed_with_clean_text(tmp_path):
    path = tmp_path / "fashiongen_256_256_validation.h5"
    rows = [
        {"product_id": 7, "pose": b"id_gridfs_1", "description": b"Coat &amp; belt.<br>Wool.", "category": b"JACKETS &amp; COATS", "shade": 10},
        {"product_id": 7, "pose": b"id_gridfs_2", "description": b"Coat &amp; belt.<br>Wool.", "category": b"JACKETS &amp; COATS", "shade": 20},
        {"product_id": 9, "name": b"Caf\xe9 Tee", "subcategory": b"T-SHIRTS", "shade": 30},
    ]
    write_release_h5(path, rows)
    with FashionGenFile(path) as release:
        assert len(release) == 3 and release.image_shape == (16, 16, 3)
        first, second, third = release.rows(range(3), image_block=2)  # crosses an image block boundary
        assert (first.product_id, first.view, second.view) == (7, "id_gridfs_1", "id_gridfs_2")
        assert first.description == "Coat & belt. Wool." and first.category == "JACKETS & COATS"
        assert int(second.image[0, 0, 0]) == 20
        assert third.title == "Café Tee" and third.subcategory == "T-SHIRTS" and int(third.image[0, 0, 0]) == 30
        picked = list(release.rows([0, 2], image_block=1))  # a shard of a shuffled order: rows apart
        assert [(r.product_id, r.view, int(r.image[0, 0, 0])) for r in picked] == [(7, "id_gridfs_1", 10), (9, third.view, 30)]
        with pytest.raises(ValueError, match="ascending"):
            list(release.rows([2, 0]))
        assert list(release.product_ids(block=2)) == [7, 7, 9]
        assert list(release.labels(block=2))[2] == ("SHIRTS", "T-SHIRTS")


@pytest.mark.parametrize(
    "layout", [{}, {"chunks": (2, 16, 16, 3), "compression": "gzip"}], ids=["contiguous, read from the file's bytes", "chunked and compressed, through h5py"]
)
def test_fashiongen_scattered_rows_give_their_own_images(tmp_path, layout):
    path = tmp_path / "fashiongen_256_256_train.h5"
    write_release_h5(path, [{"product_id": i, "name": f"Coat &amp; hat {i}".encode()} for i in range(12)])
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    with h5py.File(path, "a") as h5:
        del h5["input_image"]
        h5.create_dataset("input_image", data=pixels, **layout)
        names = h5["input_name"][...]
        del h5["input_name"]
        h5.create_dataset("input_name", data=names, **({"chunks": (2, 1), "compression": "gzip"} if layout else {}))
    rows = [0, 3, 4, 5, 9, 11]  # a run and lone rows, across image blocks; text columns read as one point selection
    with FashionGenFile(path) as release:
        read = list(release.rows(rows, image_block=4))
    assert [r.product_id for r in read] == rows
    assert [r.title for r in read] == [f"Coat & hat {i}" for i in rows]
    for row, index in zip(read, rows, strict=True):
        np.testing.assert_array_equal(row.image, pixels[index])


def test_fashiongen_without_optional_fields_reads_blank(tmp_path):
    path = tmp_path / "fashiongen_256_256_train.h5"
    write_release_h5(path, [{}], drop=("input_gender", "input_season"))
    with FashionGenFile(path) as release:
        (row,) = release.rows(range(1))
    assert row.gender == "" and row.season == "" and row.composition == "100% cotton"


def test_fashiongen_missing_field_is_named(tmp_path):
    path = tmp_path / "fashiongen_256_256_train.h5"
    write_release_h5(path, [{}], drop=("input_description",))
    with pytest.raises(FamevilError, match="missing field 'input_description'"):
        FashionGenFile(path)


def test_fashiongen_not_h5_is_refused(tmp_path):
    path = tmp_path / "fashiongen_256_256_train.h5"
    path.write_text("this is not hdf5")
    with pytest.raises(FamevilError, match="not an HDF5 file"):
        FashionGenFile(path)


def _damaged_header(path):
    with h5py.File(path, "r") as h5:
        header = h5py.h5o.get_info(h5["input_name"].id).addr
    data = bytearray(path.read_bytes())
    data[header : header + 4] = b"\xff" * 4
    path.write_bytes(bytes(data))


def _zero_size_images(path):
    write_release_h5(path, [{}, {}], image_size=0)


@pytest.mark.parametrize(
    ("damage", "says"),
    [(_damaged_header, "a damaged HDF5 file (Unable to synchronously open object (bad object header"), (_zero_size_images, "holds images of 0x0 pixels")],
    ids=["object header", "empty images"],
)
def test_a_damaged_fashiongen_file_is_one_line_from_prepare(tmp_path, cli, damage, says):
    release = tmp_path / "release"
    release.mkdir()
    path = release / "fashiongen_256_256_train.h5"
    write_release_h5(path, [{"product_id": i} for i in range(4)])
    damage(path)
    result = cli("prepare", "--fashiongen", release, "--out", tmp_path / "shards", "--workers", 1)
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.stderr.strip()
    assert "\n" not in line and str(path) in line and says in line, repr(result.stderr)
    assert not (tmp_path / "shards").exists() and not list(tmp_path.glob(".shards*"))


def test_fashioniq_triplets_splits_and_images(tmp_path):
    triplets = {
        ("dress", "val"): [{"target": "B2", "candidate": "B1", "captions": ["is red", "is darker"]}],
        ("dress", "test"): [{"candidate": "B1", "captions": ["is longer", "has sleeves"]}],
    }
    write_fashioniq(tmp_path, triplets, {"B1": ".jpg", "B2": ".png"}, {("dress", "val"): ["B1", "B2"]})
    (val,) = read_triplets(tmp_path, "dress", "val")
    assert (val.candidate, val.target, val.captions) == ("B1", "B2", ("is red", "is darker"))
    (test,) = read_triplets(tmp_path, "dress", "test")
    assert test.target is None
    assert read_image_split(tmp_path, "dress", "val") == ["B1", "B2"]
    assert {asin: path.suffix for asin, path in image_index(tmp_path).items()} == {"B1": ".jpg", "B2": ".png"}


def test_fashioniq_val_triplet_without_target_is_refused(tmp_path):
    write_fashioniq(tmp_path, {("shirt", "val"): [{"candidate": "B1", "captions": ["a", "b"]}]}, {}, {})
    with pytest.raises(FamevilError, match=r"cap\.shirt\.val\.json: entry 0: needs a string field 'target'"):
        read_triplets(tmp_path, "shirt", "val")


@pytest.mark.parametrize(
    "split, content, message",
    [
        ("train", '[{"candidate": "B1",\n "captions": [}]', r"cap\.toptee\.train\.json: malformed JSON at line 2"),
        ("val", json.dumps({"not": "a list"}), "expected a JSON list"),
    ],
    ids=["malformed", "not-a-list"],
)
def test_fashioniq_bad_caption_file_names_file_and_line(tmp_path, split, content, message):
    write_fashioniq(tmp_path, {}, {}, {})
    (tmp_path / "captions" / f"cap.toptee.{split}.json").write_text(content)
    with pytest.raises(FamevilError, match=message):
        read_triplets(tmp_path, "toptee", split)
