"""famevil report: the pipeline's result in one table: each teacher on its task, the distilled student
and the multi-task baseline on all four, and what each costs in parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from famevil.checkpoint import WEIGHTS_FILE
from famevil.tasks import TASKS
from stages.evaluate import flatten, read_metrics


@dataclass(frozen=True)
class Report:
    columns: list[str]
    rows: list[list[str | float | None]]  # label, then one value per column (None: not evaluated)


def report(teachers: list[Path], student: Path, baseline: Path | None = None) -> Report:
    """Put evaluations side by side: the teachers' (each on its own task) in one column, the distilled
    student's and the no-distillation baseline's, the student's gain over its teacher, and parameters.

    Example (after the pipeline; instant):

        famevil report --teacher runs/demo/eval/teacher-xmr --teacher runs/demo/eval/teacher-tgir \\
            --teacher runs/demo/eval/teacher-scr --teacher runs/demo/eval/teacher-fic --student runs/demo/eval/student
    """
    by_task: dict[str, dict[str, float]] = {}
    teacher_parameters = 0
    for evaluation in teachers:
        metrics = flatten(read_metrics(evaluation))
        for task in {name.split(".")[0] for name in metrics}:
            if task in by_task:
                raise FamevilError(f"--teacher {evaluation}: a second teacher evaluation for {task}; give one per task")
            by_task[task] = metrics
        teacher_parameters += _parameters(evaluation)
    student_metrics = flatten(read_metrics(student))
    baseline_metrics = flatten(read_metrics(baseline)) if baseline else None
    columns = ["single-task teachers", "distilled student", *(["multi-task baseline"] if baseline else []), "student - teacher"]
    rows: list[list[str | float | None]] = []
    headlines = [(task.name, f"{task.name}.{key}", label) for task in TASKS.values() for key, label in task.report_rows]  # percent; CIDEr x100
    for task, key, label in headlines:
        teacher_value = by_task.get(task, {}).get(key)
        student_value = student_metrics.get(key)
        gain = student_value - teacher_value if None not in (student_value, teacher_value) else None
        rows.append([label, teacher_value, student_value, *([baseline_metrics.get(key)] if baseline_metrics is not None else []), gain])
    parameters = ["parameters", f"{teacher_parameters:,}", f"{_parameters(student):,}", *([f"{_parameters(baseline):,}"] if baseline else []), ""]
    rows.append(parameters)
    return Report(columns, rows)


def _parameters(evaluation: Path) -> int:
    """The parameter count of the checkpoint an evaluation was made from, read from its weights file."""
    manifest = require_artifact(evaluation, "metrics")
    model = next((ref for ref in manifest.inputs if ref.role == "model"), None)
    if model is None or not (Path(model.path) / WEIGHTS_FILE).is_file():
        raise FamevilError(f"{evaluation}: was not made from a famevil checkpoint that is still at its recorded path")
    with safe_open(Path(model.path) / WEIGHTS_FILE, framework="pt") as weights:
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118 - a safe_open handle is not iterable
