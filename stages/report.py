"""famevil report: the pipeline's result in one table: each teacher on its task, the distilled student
and the multi-task baseline on all four, over one run or several (one per seed), and what each costs
in parameters."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors import safe_open

from data_specs.errors import FamevilError
from data_specs.manifest import read_manifest, require_artifact
from famevil.checkpoint import WEIGHTS_FILE
from famevil.tasks import TASKS
from stages.evaluate import flatten, read_metrics
from stages.training import TRAIN_CONFIG_FILE, samples_trained


@dataclass(frozen=True)
class Figure:
    """One metric over runs: their mean, standard deviation (0 for one run) and count."""

    mean: float
    sd: float
    runs: int

    @classmethod
    def of(cls, values: list[float]) -> Figure | None:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)) if values else None


@dataclass(frozen=True)
class Run:
    """One evaluation: its flat metrics, the checkpoint it evaluated and, where famevil trained that
    checkpoint, the kind and details of its manifest and its training options (train_config.json)."""

    metrics: dict[str, float]
    model: Path
    evaluation: Path
    kind: str | None = None
    details: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        return self.options.get("seed")

    @property
    def samples(self) -> int | None:
        """The training samples the checkpoint consumed (None for one famevil did not train)."""
        return samples_trained(self.details, self.options) if self.options else None


TEACHER, STUDENT, BASELINE = "teacher", "student", "baseline"


@dataclass(frozen=True)
class Report:
    columns: list[str]
    rows: list[list[str | Figure | None]]  # label, then one figure per column (None: not evaluated)
    # The paper's summary figure: the mean over tasks of each task's mean relative change (percent) of
    # its report metrics, per seed, then over seeds. Keys: "over teachers", "over baseline".
    relative_gains: dict[str, Figure | None]
    parameters: dict[str, int]  # by column: the teachers' together, the student's, the baseline's
    runs: dict[str, list[Run]]  # by role (TEACHER, STUDENT, BASELINE), as given

    def units(self) -> str:
        runs = max((cell.runs for row in self.rows for cell in row if isinstance(cell, Figure)), default=1)
        return "percent; CIDEr x100" + (f"; mean +- sd over {runs} runs" if runs > 1 else "")

    def gain_lines(self) -> list[str]:
        return [f"student's mean relative gain {name}: {format_cell(gain, signed=True)}%" for name, gain in self.relative_gains.items()]

    def to_json(self) -> dict:
        return {
            "columns": self.columns,
            "rows": [[asdict(cell) if isinstance(cell, Figure) else cell for cell in row] for row in self.rows],
            "relative_gains": {name: asdict(gain) if gain else None for name, gain in self.relative_gains.items()},
            "parameters": self.parameters,
        }


def report(teachers: list[Path], students: list[Path], baselines: list[Path] | None = None) -> Report:
    """Put evaluations side by side: the teachers' (each on its own task) in one column, the distilled
    student's and the no-distillation baseline's, the student's gain over its teachers, and parameters.
    Give one evaluation per seed to each role: every figure is then a mean +- standard deviation.

    The student's mean relative gain (the paper's summary figure) is, per seed, the mean over tasks of
    the mean relative change of the task's report metrics against the teacher of the same seed (the
    teachers' mean where that seed has none); then the mean +- sd over seeds. Likewise over the baseline.

    --html FILE also writes the report as one self-contained page (no network, no files beside it):
    the table, every run's training curves (loss per task, validation score), and from the first
    student's evaluation text-to-image retrieval examples, captions beside their images and the
    classification confusion matrix. --json prints the same sections as data.

    Example (seconds, after famevil evaluate; scripts/demo.sh ends with this report over its seeds,
    each role given once per seed):

        famevil report --teacher runs/example/eval/teacher-xmr \\
            --teacher runs/example/eval/teacher-tgir \\
            --teacher runs/example/eval/teacher-scr \\
            --teacher runs/example/eval/teacher-fic \\
            --student runs/example/eval/student --html runs/example/report.html
    """
    every_teacher, by_task = teacher_runs(teachers)
    teacher_parameters = {task: parameter_count(runs[-1].model) for task, runs in by_task.items()}
    student_runs = [read_run(path) for path in students]
    baseline_runs = [read_run(path) for path in baselines or []]
    columns = ["single-task teachers", "distilled student", *(["multi-task baseline"] if baseline_runs else []), "student - teacher"]
    rows: list[list[str | Figure | None]] = []
    for task, key, label in _report_metrics():
        teacher = Figure.of(values_of(by_task.get(task, []), key))
        student = Figure.of(values_of(student_runs, key))
        baseline = [Figure.of(values_of(baseline_runs, key))] if baseline_runs else []
        difference = Figure(student.mean - teacher.mean, 0.0, 1) if student and teacher else None
        rows.append([label, teacher, student, *baseline, difference])
    parameters = {columns[0]: sum(teacher_parameters.values()), columns[1]: parameter_count(student_runs[0].model)}
    if baseline_runs:
        parameters[columns[2]] = parameter_count(baseline_runs[0].model)
    rows.append(["parameters", *[f"{count:,}" for count in parameters.values()], ""])
    seeds = sorted({run.seed for run in every_teacher}, key=str)
    budgets = [[teacher_samples(by_task, seed) for seed in seeds], [run.samples for run in student_runs]]
    if baseline_runs:
        budgets.append([run.samples for run in baseline_runs])
    rows.append(["training samples", *map(_mean_count, budgets), ""])  # the teachers' together, per seed
    gains = {"over teachers": relative_gain(student_runs, by_task)}
    if baseline_runs:
        gains["over baseline"] = relative_gain(student_runs, {task: baseline_runs for task in TASKS})
    return Report(columns, rows, gains, parameters, {TEACHER: every_teacher, STUDENT: student_runs, BASELINE: baseline_runs})


def _mean_count(counts: list[int | None]) -> str:
    """Counts over seeds as one cell: their mean, "" where any is unknown."""
    return f"{round(statistics.fmean(counts)):,}" if counts and None not in counts else ""


def teacher_runs(teachers: list[Path]) -> tuple[list[Run], dict[str, list[Run]]]:
    """The teachers' evaluations in the order given, and by the task each evaluated (one per task and seed)."""
    runs = [read_run(evaluation) for evaluation in teachers]
    by_task: dict[str, list[Run]] = {}
    for evaluation, run in zip(teachers, runs, strict=True):
        for task in {name.split(".")[0] for name in run.metrics}:
            same_task = by_task.setdefault(task, [])
            if run.seed is not None and any(other.seed == run.seed for other in same_task):
                raise FamevilError(f"--teacher {evaluation}: a second {task} teacher with seed {run.seed}; give one per task and seed")
            same_task.append(run)
    return runs, by_task


def format_row(row: list[str | Figure | None]) -> list[str]:
    """A table row as text; the last column, a difference, signed."""
    return [format_cell(cell, signed=column == len(row) - 1) for column, cell in enumerate(row)]


def format_cell(cell: object, signed: bool = False) -> str:
    """A report cell: "66.78", "66.78 ± 0.52" over several runs, "" where nothing was measured."""
    if not isinstance(cell, Figure):
        return "" if cell is None else str(cell)
    mean = f"{cell.mean:+.2f}" if signed else f"{cell.mean:.2f}"
    return f"{mean} ± {cell.sd:.2f}" if cell.runs > 1 else mean


def _report_metrics() -> list[tuple[str, str, str]]:
    """(task, flat metric key, label) of every report row, in table order (percent; CIDEr x100)."""
    return [(task.name, f"{task.name}.{key}", label) for task in TASKS.values() for key, label in task.report_rows]


def values_of(runs: list[Run], key: str) -> list[float]:
    return [run.metrics[key] for run in runs if run.metrics.get(key) is not None]


def relative_gain(students: list[Run], references: dict[str, list[Run]]) -> Figure | None:
    """Per student run, the mean over tasks of the task's mean relative change (percent) against the
    reference run of the same seed (or the references' mean); a metric whose reference is 0 is left out."""
    per_seed = []
    for student in students:
        task_gains = []
        for task in TASKS.values():
            changes = []
            for key in (f"{task.name}.{metric}" for metric, _ in task.report_rows):
                reference = _reference_value(references.get(task.name, []), key, student.seed)
                if reference and student.metrics.get(key) is not None:
                    changes.append(100 * (student.metrics[key] - reference) / reference)
            if changes:
                task_gains.append(statistics.fmean(changes))
        if task_gains:
            per_seed.append(statistics.fmean(task_gains))
    return Figure.of(per_seed)


def _reference_value(runs: list[Run], key: str, seed: int | None) -> float | None:
    same_seed = [run for run in runs if seed is not None and run.seed == seed]
    values = values_of(same_seed or runs, key)
    return statistics.fmean(values) if values else None


def read_run(evaluation: Path) -> Run:
    model = _model_path(evaluation)
    options_file = model / TRAIN_CONFIG_FILE
    if not options_file.is_file():
        return Run(flatten(read_metrics(evaluation)), model, evaluation)
    manifest = read_manifest(model)
    options = json.loads(options_file.read_text(encoding="utf-8"))
    return Run(flatten(read_metrics(evaluation)), model, evaluation, manifest.kind, manifest.details, options)


def teacher_samples(by_task: dict[str, list[Run]], seed: int | None) -> int | None:
    """The samples the teachers of one seed consumed together (None unless every task's is known)."""
    counts = [next((run.samples for run in runs if run.seed == seed), None) for runs in by_task.values()]
    return sum(counts) if counts and None not in counts else None


def _model_path(evaluation: Path) -> Path:
    """The checkpoint an evaluation was made from."""
    manifest = require_artifact(evaluation, "metrics")
    model = next((ref for ref in manifest.inputs if ref.role == "model"), None)
    if model is None or not (Path(model.path) / WEIGHTS_FILE).is_file():
        raise FamevilError(f"{evaluation}: was not made from a famevil checkpoint that is still at its recorded path")
    return Path(model.path)


def parameter_count(model: Path) -> int:
    """The parameter count of a checkpoint, read from its weights file."""
    with safe_open(model / WEIGHTS_FILE, framework="pt") as weights:
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118 - a safe_open handle is not iterable
