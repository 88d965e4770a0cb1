"""famevil report over several seeds: mean +- sd per metric and the student's mean relative gains,
paired by seed, from evaluation artifacts in their published layout."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from selenium.webdriver.common.by import By

from data_specs.evaluations import METRICS_FILE, METRICS_SCHEMA_VERSION
from data_specs.manifest import InputRef, write_manifest
from famevil.report.table import build_report
from famevil.tasks import TASKS
from stages import report as report_stage
from stages.distill import distill
from stages.evaluate import evaluate
from tests.conftest import TINY

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


def _evaluation(root: Path, name: str, seed: int, metrics: dict, log: list[dict] = (), records: dict[str, list[dict]] | None = None) -> Path:
    """A metrics artifact made from a checkpoint folder that says its training seed, with the
    checkpoint's training log and the evaluation's prediction records (by file stem) if given."""
    model = root / f"model-{name}"
    model.mkdir()
    save_file({"weight": torch.zeros(2, 3)}, model / "model.safetensors")
    (model / "train_config.json").write_text(json.dumps({"seed": seed, "batch_size": 8, "gradient_accumulation": 1}))
    write_manifest(model, "teacher", inputs=[], details={"steps": 10, "processes": 1})
    if log:
        (model / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in log))
    out = root / f"eval-{name}"
    out.mkdir()
    (out / METRICS_FILE).write_text(json.dumps({"schema_version": METRICS_SCHEMA_VERSION, "metrics": metrics, "warnings": []}))
    for stem, lines in (records or {}).items():
        (out / f"{stem}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_manifest(out, "metrics", inputs=[InputRef("model", "teacher", f"sha256:{name}", str(model))])
    return out


def _task_evaluations(root: Path, seed: int) -> list[Path]:
    return [_evaluation(root, f"teacher-{task}-{seed}", seed, {task: metrics}) for task, metrics in TEACHERS[seed].items()]


def test_several_seeds_give_mean_sd_and_relative_gains_paired_by_seed(tmp_path):
    teachers = _task_evaluations(tmp_path, 0) + _task_evaluations(tmp_path, 1)
    # The student is 10% above its own seed's teachers on every metric; the baseline 10% below them.
    students = [_evaluation(tmp_path, f"student-{seed}", seed, _scaled(TEACHERS[seed], 1.1)) for seed in (0, 1)]
    baselines = [_evaluation(tmp_path, f"baseline-{seed}", seed, _scaled(TEACHERS[seed], 0.9)) for seed in (1, 0)]  # any order
    table = build_report(teachers, students, baselines)

    recall10 = next(row for row in table.rows if row[0] == "TGIR avg R@10")
    assert recall10[1].mean == pytest.approx(42.0) and recall10[1].sd == pytest.approx(statistics.stdev([40.0, 44.0])) and recall10[1].runs == 2
    assert recall10[2].mean == pytest.approx(46.2) and recall10[3].mean == pytest.approx(37.8)
    assert recall10[4].mean == pytest.approx(4.2)  # student - teacher, of the means
    assert table.relative_gains["over teachers"].mean == pytest.approx(10.0)
    assert table.relative_gains["over teachers"].sd == pytest.approx(0.0, abs=1e-9)
    assert table.relative_gains["over baseline"].mean == pytest.approx(100 * (1.1 / 0.9 - 1))
    assert table.rows[-2][0] == "parameters"
    assert table.rows[-1] == ["training samples", "320", "80", "80", ""]  # 10 updates of 8 each; the teachers' together


def test_a_student_seed_without_its_own_teacher_is_compared_with_the_teachers_mean(tmp_path):
    teachers = _task_evaluations(tmp_path, 0) + _task_evaluations(tmp_path, 1)
    student = _evaluation(tmp_path, "student-7", 7, _scaled(TEACHERS[0], 1.0))
    gain = build_report(teachers, [student]).relative_gains["over teachers"]
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


# A student that logged both losses of two tasks and validated twice.
STUDENT_LOG = [
    {"step": 1, "loss_scr": 2.0, "kd_scr": 1.5, "lr_backbone": 1e-4, "samples_per_s": 10.0},
    {"step": 2, "loss_xmr": 1.0, "kd_xmr": 0.8, "lr_backbone": 1e-4, "samples_per_s": 10.0},
    {"step": 2, "validation": {"scr.accuracy": 40.0, "score": 40.0}},
    {"step": 3, "loss_scr": 1.0, "kd_scr": 0.9, "lr_backbone": 1e-4, "samples_per_s": 10.0},
    {"step": 4, "loss_xmr": 0.5, "kd_xmr": 0.4, "lr_backbone": 1e-4, "samples_per_s": 10.0},
    {"step": 4, "validation": {"scr.accuracy": 55.0, "score": 55.0}},
]
# Four BAGS (one called HATS), two COATS (both called BAGS), one HATS.
CLASSIFIED = [
    {"task": "scr", "key": f"val-{index}", "label": label, "predicted": predicted}
    for index, (label, predicted) in enumerate(
        [("BAGS", "BAGS"), ("COATS", "BAGS"), ("BAGS", "BAGS"), ("HATS", "HATS"), ("BAGS", "HATS"), ("COATS", "BAGS"), ("BAGS", "BAGS")]
    )
]


def _arguments(teachers: list[Path], students: list[Path]) -> list:
    return [arg for path in teachers for arg in ("--teacher", path)] + [arg for path in students for arg in ("--student", path)]


def test_the_json_and_the_page_have_every_section(tmp_path, cli):
    teachers = _task_evaluations(tmp_path, 0)
    student = _evaluation(tmp_path, "student-0", 0, TEACHERS[0], log=STUDENT_LOG, records={"classifications": CLASSIFIED})
    page = tmp_path / "report.html"
    shown = cli("report", *_arguments(teachers, [student]), "--json", "--html", page)
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert payload["parameters"] == {"single-task teachers": 4 * 6, "distilled student": 6}
    sections = payload["sections"]
    curves = {run["role"]: run for run in sections["curves"]}
    assert list(curves) == ["teacher (xmr)", "teacher (tgir)", "teacher (scr)", "teacher (fic)", "student"]
    assert list(curves["student"]["losses"]) == ["loss_xmr", "kd_xmr", "loss_scr", "kd_scr"]
    assert curves["student"]["losses"]["loss_scr"] == [[1.0, 2.0], [3.0, 1.0]] and curves["student"]["validation"] == [[2, 40.0], [4, 55.0]]
    assert "no training log" in curves["teacher (xmr)"]["note"]
    (confusion,) = sections["confusions"]
    assert confusion["task"] == "sub-category recognition" and confusion["classes"] == ["BAGS", "COATS", "HATS"]
    assert confusion["counts"] == [[3, 0, 1, 0], [2, 0, 0, 0], [0, 0, 1, 0]]  # rows true, columns predicted, then "other"
    assert confusion["accuracy"] == pytest.approx(100 * 4 / 7) and confusion["confused"][0] == ["COATS", "BAGS", 2]
    # This evaluation kept no retrieval or caption records (as before famevil recorded them): said, not an error.
    assert sections["retrieval"] == [] and "retrieval.jsonl not recorded; rerun famevil evaluate" in sections["missing"]["retrieval"]
    assert "captions.jsonl not recorded" in sections["missing"]["captions"] and "student of seed 0" in sections["examples_from"]
    html = page.read_text()
    assert 'id="comparison"' in html and 'id="parameters"' in html and html.count('class="confusion"') == 1
    assert html.count('<svg class="chart"') == 2 and "no training log" in html and "not recorded; rerun famevil evaluate" in html
    assert not list(tmp_path.glob(".report.html*"))  # written beside it, then renamed


def test_examples_whose_shards_are_unknown_are_left_out_with_the_reason(tmp_path, cli):
    records = {
        "retrieval": [{"task": "xmr-t2i", "query": "val-0", "top10": [f"val-{index}" for index in range(10)]}],
        "captions": [{"key": "val-0", "generated": "a black shirt", "references": ["Black Shirt. A shirt."]}],
    }
    student = _evaluation(tmp_path, "student-0", 0, TEACHERS[0], records=records)
    shown = cli("report", *_arguments(_task_evaluations(tmp_path, 0), [student]), "--json")
    assert shown.exit_code == 0, shown.output
    sections = json.loads(shown.stdout)["sections"]
    assert sections["retrieval"] == sections["captions"] == []
    assert all("its manifest names no shards" in sections["missing"][stem] for stem in ("retrieval", "captions"))


@pytest.mark.parametrize("where", ["missing/report.html", "."], ids=["no such folder", "a folder"])
def test_a_page_that_cannot_be_written_is_one_line_naming_the_flag(tmp_path, cli, where):
    students = [_evaluation(tmp_path, "student-0", 0, TEACHERS[0])]
    result = cli("report", *_arguments(_task_evaluations(tmp_path, 0), students), "--html", tmp_path / where)
    assert result.exit_code == 1 and result.output.startswith("error: --html ") and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output and not (tmp_path / "missing").exists()


def test_a_page_is_never_written_into_an_input_evaluation(tmp_path, cli):
    students = [_evaluation(tmp_path, "student-0", 0, TEACHERS[0])]
    page = students[0] / "metrics.json"
    before = page.read_bytes()
    result = cli("report", *_arguments(_task_evaluations(tmp_path, 0), students), "--html", page)
    assert result.exit_code == 1 and result.output.startswith(f"error: --html {page}: lies inside the input {students[0]}"), result.output
    assert page.read_bytes() == before


def test_a_failed_page_leaves_the_old_one_whole(tmp_path, cli, monkeypatch):
    page = tmp_path / "report.html"
    page.write_text("the old page")
    monkeypatch.setattr(report_stage, "page", lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
    result = cli("report", *_arguments(_task_evaluations(tmp_path, 0), [_evaluation(tmp_path, "student-0", 0, TEACHERS[0])]), "--html", page)
    assert result.exit_code != 0 and page.read_text() == "the old page" and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.fixture(scope="module")
def tiny_report(tiny_dumps, tiny_shards, tmp_path_factory) -> list:
    """`famevil report`'s arguments for tiny runs: the teachers evaluated on their tasks, and a student
    distilled from all four, evaluated on all four (two updates per task: a line per loss). The
    captioning teacher's evaluation is left out: it costs the most (METEOR's JVM), the student's
    shows the captions."""
    root = tmp_path_factory.mktemp("report")
    arguments = []
    for task, (teacher, _) in tiny_dumps.items():
        if task == "fic":
            continue
        arguments += ["--teacher", evaluate(root / f"eval-{task}", tiny_shards, model=teacher, batch_size=16, max_new_tokens=8, random100_runs=1).out]
    outputs = [outputs for _, outputs in tiny_dumps.values()]
    distill(tiny_shards, root / "student", outputs, overrides=TINY | {"max_steps": 8}, sampling="round-robin")
    student = evaluate(root / "eval-student", tiny_shards, model=root / "student", batch_size=16, max_new_tokens=8, random100_runs=1)
    return [*arguments, "--student", student.out]


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture), a student distilled, five evaluations and a browser
def test_the_page_shows_every_section_in_a_browser(tiny_report, browser, screenshots, tmp_path, cli):
    page = tmp_path / "report.html"
    result = cli("report", *tiny_report, "--html", page)
    assert result.exit_code == 0, result.output
    browser.set_window_size(1400, 1000)
    browser.get(page.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#comparison tbody tr")
    assert len(rows) == 2 + sum(len(task.report_rows) for task in TASKS.values()) and rows[-2].text.startswith("parameters")
    assert rows[-1].text.startswith("training samples")
    cards = browser.find_elements(By.CSS_SELECTOR, ".run")
    assert len(cards) == len(TASKS)  # three teachers and the student
    drawn = "return arguments[0].getTotalLength() > 0 && arguments[0].getBoundingClientRect().width > 0"
    for card in cards:
        lines = card.find_elements(By.CSS_SELECTOR, "svg.chart polyline.series")
        assert lines and all(browser.execute_script(drawn, line) for line in lines), card.text
    examples = browser.find_elements(By.CSS_SELECTOR, ".example")
    assert examples and all(len(example.find_elements(By.TAG_NAME, "img")) == 5 for example in examples)
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    pictures = browser.find_elements(By.CSS_SELECTOR, ".example img, #captions img")
    assert all(browser.execute_script(loaded, picture) for picture in pictures)
    captions = browser.find_elements(By.CSS_SELECTOR, "#captions tbody tr")
    assert captions and all(len(row.find_elements(By.TAG_NAME, "td")) == 3 for row in captions)
    matrix = browser.find_elements(By.CSS_SELECTOR, "table.confusion tbody tr")
    counted = sum(int(cell.text or 0) for cell in browser.find_elements(By.CSS_SELECTOR, "table.confusion td"))
    classified = (tiny_report[-1] / "classifications.jsonl").read_text().splitlines()
    assert matrix and counted == len(classified)  # each sample in one cell: the tiny set has fewer classes than a matrix shows
    browser.save_screenshot(str(screenshots / "report.png"))
