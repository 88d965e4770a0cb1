"""The ablation table of `famevil report --ablation`: multi-task models trained with different switches
(scripts/ablations.sh), grouped by what they were trained with, each group a row of headline metrics
as mean +- sd over its seeds, its mean relative gain over the single-task teachers, its parameters, and
the paper's corresponding figure, for the direction of each effect rather than its size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data_specs.errors import FamevilError
from famevil.report.table import Figure, Run, format_cell, parameter_count, read_run, relative_gain, teacher_runs, teacher_samples, values_of
from famevil.tasks import TASKS

# What FAME-ViL's main model is trained with; a row is labelled by how it differs from this.
DEFAULTS = {
    "sampling": "size",
    "balancing": "none",
    "distillation": True,
    "kd_schedule": "constant",
    "fusion": "cross_attention",
    "task_adapters": "per_task",
    "bottleneck": 64,
    "budget": 1.0,  # samples, over the teachers' together
}
# The paper's figure for a row differing from the main model in one setting: its mean relative gain over
# the single-task models where the paper gives one (fame-vil-notes.md), else the direction its text states.
PAPER = {
    (): "+5.5%",
    (("sampling", "uniform"),): "+4.0%",
    (("balancing", "ias"),): "+2.7%",
    (("balancing", "imtl-g"), ("sampling", "round-robin")): "-6.3%",
    (("distillation", False),): "below MTD",
    (("fusion", "late"),): "below (XAA and TSA complement)",
    (("task_adapters", "shared"),): "below (XAA and TSA complement)",
    (("bottleneck", 128),): "above 64, more parameters",
    (("bottleneck", 512),): "above 64, more parameters",
}
# Settings the paper keeps fixed: a row differing in them as well gets the paper's figure of its other switches.
NOT_ABLATED_IN_PAPER = ("kd_schedule",)


@dataclass(frozen=True)
class AblationRow:
    switches: tuple  # sorted (setting, value) pairs where the row differs from FAME-ViL's main model
    label: str
    figures: list[Figure | None]  # one per task's headline metric, in AblationTable.columns order
    gain: Figure | None  # mean relative gain over the teachers, percent
    parameters: int
    paper: str  # the paper's figure or direction; "" where it reports none


@dataclass(frozen=True)
class AblationTable:
    columns: list[str]  # the tasks, each by its headline metric
    rows: list[AblationRow]
    teachers: list[Figure | None]  # each task's teachers on its headline metric, in columns order

    def header(self) -> list[str]:
        return ["variant", *self.columns, "gain over teachers %", "parameters", "paper's"]

    def text_rows(self) -> list[list[str]]:
        """The rows as every form of the report shows them."""
        return [[row.label, *map(format_cell, row.figures), format_cell(row.gain, signed=True), f"{row.parameters:,}", row.paper] for row in self.rows]

    def by_budget(self) -> dict[str, list[tuple[float, AblationRow]]]:
        """The rows that differ from the main model in their budget at most, with and without
        distillation (settings the paper keeps fixed aside), each series by budget (x the teachers' samples): the curves of how the
        comparison changes with the budget. Empty unless some series has two budgets or more."""
        series: dict[str, list[tuple[float, AblationRow]]] = {}
        for row in self.rows:
            settings = dict(_ablated(row.switches))
            budget = settings.pop("budget", 1.0)
            if settings in ({}, {"distillation": False}):
                series.setdefault("no distillation" if settings else "distilled", []).append((budget, row))
        if not any(len(points) > 1 for points in series.values()):
            return {}
        return {name: sorted(points, key=lambda point: point[0]) for name, points in series.items()}

    def units(self) -> str:
        headlines = ", ".join(f"{task.name.upper()} {task.headline}" for task in TASKS.values())
        return f"{headlines}; mean +- sd over seeds; the paper's figure gives each effect's direction, not its size"


def ablation_table(teachers: list[Path], evaluations: list[Path]) -> AblationTable:
    """One row per set of switches among the evaluations (each a multi-task model's; give one per seed)."""
    _, by_task = teacher_runs(teachers)
    groups: dict[tuple, list[Run]] = {}
    for evaluation in evaluations:
        run = read_run(evaluation)
        groups.setdefault(_switches(run, teacher_samples(by_task, run.seed)), []).append(run)
    tasks = list(TASKS.values())
    rows = []
    for switches, runs in sorted(groups.items(), key=lambda item: (len(item[0]), item[0])):
        seeds = [run.seed for run in runs]
        if len(set(seeds)) < len(seeds):
            raise FamevilError(f"--ablation {runs[0].model}: two runs with the same switches and seed {seeds}; give one per seed")
        figures = [Figure.of(values_of(runs, task.headline_key)) for task in tasks]
        rows.append(AblationRow(switches, _label(switches), figures, relative_gain(runs, by_task), parameter_count(runs[0].model), _paper_figure(switches)))
    teachers = [Figure.of(values_of(by_task.get(task.name, []), task.headline_key)) for task in tasks]
    return AblationTable([task.name.upper() for task in tasks], rows, teachers)


def _switches(run: Run, teachers_samples: int | None) -> tuple:
    """How a multi-task model's training differs from the main model's, as sorted (setting, value) pairs.
    The main model's budget is the teachers' together (of the same seed), in samples."""
    details, options = run.details, run.options
    if run.kind != "student":
        raise FamevilError(f"--ablation: {run.model} is not a multi-task model (famevil distill); give evaluations of distilled models")
    bottlenecks = {options.get("tsa_bottleneck", 64), options.get("xaa_bottleneck", 64)}
    settings = {
        "sampling": details["sampling"],
        "balancing": details.get("balancing", "none"),
        "distillation": details["kd_weight"] > 0,
        "kd_schedule": details.get("kd_schedule", "constant") if details["kd_weight"] > 0 else "constant",
        "fusion": options.get("fusion", "cross_attention"),
        "task_adapters": options.get("task_adapters", "per_task"),
        "bottleneck": bottlenecks.pop() if len(bottlenecks) == 1 else "/".join(map(str, sorted(bottlenecks))),
    }
    if run.samples and teachers_samples:
        settings["budget"] = round(run.samples / teachers_samples, 2)
    return tuple(sorted((name, value) for name, value in settings.items() if value != DEFAULTS[name]))


def _ablated(switches: tuple) -> tuple:
    """The switches without the settings the paper keeps fixed."""
    return tuple(switch for switch in switches if switch[0] not in NOT_ABLATED_IN_PAPER)


def _paper_figure(switches: tuple) -> str:
    return PAPER.get(_ablated(switches), "")


def _label(switches: tuple) -> str:
    words = {
        ("distillation", False): "no distillation",
        ("fusion", "late"): "no XAA (late fusion)",
        ("task_adapters", "shared"): "one TSA for all tasks",
        ("kd_schedule", "anneal"): "teacher annealing",
        ("balancing", "ias"): "IAS",
        ("balancing", "imtl-g"): "IMTL-G",
    }

    def word(switch: tuple) -> str:
        if switch[0] == "budget":
            return f"{switch[1]:g}x the teachers' samples"
        return words.get(switch, f"{switch[0]} {switch[1]}")

    return ", ".join(map(word, switches)) or "FAME-ViL (size sampling, MTD)"
