"""famevil report over several seeds: mean +- sd per metric and the student's mean relative gains,
paired by seed, from evaluation artifacts in their published layout."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from data_specs.manifest import InputRef, write_manifest
from stages.evaluate import METRICS_FILE, METRICS_SCHEMA_VERSION
from stages.report import report

# Each seed's teachers, one evaluation per task (XMR with its mean only: rows a run lacks stay empty).
TEACHERS = {
    0: {
        "xmr": {"full": {"mean": 60.0}, "random100": {"mean": 70.0}},
        "tgir": {"avg_r10": 40.0, "avg_r50": 80.0},
        "scr": {"accuracy": 50.0, "macro_f1": 40.0},
        "fic": {"bleu4": 5.0, "cider": 40.0},
    },
    1: {
        "xmr": {"full": {"mean": 62.0}, "random100": {"mean": 72.0}},
        "tgir": {"avg_r10": 44.0, "avg_r50": 84.0},
        "scr": {"accuracy": 52.0, "macro_f1": 42.0},
        "fic": {"bleu4": 5.0, "cider": 44.0},
    },
}


def _scaled(metrics: dict, factor: float) -> dict:
    return {key: _scaled(value, factor) if isinstance(value, dict) else value * factor for key, value in metrics.items()}


def _evaluation(root: Path, name: str, seed: int, metrics: dict) -> Path:
    """A metrics artifact made from a checkpoint folder that says its training seed."""
    model = root / f"model-{name}"
    model.mkdir()
    save_file({"weight": torch.zeros(2, 3)}, model / "model.safetensors")
    (model / "train_config.json").write_text(json.dumps({"seed": seed}))
    out = root / f"eval-{name}"
    out.mkdir()
    (out / METRICS_FILE).write_text(json.dumps({"schema_version": METRICS_SCHEMA_VERSION, "metrics": metrics, "warnings": []}))
    write_manifest(out, "metrics", inputs=[InputRef("model", "teacher", f"sha256:{name}", str(model))])
    return out


def _task_evaluations(root: Path, seed: int) -> list[Path]:
    return [_evaluation(root, f"teacher-{task}-{seed}", seed, {task: metrics}) for task, metrics in TEACHERS[seed].items()]


def test_several_seeds_give_mean_sd_and_relative_gains_paired_by_seed(tmp_path):
    teachers = _task_evaluations(tmp_path, 0) + _task_evaluations(tmp_path, 1)
    # The student is 10% above its own seed's teachers on every metric; the baseline 10% below them.
    students = [_evaluation(tmp_path, f"student-{seed}", seed, _scaled(TEACHERS[seed], 1.1)) for seed in (0, 1)]
    baselines = [_evaluation(tmp_path, f"baseline-{seed}", seed, _scaled(TEACHERS[seed], 0.9)) for seed in (1, 0)]  # any order
    table = report(teachers, students, baselines)

    recall10 = next(row for row in table.rows if row[0] == "TGIR avg R@10")
    assert recall10[1].mean == pytest.approx(42.0) and recall10[1].sd == pytest.approx(statistics.stdev([40.0, 44.0])) and recall10[1].runs == 2
    assert recall10[2].mean == pytest.approx(46.2) and recall10[3].mean == pytest.approx(37.8)
    assert recall10[4].mean == pytest.approx(4.2)  # student - teacher, of the means
    assert table.relative_gains["over teachers"].mean == pytest.approx(10.0)
    assert table.relative_gains["over teachers"].sd == pytest.approx(0.0, abs=1e-9)
    assert table.relative_gains["over baseline"].mean == pytest.approx(100 * (1.1 / 0.9 - 1))
    assert table.rows[-1][0] == "parameters"


def test_a_student_seed_without_its_own_teacher_is_compared_with_the_teachers_mean(tmp_path):
    teachers = _task_evaluations(tmp_path, 0) + _task_evaluations(tmp_path, 1)
    student = _evaluation(tmp_path, "student-7", 7, _scaled(TEACHERS[0], 1.0))
    gain = report(teachers, [student]).relative_gains["over teachers"]
    assert gain.runs == 1 and gain.mean < 0  # seed 0's figures against the mean of seeds 0 and 1


def test_two_teachers_of_one_task_and_seed_are_refused(tmp_path, cli):
    teachers = _task_evaluations(tmp_path, 0)
    again = _evaluation(tmp_path, "teacher-scr-again", 0, {"scr": TEACHERS[0]["scr"]})
    student = _evaluation(tmp_path, "student-0", 0, TEACHERS[0])
    result = cli("report", *[arg for path in [*teachers, again] for arg in ("--teacher", str(path))], "--student", str(student))
    assert result.exit_code != 0 and "a second scr teacher with seed 0" in result.output


def test_the_command_prints_mean_and_sd_and_the_gains(tmp_path, cli):
    teachers = _task_evaluations(tmp_path, 0) + _task_evaluations(tmp_path, 1)
    students = [_evaluation(tmp_path, f"student-{seed}", seed, _scaled(TEACHERS[seed], 1.1)) for seed in (0, 1)]
    arguments = [arg for path in teachers for arg in ("--teacher", path)] + [arg for path in students for arg in ("--student", path)]
    shown = cli("report", *arguments)
    assert shown.exit_code == 0, shown.output
    assert "42.00 ± 2.83" in shown.output and "mean +- sd over 2 runs" in shown.output
    assert "student's mean relative gain over teachers: +10.00 ± 0.00%" in shown.output
    as_json = json.loads(cli("report", *arguments, "--json").output)
    assert as_json["relative_gains"]["over teachers"]["mean"] == pytest.approx(10.0)
