"""`famevil prepare`: shards read back with plain webdataset, resume, and bad inputs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

import famevil.data.shard_writer
import stages.prepare
from data_specs.errors import FamevilError
from data_specs.manifest import file_listing, require_artifact, write_manifest
from data_specs.shards import FASHIONGEN_FIELDS, TRIPLET_FIELDS, Shards, read_sizes, read_vocab
from data_specs.staging import partial_path
from famevil.data.fashiongen import RELEASE_FILES, FashionGenFile
from famevil.data.loading import training_batches
from famevil.data.synthetic.products import PRESETS, fashioniq_catalogue
from stages.prepare import prepare
from tests.conftest import write_fashioniq, write_release_h5


def _read(shards, subset):
    urls = [str(p) for p in Shards.open(shards).paths(subset)]
    return list(wds.WebDataset(urls, shardshuffle=False).decode("rgb"))


@pytest.mark.parametrize("split", ["train", "val"])
def test_fashiongen_shards_read_back_with_webdataset(tiny_shards, tiny_raw, split):
    sizes = read_sizes(tiny_shards)
    vocab = read_vocab(tiny_shards)
    raw_sizes = require_artifact(tiny_raw).details["sizes"]["fashiongen"]
    samples = _read(tiny_shards, f"fashiongen/{split}")
    assert len(samples) == sizes["subsets"][f"fashiongen/{split}"]["samples"] == raw_sizes[split]["images"]
    assert len({s["__key__"] for s in samples}) == len(samples)
    assert len({s["json"]["product_id"] for s in samples}) == raw_sizes[split]["products"]
    for sample in samples:
        assert sample["jpg"].shape == (64, 64, 3)
        assert tuple(sample["json"]) == FASHIONGEN_FIELDS
        assert vocab["subcategory"].names[sample["json"]["subcategory_id"]] == sample["json"]["subcategory"]
        assert vocab["category"].names[sample["json"]["category_id"]] == sample["json"]["category"]
        if split == "train":
            assert sample["json"]["subcategory_id"] < vocab["subcategory"].num_train


def _rows(samples):
    return [int(s["__key__"].rsplit("-", 1)[1]) for s in samples]


def test_each_sample_is_the_h5_row_its_key_names(tiny_shards, tiny_raw):
    with FashionGenFile(tiny_raw / "fashiongen" / RELEASE_FILES["train"]) as release:
        rows = list(release.rows(range(len(release))))
    for sample in _read(tiny_shards, "fashiongen/train"):
        row = rows[_rows([sample])[0]]
        assert (sample["json"]["product_id"], sample["json"]["view"], sample["json"]["title"]) == (row.product_id, row.view, row.title)
        difference = float(np.abs(sample["jpg"] * 255 - row.image).mean())  # decoded "rgb": floats in [0, 1]
        assert difference < 8  # the same picture, through JPEG


def test_training_shards_hold_rows_from_all_over_the_release(tiny_shards, tiny_raw):
    """The authors draw a random permutation of the products: each training shard is a random draw of
    the release's rows (so is the stream through its shuffle buffer); validation keeps the release's order."""
    rows = _rows(_read(tiny_shards, "fashiongen/train"))
    total = len(rows)
    assert sorted(rows) == list(range(total)) and rows != sorted(rows)
    for path in Shards.open(tiny_shards).paths("fashiongen/train"):
        held = _rows(list(wds.WebDataset([str(path)], shardshuffle=False)))
        assert held == sorted(held) and max(held) - min(held) > total / 2  # read forwards, drawn from everywhere
    assert _rows(_read(tiny_shards, "fashiongen/val")) == list(range(len(_read(tiny_shards, "fashiongen/val"))))
    groups = [s["json"]["group"] for s in _read(tiny_shards, "fashioniq/train")]
    assert groups != sorted(groups, key=groups.index)  # the release lists the groups one after another


def test_two_consecutive_training_batches_draw_from_all_over_the_release(tiny_shards):
    total = read_sizes(tiny_shards)["subsets"]["fashiongen/train"]["samples"]
    keep = lambda samples, transform, tokenize: _rows(samples)  # noqa: E731
    # No shuffle buffer: what a batch draws from is what the shards hold.
    first, second = training_batches(Shards.open(tiny_shards), "fashiongen/train", keep, 8, None, None, seed=0, epoch=0, batches_per_epoch=2, shuffle_buffer=1)
    assert len({row * 4 // total for row in first + second}) == 4  # every quarter of the release


def test_the_training_order_is_fixed_by_the_seed(tiny_raw, tiny_shards, tmp_path):
    again = prepare(tmp_path / "again", fashiongen=tiny_raw / "fashiongen", shard_size=16, workers=1)
    other = prepare(tmp_path / "other", fashiongen=tiny_raw / "fashiongen", shard_size=16, seed=1, workers=1)
    assert _rows(_read(again.out, "fashiongen/train")) == _rows(_read(tiny_shards, "fashiongen/train"))
    assert _rows(_read(other.out, "fashiongen/train")) != _rows(_read(tiny_shards, "fashiongen/train"))
    assert other.manifest.details["train_order_seed"] == 1


def test_validation_only_labels_come_after_every_training_label(tiny_shards):
    vocab = read_vocab(tiny_shards)
    vests = vocab["subcategory"].index()["VESTS"]
    assert vests >= vocab["subcategory"].num_train  # validation-only: after every training label


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_fashioniq_shards_read_back_with_webdataset(tiny_shards, split):
    catalogue = fashioniq_catalogue(PRESETS["tiny"], seed=0)
    samples = _read(tiny_shards, f"fashioniq/{split}")
    present = {i.asin for (g, s), part in catalogue.items() if s == split for i in part.images if i.present}
    usable = [t for (g, s), part in catalogue.items() if s == split for t in part.triplets if t.candidate in present and t.target in present]
    assert len(samples) == len(usable)
    for sample in samples:
        assert tuple(sample["json"]) == TRIPLET_FIELDS and len(sample["json"]["captions"]) == 2
        assert sample["reference.jpg"].shape == (64, 64, 3)
        assert ("target.jpg" in sample) == (split != "test") == (sample["json"]["target"] is not None)
    gallery = _read(tiny_shards, f"fashioniq/gallery-{split}")
    assert {s["json"]["asin"] for s in gallery} == present


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_skipped_triplets_are_counted(tiny_shards, split):
    sizes = read_sizes(tiny_shards)
    catalogue = fashioniq_catalogue(PRESETS["tiny"], seed=0)
    present = {i.asin for (g, s), part in catalogue.items() if s == split for i in part.images if i.present}
    triplets = [t for (g, s), part in catalogue.items() if s == split for t in part.triplets]
    lost = {a for t in triplets for a in (t.candidate, t.target) if a not in present}
    skipped = sum(t.candidate in lost or t.target in lost for t in triplets)
    expected = {"samples": skipped, "missing_images": len(lost), "examples": sorted(lost)[:5]} if skipped else None
    assert sizes["skipped"].get(f"fashioniq/{split}") == expected


def test_manifest_names_inputs(tiny_shards, tiny_raw):
    manifest = require_artifact(tiny_shards, "shards")
    assert manifest.files == file_listing(tiny_shards)  # nothing was added or removed after it was computed
    kinds = {ref.kind: ref for ref in manifest.inputs}
    assert kinds["fashiongen-h5"].id.startswith("fingerprint:") and kinds["fashioniq-json"].id.startswith("fingerprint:")
    assert kinds["raw-dataset"].id == require_artifact(tiny_raw).content_id
    assert manifest.command.startswith("famevil")


def test_a_run_killed_before_its_manifest_resumes_every_shard(tiny_raw, tiny_shards, tmp_path, monkeypatch):
    out = tmp_path / "shards"
    real_write_manifest = stages.prepare.write_manifest

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages.prepare, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare(out, fashiongen=tiny_raw / "fashiongen", fashioniq=tiny_raw / "fashioniq", shard_size=16, workers=1)
    monkeypatch.setattr(stages.prepare, "write_manifest", real_write_manifest)
    result = prepare(out, fashiongen=tiny_raw / "fashiongen", fashioniq=tiny_raw / "fashioniq", shard_size=16, workers=1)
    shards = sum(len(entry["shards"]) for entry in result.sizes["subsets"].values())
    assert result.resumed_shards == shards > 0
    assert result.manifest.content_id == require_artifact(tiny_shards).content_id


def test_resume_after_interruption_gives_the_same_artifact(tiny_raw, tiny_shards, tmp_path, monkeypatch):
    out = tmp_path / "shards"
    written = []

    def interrupted_after_two(root, relative, samples):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(relative)
        return real_write_shard(root, relative, samples)

    real_write_shard = famevil.data.shard_writer.write_shard
    monkeypatch.setattr(famevil.data.shard_writer, "write_shard", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare(out, fashiongen=tiny_raw / "fashiongen", fashioniq=tiny_raw / "fashioniq", shard_size=16, workers=1)
    assert not out.exists() and partial_path(out).is_dir()
    monkeypatch.setattr(famevil.data.shard_writer, "write_shard", real_write_shard)
    result = prepare(out, fashiongen=tiny_raw / "fashiongen", fashioniq=tiny_raw / "fashioniq", shard_size=16, workers=2)
    assert result.resumed_shards == 2
    assert result.manifest.content_id == require_artifact(tiny_shards).content_id
    assert not partial_path(out).exists()
    with pytest.raises(FamevilError, match="already exists"):
        prepare(out, fashiongen=tiny_raw / "fashiongen", shard_size=16)


def test_hand_built_release_through_prepare(tmp_path):
    fashiongen = tmp_path / "fg"
    fashiongen.mkdir()
    write_release_h5(fashiongen / "fashiongen_256_256_train.h5", [{"product_id": 1, "subcategory": b"SHIRTS"}, {"product_id": 1, "pose": b"id_gridfs_2"}])
    write_release_h5(fashiongen / "fashiongen_256_256_validation.h5", [{"product_id": 2, "subcategory": b"VESTS", "category": b"JACKETS &amp; COATS"}])
    fashioniq = tmp_path / "iq"
    triplets = {
        ("dress", "train"): [
            {"target": "B2", "candidate": "B1", "captions": ["is red", "is darker"]},
            {"target": "B9", "candidate": "B1", "captions": ["x", "y"]},
        ],
        ("toptee", "test"): [{"candidate": "B3", "captions": ["is longer", "has sleeves"]}],
    }
    write_fashioniq(fashioniq, triplets, {"B1": ".jpg", "B2": ".png", "B3": ".jpg"}, {("dress", "train"): ["B1", "B2", "B9"]})
    result = prepare(tmp_path / "shards", fashiongen=fashiongen, fashioniq=fashioniq, workers=1)
    subsets = result.sizes["subsets"]
    assert {k: v["samples"] for k, v in subsets.items()} == {
        "fashiongen/train": 2,
        "fashiongen/val": 1,
        "fashioniq/train": 1,
        "fashioniq/test": 1,
        "fashioniq/gallery-train": 2,
    }
    assert subsets["fashiongen/train"]["products"] == 1
    assert result.sizes["skipped"]["fashioniq/train"] == {"samples": 1, "missing_images": 1, "examples": ["B9"]}
    assert result.sizes["skipped"]["fashioniq/gallery-train"] == {"samples": 1, "missing_images": 1}
    vocab = read_vocab(tmp_path / "shards")
    assert vocab["subcategory"].names == ("SHIRTS", "VESTS") and vocab["subcategory"].num_train == 1
    assert vocab["category"].names == ("SHIRTS", "JACKETS & COATS")
    (sample,) = _read(tmp_path / "shards", "fashiongen/val")
    assert sample["json"]["category"] == "JACKETS & COATS" and sample["json"]["subcategory_id"] == 1
    (test,) = _read(tmp_path / "shards", "fashioniq/test")
    assert test["json"]["target"] is None and np.asarray(test["reference.jpg"]).shape == (24, 20, 3)
    # A release JPEG goes in as its own bytes (no second compression); a PNG is encoded once.
    (triplet,) = wds.WebDataset([str(p) for p in Shards.open(tmp_path / "shards").paths("fashioniq/train")], shardshuffle=False)
    assert triplet["reference.jpg"] == (fashioniq / "images" / "B1.jpg").read_bytes()
    assert triplet["target.jpg"][:2] == b"\xff\xd8" and np.asarray(Image.open(io.BytesIO(triplet["target.jpg"]))).shape == (24, 20, 3)


def test_fashiongen_only_and_fashioniq_only(tmp_path, tiny_raw):
    only_iq = prepare(tmp_path / "iq", fashioniq=tiny_raw / "fashioniq", workers=1)
    assert all(name.startswith("fashioniq/") for name in only_iq.sizes["subsets"])
    assert not (tmp_path / "iq" / "vocab.json").exists()
    only_fg = prepare(tmp_path / "fg", fashiongen=tiny_raw / "fashiongen", workers=1)
    assert set(only_fg.sizes["subsets"]) == {"fashiongen/train", "fashiongen/val"}


def _bad_fashiongen(tmp_path):
    folder = tmp_path / "fg"
    folder.mkdir()
    return folder


def _no_fashiongen_files(tmp_path):
    return ["--fashiongen", _bad_fashiongen(tmp_path)], "holds neither fashiongen_256_256_train.h5"


def _not_h5(tmp_path):
    folder = _bad_fashiongen(tmp_path)
    (folder / "fashiongen_256_256_train.h5").write_bytes(b"\x89PNG not an h5 at all")
    return ["--fashiongen", folder], "fashiongen_256_256_train.h5: not an HDF5 file"


def _missing_field(tmp_path):
    folder = _bad_fashiongen(tmp_path)
    write_release_h5(folder / "fashiongen_256_256_validation.h5", [{}], drop=("input_image",))
    return ["--fashiongen", folder], "missing field 'input_image'"


def _unreadable_image(tmp_path):
    write_fashioniq(tmp_path / "iq", {("dress", "val"): [{"target": "B2", "candidate": "B1", "captions": ["a", "b"]}]}, {"B1": ".jpg", "B2": ".jpg"}, {})
    (tmp_path / "iq" / "images" / "B2.jpg").write_bytes(b"truncated")
    return ["--fashioniq", tmp_path / "iq"], "B2.jpg: not an image format PIL can decode; replace the file, or delete it"


def _malformed_json(tmp_path):
    write_fashioniq(tmp_path / "iq", {}, {}, {("shirt", "val"): ["B1"]})
    (tmp_path / "iq" / "captions" / "cap.shirt.train.json").write_text("[{")
    return ["--fashioniq", tmp_path / "iq"], "cap.shirt.train.json: malformed JSON"


def _no_usable_sample(tmp_path):
    write_fashioniq(tmp_path / "iq", {("dress", "train"): [{"target": "B2", "candidate": "B1", "captions": ["a", "b"]}]}, {}, {("dress", "train"): ["B1"]})
    return ["--fashioniq", tmp_path / "iq"], "no usable sample"


def _missing_path(tmp_path):
    return ["--fashioniq", tmp_path / "nowhere"], "nowhere: no such directory"


def _synth_root_instead_of_its_fashiongen_folder(tmp_path):
    (tmp_path / "raw").mkdir()
    write_manifest(tmp_path / "raw", "raw-dataset", command="famevil synth --out raw")
    return ["--fashiongen", tmp_path / "raw"], f"is a famevil 'raw-dataset' artifact, not a fashiongen release folder; pass {tmp_path / 'raw' / 'fashiongen'}"


def _no_source(tmp_path):
    return [], "give --fashiongen DIR, --fashioniq DIR or both"


@pytest.mark.parametrize(
    "make_bad_input",
    [
        _no_fashiongen_files,
        _not_h5,
        _missing_field,
        _unreadable_image,
        _malformed_json,
        _no_usable_sample,
        _missing_path,
        _synth_root_instead_of_its_fashiongen_folder,
        _no_source,
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_is_left_looking_complete(cli, tmp_path, make_bad_input):
    arguments, message = make_bad_input(tmp_path)
    out = tmp_path / "shards"
    result = cli("prepare", *arguments, "--out", out, "--workers", 1)
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]  # a progress bar may precede it
    assert last.startswith("error:") and message in last and result.stderr.count("error:") == 1
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_debug_flag_keeps_the_traceback(cli, tmp_path):
    result = cli("--debug", "prepare", "--fashioniq", tmp_path / "nowhere", "--out", tmp_path / "shards")
    assert result.exit_code == 1 and isinstance(result.exception, FamevilError)


def test_sizes_json_lists_every_shard_once(tiny_shards):
    sizes = json.loads((tiny_shards / "sizes.json").read_text())
    listed = [shard["path"] for subset in sizes["subsets"].values() for shard in subset["shards"]]
    on_disk = sorted(p.relative_to(tiny_shards).as_posix() for p in tiny_shards.rglob("*.tar"))
    assert sorted(listed) == on_disk


def test_a_shard_larger_than_the_write_buffer_is_whole_and_hashed(tmp_path):
    rng = np.random.default_rng(0)
    samples = [{"__key__": f"train-{i:08d}", "jpg": rng.bytes(400_000 + i), "json": {"title": f"Coat {i}"}} for i in range(6)]  # 2.4 MB: flushed mid-shard
    record = famevil.data.shard_writer.write_shard(tmp_path, "train/train-000000.tar", samples)
    written = (tmp_path / record.path).read_bytes()
    assert record.samples == 6 and record.sha256 == hashlib.sha256(written).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(written)) as tar:
        members = tar.getmembers()
        read = {m.name: tar.extractfile(m).read() for m in members}
    assert [m.name for m in members] == [f"train-{i:08d}.{extension}" for i in range(6) for extension in ("jpg", "json")]
    assert len(written) == sum(512 + -(-m.size // 512) * 512 for m in members) + 1024  # each member once, then the end blocks
    assert all(read[f"{s['__key__']}.jpg"] == s["jpg"] and json.loads(read[f"{s['__key__']}.json"]) == s["json"] for s in samples)


def test_shards_are_standard_tar_files(tiny_shards):
    (first, *_) = Shards.open(tiny_shards).paths("fashioniq/val")
    with tarfile.open(first) as tar:
        members = tar.getmembers()
        assert all(m.isfile() and m.mtime == 0 and m.mode == 0o444 for m in members)
        names = [m.name for m in members]
        assert names[0].endswith(".reference.jpg") and names[1].endswith(".json")
        meta = json.loads(tar.extractfile(members[1]).read())
    assert tuple(meta) == TRIPLET_FIELDS
