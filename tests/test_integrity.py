"""Integrity: every byte a stage reads is the byte its input's manifest lists, the content id covers the
manifest's own fields, identical runs give identical ids, and no stage publishes non-finite weights.

Each damage here keeps the file's size, or comes with a manifest rewritten to match it: the size checks
that stages always ran cannot see either."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from data_specs.manifest import read_manifest, write_manifest
from data_specs.shards import read_sizes
from famevil.data.teacher_outputs import TeacherOutputs, write_outputs
from stages.teach import teach
from tests.conftest import TASK_NAMES, TINY


def _copy(artifact: Path, folder: Path) -> Path:
    copy = folder / "damaged" / artifact.name
    shutil.copytree(artifact, copy)
    return copy


def _reseal(artifact: Path) -> None:
    """Rewrite the artifact's manifest over its files as they are now: a consistent manifest over damaged files."""
    old = read_manifest(artifact)
    write_manifest(artifact, old.kind, inputs=old.inputs, details=old.details, command=old.command)


def _one_line(result, *expected: str) -> str:
    """The run failed with exit 1 and one line saying all of `expected`, without a traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and all(part in line for part in expected), line
    return line


def _shard(shards: Path, subset: str, index: int = 0) -> Path:
    return shards / read_sizes(shards)["subsets"][subset]["shards"][index]["path"]


def _equal_sized_pair(shards: Path, subset: str) -> tuple[Path, Path]:
    by_size: dict[int, list[Path]] = {}
    for shard in read_sizes(shards)["subsets"][subset]["shards"]:
        by_size.setdefault((shards / shard["path"]).stat().st_size, []).append(shards / shard["path"])
    pairs = [paths[:2] for paths in by_size.values() if len(paths) > 1]
    assert pairs, f"the tiny data set has no two {subset} shards of one size to swap"
    return pairs[0][0], pairs[0][1]


def _rewrite_shard(shard: Path, change: Callable[[list[tuple[tarfile.TarInfo, bytes]]], list[tuple[tarfile.TarInfo, bytes]]]) -> None:
    with tarfile.open(shard) as archive:
        members = [(member, archive.extractfile(member).read()) for member in archive.getmembers()]
    with tarfile.open(shard, "w") as archive:
        for member, data in change(members):
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))


def _corrupt_first_json(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
    index = next(i for i, (member, _) in enumerate(members) if member.name.endswith(".json"))
    members[index] = (members[index][0], b'{"product_id": 1, "title": ')
    return members


def _teach(shards: Path, out: Path) -> list:
    return ["teach", "--task", "scr", "--set", "model=famevil-tiny", "--max-steps", 5, "--shards", shards, "--out", out]


def _evaluate(model: Path, shards: Path, out: Path) -> list:
    return ["evaluate", "--model", model, "--shards", shards, "--out", out]


# Reading what the manifest does not list ---------------------------------------------------------


def test_a_byte_flipped_in_teacher_outputs_stops_distill_before_any_step(scr_artifacts, tmp_path, cli):
    outputs = _copy(scr_artifacts["teacher-outputs"], tmp_path)
    file = sorted((outputs / "outputs").iterdir())[0]
    data = bytearray(file.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's data: a logit's exponent bit, the size unchanged
    file.write_bytes(bytes(data))
    result = cli(
        "distill", "--set", "model=famevil-tiny", "--max-steps", 1, "--shards", scr_artifacts["shards"], "--teacher-outputs", outputs, "--out", tmp_path / "out"
    )
    _one_line(result, str(file), "its content changed since its manifest was written", "rebuild it with: famevil")
    assert not (tmp_path / "out").exists()


SWAPPED_SHARD_READERS = {  # stage -> its command reading `shards` with the good `teacher`, writing `out`
    "teach": lambda shards, teacher, out: _teach(shards, out),
    "teach, a data-loader worker": lambda shards, teacher, out: [*_teach(shards, out), "--set", "workers=1"],  # the error crosses a process
    "dump": lambda shards, teacher, out: ["dump", "--teacher", teacher, "--shards", shards, "--out", out],
}


@pytest.mark.parametrize("stage", sorted(SWAPPED_SHARD_READERS))
def test_two_swapped_shards_of_equal_size_stop_the_stage(scr_artifacts, tmp_path, cli, stage):
    shards = _copy(scr_artifacts["shards"], tmp_path)
    first, second = _equal_sized_pair(shards, "fashiongen/train")
    swap = tmp_path / "swap.tar"
    first.rename(swap), second.rename(first), swap.rename(second)
    out = tmp_path / "out"
    result = cli(*SWAPPED_SHARD_READERS[stage](shards, scr_artifacts["teacher"], out))
    line = _one_line(result, "its content changed since its manifest was written", "rebuild it with: famevil")
    assert str(first) in line or str(second) in line
    assert not out.exists()


def test_a_consistent_manifest_over_a_corrupt_json_member_is_one_line(scr_artifacts, tmp_path, cli):
    shards = _copy(scr_artifacts["shards"], tmp_path)
    shard = _shard(shards, "fashiongen/val")
    _rewrite_shard(shard, _corrupt_first_json)
    _reseal(shards)
    _one_line(cli(*_evaluate(scr_artifacts["teacher"], shards, tmp_path / "out")), str(shard), ".json", "rebuild the shards with famevil prepare")


@pytest.mark.parametrize("subset", ["fashiongen/val", "fashiongen/train"])
def test_a_consistent_manifest_over_a_truncated_shard_is_one_line(scr_artifacts, tmp_path, cli, subset):
    shards = _copy(scr_artifacts["shards"], tmp_path)
    shard = _shard(shards, subset)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 + 100])  # cut inside a member
    _reseal(shards)
    out = tmp_path / "out"
    command = _evaluate(scr_artifacts["teacher"], shards, out) if subset.endswith("val") else _teach(shards, out)
    _one_line(cli(*command), str(shard), "rebuild the shards with famevil prepare")
    assert not out.exists()


@pytest.mark.parametrize("weights", [b"not safetensors at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      "], ids=["garbage", "bad header"])
def test_a_consistent_manifest_over_bad_weights_is_one_line(scr_artifacts, tmp_path, cli, weights):
    teacher = _copy(scr_artifacts["teacher"], tmp_path)
    (teacher / "model.safetensors").write_bytes(weights)
    _reseal(teacher)
    _one_line(cli(*_evaluate(teacher, scr_artifacts["shards"], tmp_path / "out")), str(teacher / "model.safetensors"), "not a readable safetensors file")


def test_teacher_outputs_holding_a_nan_are_refused_before_any_step(scr_artifacts, tmp_path, cli):
    outputs = _copy(scr_artifacts["teacher-outputs"], tmp_path)
    file = sorted((outputs / "outputs").iterdir())[0]
    stored = TeacherOutputs(outputs)
    keys = stored.keys_by_shard[file.stem]
    rows = stored.gather(keys)
    rows["logits"][0, 0] = float("nan")
    write_outputs(file, keys, rows)
    _reseal(outputs)
    result = cli(
        "distill", "--set", "model=famevil-tiny", "--max-steps", 1, "--shards", scr_artifacts["shards"], "--teacher-outputs", outputs, "--out", tmp_path / "out"
    )
    _one_line(result, str(file), "logits hold NaN or infinite values")


# The manifest's own fields -------------------------------------------------------------------------


def _edit(artifact: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    change(manifest)
    (artifact / "manifest.json").write_text(json.dumps(manifest))


EDITS = {
    "details": lambda manifest: manifest["details"].update(task="xmr"),
    "inputs": lambda manifest: manifest["inputs"][0].update(id="sha256:" + "2" * 64),
    "kind": lambda manifest: manifest.update(kind="student"),
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_verify_names_the_edited_manifest_field(scr_artifacts, tmp_path, cli, field):
    teacher = _copy(scr_artifacts["teacher"], tmp_path)
    _edit(teacher, EDITS[field])
    _one_line(cli("verify", teacher), str(teacher / "manifest.json"), f"its {field!r} field changed since it was written")


@pytest.mark.parametrize("files", [[], {"model.safetensors": 3}, {"model.safetensors": {"bytes": "many"}}, "x"])
def test_a_malformed_files_field_is_one_line(scr_artifacts, tmp_path, cli, files):
    teacher = _copy(scr_artifacts["teacher"], tmp_path)
    _edit(teacher, lambda manifest: manifest.update(files=files))
    _one_line(cli("verify", teacher), str(teacher / "manifest.json"), "'files' field is malformed")
    _one_line(cli(*_evaluate(teacher, scr_artifacts["shards"], tmp_path / "out")), "'files' field is malformed")


# Reproducible ids ----------------------------------------------------------------------------------


def test_identical_runs_give_identical_content_ids(tiny_shards, tmp_path):
    options = TINY | {"max_steps": 3, "checkpoint_every": 2}
    first, second = (teach("scr", tiny_shards, tmp_path / name, overrides=options).manifest for name in ("first", "second"))
    assert first.files == second.files
    assert first.content_id == second.content_id
    assert (tmp_path / "first" / "timings.jsonl").is_file()  # the run's wall-clock times, which the id leaves out


# Only finite weights are published -----------------------------------------------------------------


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture)
@pytest.mark.parametrize("steps", [1, 3], ids=["weights checked before publishing", "the loss diverges"])
def test_a_huge_kd_weight_publishes_nothing_and_is_named(tiny_shards, tiny_dumps, tmp_path, cli, steps):
    outputs = [option for task in TASK_NAMES for option in ("--teacher-outputs", tiny_dumps[task][1])]
    out = tmp_path / "student"
    result = cli("distill", "--set", "model=famevil-tiny", "--max-steps", steps, "--kd-weight", "1e308", "--shards", tiny_shards, *outputs, "--out", out)
    line = _one_line(result, "nothing was published", "--kd-weight 1e+308 is far above 1")
    assert "lower the learning rates" not in line.lower()
    if steps == 1:
        assert "tensors hold NaN or infinite values" in line
        assert not list((tmp_path / ".student.partial" / "checkpoints").iterdir())  # no state to resume into NaN either
    assert not out.exists()
