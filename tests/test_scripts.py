"""The paper's pipeline script, run whole at tiny scale with its own flags: two CPU processes per
training stage through accelerate launch, tiny presets and a tiny pretrained base in place of
ViT-B-16 and OpenAI's weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_specs.manifest import read_manifest
from stages.pretrain import pretrain
from tests.test_ablations import _environment_without_install
from tests.test_evaluate_search import shop_from_shards

pytestmark = pytest.mark.slow  # the whole pipeline, with accelerate launching two processes per training stage

ROOT = Path(__file__).resolve().parents[1]
TINY_PRESET = {
    "model": "famevil-tiny",
    "batch_size": 8,
    "max_steps": 2,
    "warmup_steps": 1,
    "lr_backbone": 1e-4,
    "lr_adapters": 1e-3,
    "batches_per_epoch": 4,
    "eval_every": 0,
    "checkpoint_every": 2,
    "mixed_precision": "no",
    "workers": 0,
}


def test_the_paper_script_runs_every_stage_with_its_flags(tiny_raw, tiny_shards, tmp_path):
    base = tmp_path / "base"
    pretrain(tiny_shards, base, overrides=TINY_PRESET | {"max_steps": 1})
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps(TINY_PRESET))
    environment = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",
        "FASHIONGEN": str(tiny_raw / "fashiongen"),
        "FASHIONIQ": str(tiny_raw / "fashioniq"),
        "GPUS": "2",
        "BASE": str(base),
        "TEACHER_PRESET": str(preset),
        "STUDENT_PRESET": str(preset),
        "TGIR_STEPS": "2",
    }
    run = tmp_path / "paper"
    finished = subprocess.run(["bash", ROOT / "scripts" / "paper.sh", run], env=environment, capture_output=True, text=True, timeout=1200)
    assert finished.returncode == 0, finished.stderr[-4000:]
    for task in ("xmr", "tgir", "scr", "fic"):
        assert read_manifest(run / f"teacher-{task}").details["processes"] == 2
        assert read_manifest(run / f"outputs-{task}").kind == "teacher-outputs"
        assert read_manifest(run / "eval" / f"teacher-{task}").kind == "metrics"
    student = read_manifest(run / "student")
    assert student.details["processes"] == 2 and len(set(student.details["replica_digests"])) == 1
    assert read_manifest(run / "baseline").details["kd_weight"] == 0
    for row in ("XMR mean R (random 100)", "TGIR avg R@10", "SCR accuracy", "FIC CIDEr", "parameters", "multi-task model"):
        assert row in finished.stdout
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<svg" in page and "FIC CIDEr" in page  # the page with its curves, beside the printed table


def test_the_shop_script_runs_a_catalogue_from_shards_to_a_measured_index(tiny_shards, tmp_path):
    """Photos and copy without pairs: three teachers (no composed retrieval), a student of those three,
    an index by product that answers text and similar-item search, and the shop's queries measured."""
    views = shop_from_shards(tiny_shards, tmp_path / "shop", ("train", "val"), view_products=False)
    first = next(record for _, record in views if record["product_id"] == views[-1][1]["product_id"])
    queries = tmp_path / "shop" / "queries.csv"
    queries.write_text(f"query,relevant\n{first['title']},{first['product_id']}\n", encoding="utf-8")
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps(TINY_PRESET))
    settings = {"BASE": "", "TEACHER_PRESET": str(preset), "STUDENT_PRESET": str(preset), "QUERIES": str(queries)}
    run = tmp_path / "run"
    arguments = [tmp_path / "shop" / "catalogue.csv", tmp_path / "shop" / "images", run]
    finished = subprocess.run(
        ["bash", ROOT / "scripts" / "shop.sh", *arguments], env=_environment_without_install(tmp_path) | settings, capture_output=True, text=True, timeout=1200
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    assert read_manifest(run / "student").details["tasks"] == ["xmr", "scr", "fic"] and not (run / "teacher-tgir").exists()
    assert read_manifest(run / "index").details["searches"] == ["text", "similar"]
    assert read_manifest(run / "eval" / "search").details["count"] == 1
    assert f"famevil serve {run / 'index'}" in finished.stdout


def _lanes(tmp_path, arguments: str, lanes: int) -> subprocess.CompletedProcess:
    """scripts/_stage.sh's lanes over a job that logs its start and end, failing for the argument 'bad'."""
    script = f"""
        set -euo pipefail
        source {ROOT / "scripts" / "_stage.sh"}
        run=outer  # a job reads the caller's variables, whatever lanes names its own
        job() {{ echo "start $1 $OMP_NUM_THREADS" >> {tmp_path / "log"}; sleep 0.3; echo "end $1" >> {tmp_path / "log"}; echo "said $1 in $run"; [ "$1" != bad ]; }}
        lanes job {arguments}
        echo finished
    """
    return subprocess.run(["bash", "-c", script], env=os.environ | {"LANES": str(lanes)}, capture_output=True, text=True, timeout=60)


def test_lanes_run_side_by_side_and_stop_after_a_failure(tmp_path):
    finished = _lanes(tmp_path, "a b c", lanes=2)
    assert finished.returncode == 0 and finished.stdout.splitlines()[-1] == "finished"
    assert "[a] said a in outer" in finished.stdout and "[c] said c in outer" in finished.stdout
    events = (tmp_path / "log").read_text().split("\n")
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # nproc's count: an equal share of the cores each
    assert set(events[:2]) == {f"start a {threads}", f"start b {threads}"}
    assert events.index(f"start c {threads}") > max(events.index("end a"), events.index("end b"))  # two at a time
    (tmp_path / "log").unlink()
    failed = _lanes(tmp_path, "bad a c", lanes=2)
    assert failed.returncode != 0 and "finished" not in failed.stdout
    assert "start c" not in (tmp_path / "log").read_text()  # nothing more starts after a failure
