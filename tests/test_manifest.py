"""Manifests and staging: what makes a directory an artifact, and what a stage refuses."""

from __future__ import annotations

import json

import pytest

from data_specs.errors import FamevilError
from data_specs.manifest import MANIFEST_FILE, file_listing, listing_id, read_manifest, require_artifact, verify_artifact, write_manifest
from data_specs.staging import check_destination, partial_path, staging


def _artifact(root, kind="shards", payload="a"):
    root.mkdir(parents=True)
    (root / "data.txt").write_text(payload)
    return write_manifest(root, kind, details={"n": 1}, command="famevil prepare --out x")


def test_manifest_round_trip_and_content_id(tmp_path):
    written = _artifact(tmp_path / "a")
    read = read_manifest(tmp_path / "a")
    assert read == written
    assert (read.kind, read.schema_version, read.command) == ("shards", 1, "famevil prepare --out x")
    assert read.files == file_listing(tmp_path / "a")
    verify_artifact(tmp_path / "a", read, full=True)
    same = _artifact(tmp_path / "b")
    other = _artifact(tmp_path / "c", payload="b")
    assert same.content_id == written.content_id != other.content_id


def test_a_manifest_of_version_1_is_read_and_verified_by_its_own_rule(tmp_path):
    """Artifacts written before the content id covered the manifest's fields still verify."""
    written = _artifact(tmp_path / "old")
    old = json.loads((tmp_path / "old" / MANIFEST_FILE).read_text())
    del old["manifest_version"], old["field_digests"]
    old["content_id"] = listing_id(old["files"])  # version 1: the id of the file list alone
    (tmp_path / "old" / MANIFEST_FILE).write_text(json.dumps(old))
    read = require_artifact(tmp_path / "old", "shards")
    assert read.manifest_version == 1 and read.files == written.files
    assert verify_artifact(tmp_path / "old", read, full=True) == 1
    (tmp_path / "old" / "data.txt").write_text("b")
    with pytest.raises(FamevilError, match="data.txt: its content changed"):
        verify_artifact(tmp_path / "old", read, full=True)


def test_the_content_id_covers_the_fields_but_not_the_command_or_the_time(tmp_path):
    first = _artifact(tmp_path / "a")
    again = write_manifest(tmp_path / "a", "shards", details={"n": 1}, command="famevil prepare --out elsewhere --overwrite")
    assert again.content_id == first.content_id
    assert write_manifest(tmp_path / "a", "shards", details={"n": 2}).content_id != first.content_id


def test_a_newer_manifest_version_is_refused(tmp_path):
    _artifact(tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / MANIFEST_FILE).read_text())
    (tmp_path / "s" / MANIFEST_FILE).write_text(json.dumps(manifest | {"manifest_version": 3}))
    with pytest.raises(FamevilError, match="manifest version 3 is newer than this famevil reads"):
        require_artifact(tmp_path / "s", "shards")


def test_wrong_kind_is_refused_with_the_rebuild_command(tmp_path):
    _artifact(tmp_path / "raw", kind="raw-dataset")
    with pytest.raises(FamevilError, match=r"is a 'raw-dataset' artifact, expected 'shards'.*famevil prepare --fashiongen"):
        require_artifact(tmp_path / "raw", "shards")


def test_unknown_schema_version_is_refused(tmp_path):
    _artifact(tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / MANIFEST_FILE).read_text())
    manifest["schema_version"] = 99
    (tmp_path / "s" / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(FamevilError, match=r"schema version 99 is not one this famevil reads \(1\); rebuild it with: famevil prepare"):
        require_artifact(tmp_path / "s", "shards")


def _no_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty", "raw-dataset", "not a famevil artifact.*rebuild it with: famevil synth"


def _broken_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / MANIFEST_FILE).write_text("{")
    return tmp_path / "empty", None, "unreadable manifest"


def _no_directory(tmp_path):
    return tmp_path / "nowhere", "shards", "no such directory"


@pytest.mark.parametrize("make_bad_artifact", [_no_manifest, _broken_manifest, _no_directory])
def test_missing_or_broken_manifest_is_refused(tmp_path, make_bad_artifact):
    root, kind, message = make_bad_artifact(tmp_path)
    with pytest.raises(FamevilError, match=message):
        require_artifact(root, kind)


def test_staging_resumes_only_the_same_plan_and_publishes_atomically(tmp_path):
    out = tmp_path / "out"
    with staging(out, {"seed": 1}) as stage:
        assert not stage.resumed and stage.partial == partial_path(out) and not out.exists()
        (stage.partial / "piece").write_text("done")
    with staging(out, {"seed": 1}) as stage:
        assert stage.resumed and (stage.partial / "piece").read_text() == "done"
    with staging(out, {"seed": 1}, resume=False) as stage:
        assert not stage.resumed and not (stage.partial / "piece").exists()
    with staging(out, {"seed": 2}) as stage:
        assert not stage.resumed
        (stage.partial / "piece").write_text("new")
        stage.publish()
    assert (out / "piece").read_text() == "new" and not partial_path(out).exists() and not (out / ".plan.json").exists()
    with pytest.raises(FamevilError, match="already exists; pass --overwrite"):
        check_destination(out, overwrite=False)
    check_destination(out, overwrite=True)


def test_a_second_writer_of_the_same_destination_is_refused(tmp_path):
    with staging(tmp_path / "out", {}), pytest.raises(FamevilError, match="another famevil process is writing it"), staging(tmp_path / "out", {}):
        pass


def test_unwritable_destination_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FamevilError, match="is not a directory"):
        check_destination(tmp_path / "file" / "out", overwrite=False)


@pytest.mark.parametrize(
    ("out", "relation"),
    [("inputs/shards", "is"), ("inputs", "contains"), ("inputs/shards/sub", "lies inside")],
)
def test_an_output_that_would_destroy_an_input_is_refused(tmp_path, out, relation):
    source = tmp_path / "inputs" / "shards"
    source.mkdir(parents=True)
    (source / "a-file").write_text("kept")
    with pytest.raises(FamevilError, match=f"--out .*: {relation} the input .*shards, which the stage would destroy"):
        check_destination(tmp_path / out, overwrite=True, inputs=[source, None, "ViT-B-16:openai"])
    assert (source / "a-file").read_text() == "kept"
    check_destination(tmp_path / "elsewhere", overwrite=True, inputs=[source])


def test_a_run_in_progress_is_named_as_such_not_as_an_interrupted_one(tmp_path):
    with staging(tmp_path / "out", {}), pytest.raises(FamevilError, match="another famevil process is writing it now"):
        check_destination(tmp_path / "out", overwrite=False)
    (tmp_path / ".out.lock").write_text("")  # left by a killed stage: not held
    check_destination(tmp_path / "out", overwrite=False)
