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
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main

import stages.search as search_stage
from data_specs.errors import FamevilError
from data_specs.shards import read_sizes
from famevil.data.images import MAX_PIXELS
from famevil.limits import TRAINING_BATCH
from famevil.optional import optional_module
from famevil_cli.app import COMMANDS, app
from stages.index import index
from tests.conftest import RunsCode
from tests.test_images import png_header

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


@pytest.mark.parametrize(("kind", "damage", "says", "command"), CASES)
def test_a_damaged_input_is_one_line_exit_1_and_nothing_published(scr_artifacts, tmp_path, cli, kind, damage, says, command):
    damaged = tmp_path / "damaged" / scr_artifacts[kind].name
    shutil.copytree(scr_artifacts[kind], damaged)
    damage(damaged, tmp_path)
    out = tmp_path / "out"
    result = cli(*command(damaged, scr_artifacts["shards"], scr_artifacts["teacher"], out))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(damaged) in line and says in line, line
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert not (tmp_path / "code-ran").exists()


# Options and files that are not artifacts: each refused, or read, in one line, before any work -------


def _one_error_line(result) -> str:
    """The error line of a command that failed as a user's error should: exit 1, one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# Options that count updates cost time, not memory or disk; the others are sizes and are bounded.
UNBOUNDED_INTEGERS = {
    "max_steps": "updates cost time, not memory",
    "max_new_tokens": "generate() caps it at the text context",
    "image_size": "synth checks its range itself, in its own line",
}


def _integer_options() -> list[tuple[str, object]]:
    group = typer.main.get_command(app)
    return [
        (f"{entry.name} {option.opts[0]}", option)
        for entry in COMMANDS
        for option in group.commands[entry.name].loaded.params
        if getattr(option, "type_descriptor", None) is not None and option.type_descriptor.annotation is int
    ]


@pytest.mark.parametrize(("name", "option"), _integer_options(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_size_option_has_an_upper_bound_and_its_help_says_why(name, option):
    if option.name in UNBOUNDED_INTEGERS:
        assert option.max is None
        return
    assert option.max is not None, f"{name}: no upper bound"
    assert option.name == "port" or "At most" in option.help, f"{name}: its help does not say why it stops at {option.max}"


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["evaluate", "--beams", 1000, "--out", "eval", "--shards", "shards"], "'--beams'"),
        (["caption", "--model", "student", "--beams", 1000, "photo.jpg"], "'--beams'"),
        (["evaluate", "--batch-size", 99999999, "--out", "eval", "--shards", "shards"], "'--batch-size'"),
        (["index", "--model", "student", "--images", "photos", "--out", "index", "--batch-size", 99999999], "'--batch-size'"),
        (["dump", "--teacher", "teacher", "--shards", "shards", "--out", "outputs", "--top-k", 100000], "'--top-k'"),
        (["prepare", "--fashiongen", "raw", "--out", "shards", "--shard-size", 10**9], "'--shard-size'"),
        (["search", "index", "red", "--top", 10**9], "'--top'"),
    ],
    ids=lambda value: " ".join(map(str, value[:2])) if isinstance(value, list) else "",
)
def test_a_size_option_past_its_bound_is_refused_before_anything_is_read(cli, command, flag):
    result = cli(*command)  # none of the paths exists: the refusal comes first
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert flag in result.output and "less than or equal to" in result.output, result.output


def test_a_training_size_past_its_bound_is_one_line_that_says_why(cli, tmp_path):
    line = _one_error_line(cli("teach", "--task", "scr", "--shards", tmp_path / "shards", "--out", tmp_path / "out", "--set", "batch_size=99999999"))
    assert line == f"error: --set batch_size=99999999: batch_size must be from 1 to {TRAINING_BATCH.most} ({TRAINING_BATCH.why})"


@pytest.mark.parametrize(
    ("option", "suggested"),
    [(["--task", "xmrr"], "unknown task 'xmrr' (did you mean xmr?)"), (["--task", "scr", "--set", "bach_size=8"], "'bach_size' (did you mean batch_size?)")],
    ids=["task", "set"],
)
def test_a_typo_in_a_name_suggests_the_closest_names(cli, tmp_path, option, suggested):
    line = _one_error_line(cli("teach", *option, "--shards", tmp_path / "shards", "--out", tmp_path / "out"))
    assert suggested in line


def test_ias_targets_without_ias_balancing_are_an_error_naming_both_flags(cli, tmp_path):
    line = _one_error_line(cli("distill", "--shards", tmp_path / "shards", "--out", tmp_path / "out", "--kd-weight", 0, "--ias-target", "xmr=50"))
    assert "--ias-target goes with --balancing ias" in line and "balances with none" in line


def test_famevil_load_of_a_mistyped_folder_is_its_one_line_not_the_readers_frames():
    shown = subprocess.run([sys.executable, "-c", "import famevil; famevil.load('typo')"], capture_output=True, text=True, timeout=120)
    lines = shown.stderr.strip().splitlines()
    assert lines[-1] == "data_specs.errors.FamevilError: typo: no such directory"
    assert not [line for line in lines if "/data_specs/" in line or "/famevil/checkpoint.py" in line], shown.stderr  # the caller's frame and load's alone
    assert FamevilError("typo: no such directory")._render_traceback_() == ["FamevilError: typo: no such directory"]  # IPython and Jupyter show this


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A PNG that declares 12000 x 12000 pixels: decoded, 430 MB of RGB from a file of a few bytes."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_header(12000, 12000))
    return path


@pytest.fixture(scope="module")
def small_index(tiny_student, tiny_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "index"
    index(tiny_student, tiny_raw / "fashioniq" / "images", out, batch_size=16)
    return out


@pytest.mark.parametrize("use", ["caption", "classify", "search --image"])
def test_a_decompression_bomb_is_one_line(cli, tiny_student, small_index, bomb, use):
    command = {
        "caption": ["caption", "--model", tiny_student, bomb],
        "classify": ["classify", "--model", tiny_student, bomb, "--text", "Navy Cardigan."],
        "search --image": ["search", small_index, "--image", bomb, "--modify", "is red"],
    }[use]
    line = _one_error_line(cli(*command))
    assert line == f"error: {bomb}: 12000x12000 pixels is more than famevil decodes ({MAX_PIXELS:,}); shrink the image"


@pytest.mark.parametrize(
    ("content", "says"), [(b"[]", "has no model_cfg with a vision_cfg"), (b"\xff\xfe{}", "is not UTF-8 text")], ids=["a list", "not UTF-8"]
)
@pytest.mark.parametrize("use", ["params --model", "teach --base"])
def test_a_malformed_open_clip_config_is_one_line(cli, tmp_path, content, says, use):
    folder = tmp_path / "open_clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_bytes(content)
    (folder / "open_clip_model.safetensors").write_bytes(b"")
    base = f"local-dir:{folder}"
    command = {
        "params --model": ["params", "--model", base],
        "teach --base": ["teach", "--task", "scr", "--base", base, "--shards", tmp_path, "--out", tmp_path / "out"],
    }
    line = _one_error_line(cli(*command[use]))
    assert line.startswith(f"error: --base {base}: {folder / 'open_clip_config.json'} {says}") and line.endswith("export or download the folder again")


def test_search_html_that_cannot_be_written_is_one_line(cli, small_index, tmp_path, monkeypatch):
    pages = tmp_path / "pages"
    pages.mkdir()
    render = search_stage.results_page

    def folder_removed_meanwhile(*args):
        shutil.rmtree(pages)  # as a clean-up running at the same time would: the folder checked is gone by the write
        return render(*args)

    monkeypatch.setattr(search_stage, "results_page", folder_removed_meanwhile)
    line = _one_error_line(cli("search", small_index, "red dress", "--html", pages / "hits.html"))
    assert line.startswith(f"error: --html {pages / 'hits.html'}: cannot write it (No such file or directory)")


def test_a_missing_optional_package_is_one_line_naming_how_to_install_it():
    assert optional_module("json", "--x", "json", "nothing to install") is json
    with pytest.raises(FamevilError) as raised:
        optional_module("famevil_no_such_package", "--approximate", "FAISS", "pip install faiss-cpu (or famevil[faiss])")
    assert str(raised.value) == "--approximate needs FAISS: pip install faiss-cpu (or famevil[faiss])"
