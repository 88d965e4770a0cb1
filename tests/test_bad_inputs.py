"""The bad-input corpus: every damaged artifact, against every stage that reads that kind of artifact,
gives one line that names the file and the fix, exit 1, no traceback, and publishes nothing.

A case is (what is damaged, how); each is built on a fresh copy of a small artifact the tests make.
A new stage joins by adding its command to READERS for the kinds it reads; a new artifact kind by
adding its damages to DAMAGES.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from data_specs.shards import read_sizes
from stages.dump import dump
from stages.teach import teach
from tests.conftest import TINY, RunsCode

Damage = Callable[[Path, Path], None]  # (a copy of the artifact, the test's folder)


def _shard(shards: Path, subset: str = "fashiongen/val") -> Path:
    return shards / read_sizes(shards)["subsets"][subset]["shards"][0]["path"]


def _cut_at_a_member(shards: Path, _: Path) -> None:
    shard = _shard(shards)
    with tarfile.open(shard) as archive:
        members = [(member, archive.extractfile(member).read()) for member in archive.getmembers()]
    with tarfile.open(shard, "w") as archive:
        for member, data in members[:4]:
            archive.addfile(member, io.BytesIO(data))


def _delete_a_shard(shards: Path, _: Path) -> None:
    _shard(shards).unlink()


def _swap_train_for_val(shards: Path, _: Path) -> None:
    shutil.copyfile(_shard(shards, "fashiongen/val"), _shard(shards, "fashiongen/train"))


def _edit_the_content_id(artifact: Path, _: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["content_id"] = "sha256:" + "0" * 64
    (artifact / "manifest.json").write_text(json.dumps(manifest))


def _weights(content: Callable[[bytes], bytes]) -> Damage:
    def damage(model: Path, _: Path) -> None:
        path = model / "model.safetensors"
        path.write_bytes(content(path.read_bytes()))

    return damage


def _pickle_in_place_of(relative: Callable[[Path], Path]) -> Damage:
    def damage(artifact: Path, folder: Path) -> None:
        relative(artifact).write_bytes(pickle.dumps(RunsCode(folder / "code-ran")))

    return damage


DAMAGES: dict[str, list[tuple[str, Damage, str]]] = {  # kind -> (case, damage, what the line says)
    "shards": [
        ("a shard cut at a member", _cut_at_a_member, "where its manifest lists"),
        ("a listed shard deleted", _delete_a_shard, "missing; rebuild it with"),
        ("a train shard swapped for a val shard", _swap_train_for_val, "where its manifest lists"),
        ("an edited content id", _edit_the_content_id, "its content id is not the one of its file list"),
        ("a pickle in place of a shard", _pickle_in_place_of(_shard), "where its manifest lists"),
    ],
    "teacher": [
        ("weights cut short", _weights(lambda data: data[: len(data) // 2]), "where its manifest lists"),
        ("weights emptied", _weights(lambda data: b""), "where its manifest lists"),
        ("weights randomised", _weights(lambda data: bytes(reversed(data))), "its content changed since its manifest was written"),
        ("a pickle in place of the weights", _pickle_in_place_of(lambda model: model / "model.safetensors"), "model.safetensors"),
        ("an edited content id", _edit_the_content_id, "its content id is not the one of its file list"),
    ],
    "teacher-outputs": [
        ("a pickle in place of the outputs", _pickle_in_place_of(lambda outputs: sorted((outputs / "outputs").iterdir())[0]), "rebuild it with"),
        ("an edited content id", _edit_the_content_id, "its content id is not the one of its file list"),
    ],
}

# kind -> (stage, its command reading the damaged artifact `a`, with the good `shards` and `teacher`, writing `out`)
READERS: dict[str, list[tuple[str, Callable[[Path, Path, Path, Path], list]]]] = {
    "shards": [
        ("evaluate", lambda a, shards, teacher, out: ["evaluate", "--model", teacher, "--shards", a, "--out", out]),
        ("teach", lambda a, shards, teacher, out: ["teach", "--task", "scr", "--set", "model=famevil-tiny", "--max-steps", 1, "--shards", a, "--out", out]),
        ("dump", lambda a, shards, teacher, out: ["dump", "--teacher", teacher, "--shards", a, "--out", out]),
    ],
    "teacher": [
        ("evaluate", lambda a, shards, teacher, out: ["evaluate", "--model", a, "--shards", shards, "--out", out]),
        (
            "teach --base",
            lambda a, shards, teacher, out: [
                "teach",
                "--task",
                "scr",
                "--set",
                "model=famevil-tiny",
                "--max-steps",
                1,
                "--base",
                a,
                "--shards",
                shards,
                "--out",
                out,
            ],
        ),
        ("dump", lambda a, shards, teacher, out: ["dump", "--teacher", a, "--shards", shards, "--out", out]),
    ],
    "teacher-outputs": [
        (
            "distill",
            lambda a, shards, teacher, out: [
                "distill",
                "--set",
                "model=famevil-tiny",
                "--max-steps",
                1,
                "--shards",
                shards,
                "--teacher-outputs",
                a,
                "--out",
                out,
            ],
        ),
    ],
}

CASES = [
    pytest.param(kind, damage, says, command, id=f"{stage}: {case}")
    for kind, damages in DAMAGES.items()
    for case, damage, says in damages
    for stage, command in READERS[kind]
]


@pytest.fixture(scope="module")
def artifacts(tiny_shards, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    teacher = root / "teacher-scr"
    teach("scr", tiny_shards, teacher, overrides=TINY | {"max_steps": 1, "checkpoint_every": 1})
    dump(teacher, tiny_shards, root / "outputs-scr")
    return {"shards": tiny_shards, "teacher": teacher, "teacher-outputs": root / "outputs-scr"}


@pytest.mark.parametrize(("kind", "damage", "says", "command"), CASES)
def test_a_damaged_input_is_one_line_exit_1_and_nothing_published(artifacts, tmp_path, cli, kind, damage, says, command):
    damaged = tmp_path / "damaged" / artifacts[kind].name
    shutil.copytree(artifacts[kind], damaged)
    damage(damaged, tmp_path)
    out = tmp_path / "out"
    result = cli(*command(damaged, artifacts["shards"], artifacts["teacher"], out))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(damaged) in line and says in line, line
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert not (tmp_path / "code-ran").exists()
