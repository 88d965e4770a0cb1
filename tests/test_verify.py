"""What a stage reads is what its manifest lists: sizes, weights, content ids, sample counts and keys;
`famevil verify` checks every byte."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from data_specs.errors import FamevilError
from data_specs.integrity import ListedFile
from data_specs.manifest import release_fingerprint
from data_specs.shards import Shards, read_sizes
from famevil.data.loading import samples, shard_samples
from stages.evaluate import evaluate
from stages.teach import teach
from tests.conftest import TINY


@pytest.fixture(scope="module")
def teacher(tiny_shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "teacher-scr"
    teach("scr", tiny_shards, out, overrides=TINY | {"max_steps": 1, "checkpoint_every": 1})
    return out


def _copy(artifact: Path, tmp_path: Path) -> Path:
    copy = tmp_path / artifact.name
    shutil.copytree(artifact, copy)
    return copy


def _truncate_at_a_member(shard: Path, keep: int) -> None:
    """Keep the first `keep` samples' members, as a tar cut at a member boundary."""
    with tarfile.open(shard) as archive:
        members = [(member, archive.extractfile(member).read()) for member in archive.getmembers()]
    with tarfile.open(shard, "w") as archive:
        for member, data in members[: 2 * keep]:  # a FashionGen sample is two members: jpg and json
            archive.addfile(member, io.BytesIO(data))


def test_a_truncated_shard_is_refused_before_evaluation(tiny_shards, teacher, tmp_path, cli):
    shards = _copy(tiny_shards, tmp_path)
    shard = shards / read_sizes(shards)["subsets"]["fashiongen/val"]["shards"][0]["path"]
    _truncate_at_a_member(shard, keep=3)
    result = cli("evaluate", "--model", teacher, "--shards", shards, "--out", tmp_path / "eval")
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(shard) in line and "where its manifest lists" in line and "rebuild it with: famevil" in line
    assert not (tmp_path / "eval").exists()


def test_changed_weights_are_refused_and_a_hand_edited_id_too(teacher, tiny_shards, tmp_path):
    changed = _copy(teacher, tmp_path)
    weights = load_file(changed / "model.safetensors")
    save_file({name: value.zero_() for name, value in weights.items()}, changed / "model.safetensors")  # the same size
    with pytest.raises(FamevilError, match=r"model.safetensors: its content changed since its manifest was written; rebuild it with: famevil"):
        evaluate(tmp_path / "eval", tiny_shards, model=changed)
    edited = _copy(teacher, tmp_path / "edited")
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["content_id"] = "sha256:" + "1" * 64
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FamevilError, match="its content id is not the one of its file list"):
        evaluate(tmp_path / "eval", tiny_shards, model=edited)


def test_a_shard_holding_other_samples_than_listed_is_refused_as_it_is_read(tiny_shards, tmp_path):
    shard = read_sizes(tiny_shards)["subsets"]["fashiongen/val"]["shards"][0]
    with pytest.raises(FamevilError, match=f"{shard['samples']} samples where sizes.json lists {shard['samples'] + 1}"):
        list(shard_samples([Shards.open(tiny_shards).listed_file(tiny_shards / shard["path"])], expected=shard["samples"] + 1))
    assert len(list(samples(Shards.open(tiny_shards), "fashiongen/val"))) == read_sizes(tiny_shards)["subsets"]["fashiongen/val"]["samples"]


def test_a_member_outside_the_key_pattern_is_refused(tmp_path):
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as archive:
        for name in ("train-00000001.json", "../../evil.json"):
            data = json.dumps({"title": "x"}).encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    with pytest.raises(FamevilError, match=r"member '../../evil' is not a sample key"):
        list(shard_samples([ListedFile(shard, None, "")]))  # a loose tar, listed by no manifest


def test_the_fashioniq_fingerprint_covers_the_images(tmp_path):
    (tmp_path / "captions.json").write_text("[]")
    image = tmp_path / "B00001.jpg"
    image.write_bytes(b"one image")
    before = release_fingerprint([tmp_path / "captions.json"], listed=[image])
    time.sleep(0.01)
    image.write_bytes(b"another image")
    assert release_fingerprint([tmp_path / "captions.json"], listed=[image]) != before


def test_verify_reads_every_byte(tiny_shards, tmp_path, cli):
    shards = _copy(tiny_shards, tmp_path)
    shown = cli("verify", shards)
    assert shown.exit_code == 0 and "files match their manifest" in shown.output
    shard = shards / read_sizes(shards)["subsets"]["fashiongen/train"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[-5000] ^= 0xFF  # one byte inside a member, the size unchanged: only a full check sees it
    shard.write_bytes(bytes(data))
    assert cli("inspect", shards).exit_code == 0
    refused = cli("verify", shards)
    assert refused.exit_code == 1 and f"{shard}: its content changed" in refused.stderr
