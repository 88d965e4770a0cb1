"""The paper's ablation switches: IAS and IMTL-G gradient balancing, late fusion (no cross-attention
adapters in fusion) and task adapters shared by all tasks; each on the model, in a short distillation,
and through a resume."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from selenium.webdriver.common.by import By
from typer.testing import CliRunner

from data_specs.errors import FamevilError
from data_specs.evaluations import METRICS_FILE, METRICS_SCHEMA_VERSION
from data_specs.manifest import InputRef, read_manifest, write_manifest
from famevil.checkpoint import load_checkpoint
from famevil.model.adapter_config import AdapterConfig
from famevil.multitask import ModelConfig, MultiTaskModel, task_loss
from famevil.report.ablations import ablation_table
from famevil.training.balancing import ImplicitAdaptiveScheduling, ias_scales, imtl_g
from famevil.training.streams import TaskStream
from famevil_cli.app import app
from stages.distill import distill
from stages.evaluate import evaluate
from stages.pretrain import pretrain
from tests.conftest import TASK_NAMES, TINY
from tests.test_model import SEVEN_CLASSES, TOKENIZE, _perturb


def test_imtl_g_projects_equally_onto_every_tasks_gradient():
    generator = torch.Generator().manual_seed(0)
    # Three tasks whose gradients differ a hundredfold in size: summing them would follow the largest.
    gradients = [scale * torch.randn(6, 5, generator=generator) for scale in (100.0, 1.0, 0.3)]
    combined = imtl_g(gradients)
    projections = torch.stack([(combined.flatten() @ g.flatten()) / g.norm() for g in gradients])
    assert combined.shape == (6, 5)
    assert torch.allclose(projections, projections[0].expand(3), rtol=1e-4), projections
    summed_projections = torch.stack([(sum(gradients).flatten() @ g.flatten()) / g.norm() for g in gradients])
    assert summed_projections.max() - summed_projections.min() > 100  # the plain sum follows the largest
    # The weights add up to 1: with identical gradients the combination is that gradient.
    assert torch.allclose(imtl_g([gradients[1], gradients[1].clone()]), gradients[1], atol=1e-5)
    assert torch.equal(imtl_g([gradients[2]]), gradients[2])
    assert torch.allclose(imtl_g([torch.tensor([2.0]), torch.tensor([4.0])]), torch.tensor([3.0]))  # a scalar: the mean


def test_ias_raises_the_scale_of_the_task_that_lags_its_target():
    scales = ias_scales({"xmr": 1.1, "tgir": 0.7, "scr": 1.0, "fic": 1.05})
    assert scales["tgir"] == max(scales.values()) > 1  # the laggard's gradient grows
    assert scales["xmr"] == min(scales.values()) < 1  # the leader's shrinks
    assert all(0.5 <= scale <= 1.5 for scale in scales.values())  # by at most gamma
    assert ias_scales({"xmr": 0.9, "scr": 0.9}) == {"xmr": 1.0, "scr": 1.0}
    # Far below every target (the best at 30%), the 64th power keeps the scales at 1 (the authors' constants).
    assert all(abs(scale - 1) < 1e-9 for scale in ias_scales({"xmr": 0.3, "scr": 0.1}).values())


def test_ias_scales_the_backbone_gradient_of_a_task_and_nothing_else():
    torch.manual_seed(0)
    model = MultiTaskModel(ModelConfig(backbone="famevil-tiny", tasks=tuple(TASK_NAMES), vocabularies=SEVEN_CLASSES))
    _perturb(model.tsa)
    images, tokens = torch.randn(3, 3, 32, 32), TOKENIZE(["a red dress", "black wool coat", "shorts"])
    batch = {"images": images, "tokens": tokens, "labels": torch.tensor([0, 3, 6])}

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        task_loss(model, "scr", batch)[0].backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    balancing = ImplicitAdaptiveScheduling(dict.fromkeys(TASK_NAMES, 1.0))
    balancing.attach(model)
    balancing.scales["scr"] = 1.5
    balancing.start_micro_batch("scr")
    scaled = gradients()
    assert plain.keys() == scaled.keys()
    for name, gradient in plain.items():
        expected = 1.5 * gradient if name.startswith("backbone.") else gradient
        assert torch.allclose(scaled[name], expected, atol=1e-6), name
    assert any(name.startswith("backbone.") and gradient.abs().sum() > 0 for name, gradient in plain.items())


@torch.no_grad()
def test_late_fusion_adds_the_towers_vectors_and_the_captioner_keeps_its_cross_attention():
    torch.manual_seed(0)
    late = MultiTaskModel(
        ModelConfig(backbone="famevil-tiny", tasks=tuple(TASK_NAMES), adapters=AdapterConfig(fusion="late"), vocabularies=SEVEN_CLASSES)
    ).eval()
    full = MultiTaskModel(ModelConfig(backbone="famevil-tiny", tasks=tuple(TASK_NAMES), vocabularies=SEVEN_CLASSES)).eval()
    _perturb(late.tsa)
    _perturb(late.xaa)
    images, tokens = torch.randn(2, 3, 32, 32), TOKENIZE(["a red dress", "black wool coat"])
    separate = late.encode_image(images, "tgir", normalize=False) + late.encode_text(tokens, "tgir", normalize=False)
    assert torch.allclose(late.composed(images, tokens, "tgir"), separate, atol=1e-6)
    assert set(late.xaa) == {"text"}  # only the captioner's side is built
    assert sum(p.numel() for p in late.parameters()) < sum(p.numel() for p in full.parameters())
    states = late.caption_states(images, tokens, "fic")
    assert not torch.allclose(states, late.caption_states(images.flip(0), tokens, "fic"))  # it still sees the image


@torch.no_grad()
def test_shared_task_adapters_are_one_set_that_every_task_uses():
    torch.manual_seed(0)
    model = MultiTaskModel(
        ModelConfig(backbone="famevil-tiny", tasks=tuple(TASK_NAMES), adapters=AdapterConfig(task_adapters="shared"), vocabularies=SEVEN_CLASSES)
    ).eval()
    assert list(model.tsa) == ["shared"] and model.tasks == tuple(TASK_NAMES)
    images = torch.randn(2, 3, 32, 32)
    before = {task: model.encode_image(images, task) for task in ("xmr", "tgir")}
    _perturb(model.tsa)
    after = {task: model.encode_image(images, task) for task in ("xmr", "tgir")}
    assert torch.equal(after["xmr"], after["tgir"]) and not torch.allclose(after["xmr"], before["xmr"])
    with pytest.raises(FamevilError, match="no 'unknown' adapters"):
        model.encode_image(images, "unknown")


def _options(**extra) -> dict:
    return TINY | {"max_steps": 4, "checkpoint_every": 2, "keep_checkpoints": 5, "head_vocabulary": "training"} | extra


def test_switches_train_save_and_load(tiny_shards, tmp_path):
    result = distill(tiny_shards, tmp_path / "late-shared", kd_weight=0, overrides=_options(max_steps=2, fusion="late", task_adapters="shared"))
    model = load_checkpoint(result.out)
    assert (model.config.adapters.fusion, model.config.adapters.task_adapters) == ("late", "shared")
    assert list(model.tsa) == ["shared"] and set(model.xaa) == {"text"}


def test_imtl_g_takes_one_batch_of_every_task_per_update(tiny_shards, tmp_path):
    result = distill(tiny_shards, tmp_path / "imtlg", kd_weight=0, sampling="round-robin", balancing="imtl-g", overrides=_options(max_steps=2))
    records = [json.loads(line) for line in (result.out / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(name.removeprefix("loss_") for name in record if name.startswith("loss_")) for record in records] == [sorted(TASK_NAMES)] * 2
    assert result.manifest.details["balancing"] == "imtl-g"


def test_ias_moves_the_scales_toward_the_lagging_task(tiny_shards, tmp_path):
    # SCR far below its target, the others above theirs: SCR's backbone gradient grows the most, the leader's shrinks.
    targets = {"xmr": 1e-3, "tgir": 1e-3, "scr": 1e6, "fic": 1e-3}
    result = distill(tiny_shards, tmp_path / "ias", kd_weight=0, balancing="ias", ias_targets=targets, overrides=_options(max_steps=2, eval_every=2))
    scales = next(json.loads(line) for line in (result.out / "metrics.jsonl").read_text().splitlines() if "balancing" in line)["balancing"]
    assert scales["ias_scale_scr"] == max(scales.values()) == 1.5 and min(scales.values()) < 1, scales
    assert result.manifest.details["ias_targets"] == targets


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"balancing": "imtl-g"}, "--sampling round-robin"),
        ({"balancing": "ias"}, "--set eval_every"),
        ({"balancing": "ias", "overrides_extra": {"eval_every": 2}}, "no target for xmr, tgir, scr, fic"),
        ({"balancing": "ias", "ias_targets": {"xmr": -1.0}}, "--ias-target"),
        ({"balancing": "gradnorm"}, "--balancing 'gradnorm'"),
    ],
)
def test_bad_balancing_options_are_refused_before_any_step(tiny_shards, tmp_path, options, says):
    overrides = _options(**options.pop("overrides_extra", {}))
    with pytest.raises(FamevilError, match=says):
        distill(tiny_shards, tmp_path / "student", kd_weight=0, overrides=overrides, **options)
    assert not (tmp_path / "student").exists() and not (tmp_path / ".student.partial").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"balancing": "ias", "ias_targets": {"xmr": 1e-3, "tgir": 1e-3, "scr": 1e6, "fic": 1e-3}, "eval_every": 2},
        {"balancing": "imtl-g", "sampling": "round-robin"},
    ],
    ids=["ias", "imtl-g"],
)
def test_an_interrupted_balanced_run_resumes_to_the_same_weights(tiny_shards, tmp_path, monkeypatch, options):
    options = dict(options)
    overrides = _options(eval_every=options.pop("eval_every", 0))
    arguments = {"kd_weight": 0, "overrides": overrides} | options
    distill(tiny_shards, tmp_path / "whole", **arguments)

    calls = {"n": 0}
    original = TaskStream.__next__
    # IAS draws one batch per update, IMTL-G four: interrupt after the step-2 state, inside the third update.
    interrupt_at = 3 if options["balancing"] == "ias" else 10

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(TaskStream, "__next__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill(tiny_shards, tmp_path / "resumed", **arguments)
    monkeypatch.setattr(TaskStream, "__next__", original)
    result = distill(tiny_shards, tmp_path / "resumed", resume="auto", **arguments)
    assert result.resumed_from == 2
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    for key in whole:
        assert (whole[key] - resumed[key]).abs().max() <= 1e-6, key
    if options["balancing"] == "ias":  # the scales set at step 2 came back from the state, not from 1
        state = json.loads(next(Path(tmp_path / "resumed" / "checkpoints").glob("step-000002/run_state.json")).read_text())
        assert state["balancing"]["scales"]["scr"] == 1.5


# --- the ablation table ------------------------------------------------------------------------


def _distilled(
    root: Path, name: str, seed: int, metrics: dict, details: dict | None = None, options: dict | None = None, width: int = 3, kind: str = "student"
) -> Path:
    """A metrics artifact of a (by default distilled) model folder that says how it was trained."""
    model = root / f"model-{name}"
    model.mkdir()
    save_file({"weight": torch.zeros(2, width)}, model / "model.safetensors")
    (model / "train_config.json").write_text(json.dumps({"seed": seed, "batch_size": 8, "gradient_accumulation": 1} | (options or {})))
    defaults = {"sampling": "size", "kd_weight": 1.0, "balancing": "none", "tasks": TASK_NAMES} if kind == "student" else {}
    trained = {"steps": 40 if kind == "student" else 10, "processes": 1}  # the student's budget: the four teachers' together
    write_manifest(model, kind, inputs=[], details=trained | defaults | (details or {}))
    out = root / f"eval-{name}"
    out.mkdir()
    (out / METRICS_FILE).write_text(json.dumps({"schema_version": METRICS_SCHEMA_VERSION, "metrics": metrics, "warnings": []}))
    write_manifest(out, "metrics", inputs=[InputRef("model", kind, f"sha256:{name}", str(model))])
    return out


def _headlines(value: float) -> dict:
    return {"xmr": {"random100": {"mean": value}}, "tgir": {"mean": value}, "scr": {"accuracy": value}, "fic": {"cider": value}}


def _teacher(root: Path, task: str, seed: int, value: float) -> Path:
    metrics = {task: _headlines(value)[task]}
    return _distilled(root, f"teacher-{task}-{seed}", seed, metrics, details={"task": task}, kind="teacher")


def test_the_ablation_table_groups_runs_by_their_switches(tmp_path):
    teachers = [_teacher(tmp_path, task, seed, 50.0) for task in TASK_NAMES for seed in (0, 1)]
    runs = [
        _distilled(tmp_path, "student-0", 0, _headlines(55.0)),
        _distilled(tmp_path, "student-1", 1, _headlines(57.0)),
        # IMTL-G takes a batch of every task per update: a quarter of the updates is the same budget
        _distilled(tmp_path, "imtlg-0", 0, _headlines(40.0), {"sampling": "round-robin", "balancing": "imtl-g", "steps": 10}),
        _distilled(tmp_path, "imtlg-1", 1, _headlines(44.0), {"sampling": "round-robin", "balancing": "imtl-g", "steps": 10}),
        _distilled(tmp_path, "longer-0", 0, _headlines(58.0), {"steps": 80}),
        _distilled(tmp_path, "annealed-0", 0, _headlines(56.0), {"kd_schedule": "anneal"}),
        _distilled(tmp_path, "longer-baseline-0", 0, _headlines(54.0), {"steps": 80, "kd_weight": 0.0}),
        _distilled(tmp_path, "wide-0", 0, _headlines(60.0), options={"tsa_bottleneck": 512, "xaa_bottleneck": 512}, width=30),
        _distilled(tmp_path, "late-shared-0", 0, _headlines(30.0), options={"fusion": "late", "task_adapters": "shared"}),
    ]
    table = ablation_table(teachers, runs)
    rows = {row.label: row for row in table.rows}
    assert list(rows) == [
        "FAME-ViL (size sampling, MTD)",
        "bottleneck 512",
        "2x the teachers' samples",
        "teacher annealing",
        "IMTL-G, sampling round-robin",
        "2x the teachers' samples, no distillation",
        "no XAA (late fusion), one TSA for all tasks",
    ]
    assert rows["2x the teachers' samples"].gain.mean == 16.0 and rows["2x the teachers' samples"].paper == ""
    student, imtlg, wide = rows["FAME-ViL (size sampling, MTD)"], rows["IMTL-G, sampling round-robin"], rows["bottleneck 512"]
    assert [(f.mean, f.runs) for f in imtlg.figures] == [(42.0, 2)] * 4 and abs(imtlg.figures[0].sd - 2.828) < 1e-3
    assert student.gain.mean == 12.0 and imtlg.gain.mean == -16.0  # percent over the teachers, paired by seed
    assert (student.paper, imtlg.paper, wide.paper) == ("+5.5%", "-6.3%", "above 64, more parameters")
    assert wide.parameters == 60 and student.parameters == 6
    assert rows["no XAA (late fusion), one TSA for all tasks"].paper == ""  # two switches at once: no paper row
    assert rows["teacher annealing"].paper == "+5.5%"  # a setting the paper does not ablate


def test_the_ablation_table_refuses_a_teacher_and_a_repeated_seed(tmp_path):
    teachers = [_teacher(tmp_path, task, 0, 50.0) for task in TASK_NAMES]
    with pytest.raises(FamevilError, match="not a multi-task model"):
        ablation_table(teachers, [_teacher(tmp_path, "xmr", 1, 50.0)])
    twice = [_distilled(tmp_path, f"student-{n}", 0, _headlines(55.0)) for n in range(2)]
    with pytest.raises(FamevilError, match="same switches and seed"):
        ablation_table(teachers, twice)


def test_report_prints_the_ablation_table(tmp_path, browser, screenshots):
    runner = CliRunner(env={"COLUMNS": "200"})  # a table this wide wraps its cells at 80 columns

    def cli(*args):
        return runner.invoke(app, [str(a) for a in args])

    teachers = [_teacher(tmp_path, task, 0, 50.0) for task in TASK_NAMES]
    student = _distilled(tmp_path, "student", 0, _headlines(55.0))
    uniform = _distilled(tmp_path, "uniform", 0, _headlines(52.5), {"sampling": "uniform"})
    arguments = [item for path in teachers for item in ("--teacher", path)] + ["--student", student, "--ablation", uniform]
    printed = cli("report", *arguments)
    assert printed.exit_code == 0, printed.output
    assert "ablations" in printed.output and "sampling uniform" in printed.output and "+4.0%" in printed.output
    payload = json.loads(cli("report", *arguments, "--json").output)
    assert [row["label"] for row in payload["ablations"]["rows"]] == ["FAME-ViL (size sampling, MTD)", "sampling uniform"]
    assert payload["ablations"]["rows"][1]["gain"]["mean"] == 5.0

    page = tmp_path / "ablations.html"
    assert cli("report", *arguments, "--html", page).exit_code == 0
    browser.get(page.as_uri())
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in browser.find_elements(By.CSS_SELECTOR, "#ablations tbody tr")]
    assert [row[0] for row in rows] == ["FAME-ViL (size sampling, MTD)", "sampling uniform"] and rows[1][-1] == "+4.0%" and rows[1][5] == "+5.00"
    browser.save_screenshot(str(screenshots / "ablations.png"))


def test_the_page_draws_each_tasks_metric_by_budget(tmp_path, browser, screenshots):
    teachers = [_teacher(tmp_path, task, 0, 50.0) for task in TASK_NAMES]
    runs = [
        _distilled(tmp_path, name, 0, _headlines(value), {"steps": steps} | extra)
        for name, value, steps, extra in [
            ("student", 52.0, 40, {}),
            ("half", 30.0, 20, {}),
            ("double", 61.0, 80, {}),
            ("baseline", 51.0, 40, {"kd_weight": 0.0}),
            ("baseline-double", 60.0, 80, {"kd_weight": 0.0}),
            ("uniform", 49.0, 40, {"sampling": "uniform"}),  # not a budget row: not on the curves
        ]
    ]
    series = ablation_table(teachers, runs).by_budget()
    assert {name: [(budget, row.figures[0].mean) for budget, row in points] for name, points in series.items()} == {
        "distilled": [(0.5, 30.0), (1.0, 52.0), (2.0, 61.0)],
        "no distillation": [(1.0, 51.0), (2.0, 60.0)],
    }
    page = tmp_path / "budget.html"
    arguments = [item for path in teachers for item in ("--teacher", path)] + ["--student", runs[0], "--ablation", *runs[1:2]]
    for run in runs[2:]:
        arguments += ["--ablation", run]
    assert CliRunner().invoke(app, [str(a) for a in ["report", *arguments, "--html", page]]).exit_code == 0
    browser.get(page.as_uri())
    charts = browser.find_elements(By.CSS_SELECTOR, "#budget-curves svg")
    assert len(charts) == 4  # one per task
    assert [len(chart.find_elements(By.CSS_SELECTOR, "polyline.series")) for chart in charts] == [3] * 4  # distilled, no distillation, teachers
    assert "no distillation" in charts[0].text and "teachers" in charts[0].text
    browser.save_screenshot(str(screenshots / "budget-curves.png"))


def test_no_budget_curves_without_two_budgets(tmp_path):
    teachers = [_teacher(tmp_path, task, 0, 50.0) for task in TASK_NAMES]
    runs = [_distilled(tmp_path, "student", 0, _headlines(52.0)), _distilled(tmp_path, "uniform", 0, _headlines(49.0), {"sampling": "uniform"})]
    assert ablation_table(teachers, runs).by_budget() == {}


# --- scripts/ablations.sh ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _environment_without_install(tmp_path: Path) -> dict[str, str]:
    """The scripts install famevil into a venv unless its stamp says it is there: a venv folder that
    points at this interpreter's famevil, stamped as scripts/_venv.sh stamps it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "famevil").symlink_to(Path(sys.executable).parent / "famevil")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".famevil-installed").write_text(f"{digest} {ROOT} \n")
    return os.environ | {"FAMEVIL_VENV": str(venv), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.mark.slow  # twelve tiny distillations and their evaluations through the CLI
def test_the_ablation_script_trains_every_variant_and_prints_the_table(tiny_shards, tiny_dumps, tmp_path):
    run, seed_dir = tmp_path / "demo", tmp_path / "demo" / "seed-0"
    (seed_dir / "eval").mkdir(parents=True)
    (run / "shards").symlink_to(tiny_shards)
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps(TINY | {"checkpoint_every": 2}))
    pretrain(tiny_shards, run / "base", overrides=TINY | {"max_steps": 1})
    outputs = []
    for task, (teacher, dumped) in tiny_dumps.items():
        (seed_dir / f"outputs-{task}").symlink_to(dumped)
        evaluate(seed_dir / "eval" / f"teacher-{task}", tiny_shards, model=teacher, random100_runs=1)
        outputs.append(dumped)
    for role, kd_weight in (("student", 1.0), ("baseline", 0.0)):
        # the demo's budget: the student's samples are the teachers' together (4 x 3 updates of 8)
        distill(tiny_shards, seed_dir / role, outputs, base=str(run / "base"), kd_weight=kd_weight, overrides=TINY | {"max_steps": 12})
        evaluate(seed_dir / "eval" / role, tiny_shards, model=seed_dir / role, random100_runs=1)

    environment = _environment_without_install(tmp_path) | {"SEEDS": "0", "DEMO_PRESET": str(preset), "STUDENT_STEPS": "12"}
    finished = subprocess.run(["bash", ROOT / "scripts" / "ablations.sh", run], env=environment, capture_output=True, text=True, timeout=1200)
    assert finished.returncode == 0, finished.stderr[-4000:]
    variants = [
        "budget-2x",
        "no-distillation-2x",
        "budget-half",
        "no-distillation-half",
        "uniform",
        "round-robin",
        "ias",
        "imtl-g",
        "no-xaa",
        "shared-tsa",
        "bottleneck-128",
        "bottleneck-512",
    ]
    assert sorted(path.name for path in (seed_dir / "ablations").iterdir()) == sorted(variants)
    assert read_manifest(seed_dir / "ablations" / "imtl-g").details["steps"] == 3  # a quarter of the updates
    assert read_manifest(seed_dir / "ablations" / "ias").details["ias_targets"].keys() == set(TASK_NAMES)
    assert "IMTL-G" in (run / "ablations.html").read_text(encoding="utf-8")
    # The student here has a constant distillation weight, the script's variants the demo's annealed one.
    labels = (
        "FAME-ViL (size sampling, MTD)",
        "IAS, teacher annealing",
        "IMTL-G, teacher annealing, sampling round-robin",
        "no XAA (late fusion), teacher annealing",
    )
    budgets = ("2x the teachers' samples, teacher annealing", "2x the teachers' samples, no distillation", "0.5x the teachers' samples, no distillation")
    for label in (*labels, "bottleneck 512, teacher annealing", *budgets):
        assert label in finished.stdout, label


def test_the_ablation_script_needs_the_demo_first(tmp_path):
    finished = subprocess.run(
        ["bash", ROOT / "scripts" / "ablations.sh", tmp_path / "nothing"],
        env=_environment_without_install(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2 and "scripts/demo.sh" in finished.stderr
