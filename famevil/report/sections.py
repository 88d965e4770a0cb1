"""What `famevil report --html` and `--json` show beside the table: every run's training curves and,
from the first student's evaluation, retrieval examples, captions and confusion matrices, read from
the checkpoints, predictions and shards the evaluations name. A section whose files are missing is
left empty with the reason, never an error: older evaluations lack the classification records."""

from __future__ import annotations

import io
import json
import math
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from data_specs.shards import IMAGE_EXTENSION, Shards
from data_specs.training_runs import LOSSES, METRICS_LOG, SCORE
from famevil.catalogue_index import thumbnail_jpeg
from famevil.data.loading import find_samples
from famevil.metrics.classification import accuracy
from famevil.report.table import STUDENT, TEACHER, Report, Run
from famevil.tasks import TASKS
from famevil.tasks.base import CAPTIONS, CLASSIFICATIONS, RETRIEVAL
from famevil.tasks.product_text import product_text
from famevil.tasks.xmr import TEXT_TO_IMAGE, CrossModalRetrieval

EXAMPLES = 6  # retrieval queries, and captions, spread evenly over the evaluation's records
RESULTS_SHOWN = 5  # retrieved images per query
CONFUSION_CLASSES = 20  # the matrix's classes: the most frequent; the real data has 121
CONFUSED_PAIRS = 10  # the most frequent errors listed beside it, over every class
CURVE_POINTS = 60  # per loss curve: each point the mean over a stretch of updates (a student logs one task per update)
THUMBNAIL = 80  # pixels, the longer side


@dataclass(frozen=True)
class Curves:
    """One run's training log: its per-task losses (bucket means) and its validation score over updates."""

    role: str  # "student", "teacher (xmr)", ...
    seed: int | None
    checkpoint: str
    losses: dict[str, list[tuple[float, float]]]  # metrics.jsonl's name (loss_TASK, kd_TASK) -> (update, loss)
    validation: list[tuple[int, float]]  # (update, score); empty when the run validated nothing (the demo's eval_every 0)
    note: str  # why there are no curves, or ""


@dataclass(frozen=True)
class Found:
    key: str
    correct: bool
    jpeg: bytes  # a thumbnail; left out of the JSON


@dataclass(frozen=True)
class RetrievalExample:
    key: str
    query: str  # the text the model read
    found: list[Found]  # the top RESULTS_SHOWN, best first


@dataclass(frozen=True)
class CaptionExample:
    key: str
    generated: str
    references: list[str]
    jpeg: bytes


@dataclass(frozen=True)
class Confusion:
    task: str  # the classification task, in words
    classes: list[str]  # the rows' true classes, also the first columns' predicted ones
    counts: list[list[int]]  # [true][predicted], and a last column: predicted as a class not shown
    all_classes: int  # true classes in the evaluation
    samples: int
    accuracy: float  # percent, over every sample
    confused: list[tuple[str, str, int]]  # the most frequent errors: (true, predicted, count)


@dataclass(frozen=True)
class Sections:
    curves: list[Curves]
    examples_from: str  # the evaluation the examples and the confusion matrices come from
    retrieval: list[RetrievalExample]
    captions: list[CaptionExample]
    confusions: list[Confusion]  # one per classification task
    missing: dict[str, str]  # by record stem (RETRIEVAL, CAPTIONS, CLASSIFICATIONS): why its section is empty

    def to_json(self) -> dict[str, Any]:
        return asdict(self, dict_factory=lambda items: {name: value for name, value in items if not isinstance(value, bytes)})


def sections(table: Report) -> Sections:
    """The sections of a report's runs; the examples come from its first student evaluation."""
    curves = [_curves(_role(role, run), run) for role, runs in table.runs.items() for run in runs]
    source = table.runs[STUDENT][0]
    missing: dict[str, str] = {}
    lines = {stem: _records(source.evaluation, stem, missing) for stem in (RETRIEVAL, CAPTIONS, CLASSIFICATIONS)}
    queries = _spread(_text_to_image(lines[RETRIEVAL]), EXAMPLES)
    if lines[RETRIEVAL] and not queries:
        missing[RETRIEVAL] = f"{source.evaluation}: no text-to-image retrieval was evaluated"
    captions = _spread(lines[CAPTIONS], EXAMPLES, offset=0.5)  # other products than the queries'
    wanted = {key for line in queries for key in (line["query"], *line["top10"][:RESULTS_SHOWN])} | {line["key"] for line in captions}
    samples = _samples(source.evaluation, wanted, missing, [stem for stem in (RETRIEVAL, CAPTIONS) if lines[stem]]) if wanted else {}
    retrieval = [_retrieval_example(line, samples) for line in queries if {line["query"], *line["top10"][:RESULTS_SHOWN]} <= samples.keys()]
    shown = [
        CaptionExample(line["key"], line["generated"], line["references"], _thumbnail(samples[line["key"]])) for line in captions if line["key"] in samples
    ]
    by_task: dict[str, list[dict]] = {}
    for line in lines[CLASSIFICATIONS]:
        by_task.setdefault(line["task"], []).append(line)
    confusions = [_confusion(TASKS[name].title if name in TASKS else name, task_lines) for name, task_lines in by_task.items()]
    seed = f" of seed {source.seed}" if source.seed is not None else ""
    return Sections(curves, f"the distilled student{seed}: {source.evaluation}", retrieval, shown, confusions, missing)


def _role(role: str, run: Run) -> str:
    """A teacher is named by the tasks it was evaluated on: the report has one per task."""
    if role != TEACHER:
        return role
    tasks = {name.split(".")[0] for name in run.metrics}
    return f"{role} ({', '.join(name for name in TASKS if name in tasks)})"


def _curves(role: str, run: Run) -> Curves:
    log = run.model / METRICS_LOG
    if not log.is_file():
        return Curves(role, run.seed, str(run.model), {}, [], f"no training log: {log} is missing")
    try:
        records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise FamevilError(f"{log}: not one JSON object per line ({error}); was it edited?") from None
    validation = [(record["step"], record["validation"][SCORE]) for record in records if SCORE in record.get("validation", {})]
    updates = [record for record in records if "validation" not in record]
    stretch = math.ceil(max((record["step"] for record in updates), default=1) / CURVE_POINTS)
    buckets: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for record in updates:
        for name, value in record.items():
            if name.startswith(LOSSES):
                buckets.setdefault(name, {}).setdefault((record["step"] - 1) // stretch, []).append((record["step"], value))
    losses = {
        name: [(statistics.fmean(step for step, _ in points), statistics.fmean(value for _, value in points)) for _, points in sorted(by_stretch.items())]
        for name, by_stretch in sorted(buckets.items(), key=lambda item: _loss_order(item[0]))
    }
    return Curves(role, run.seed, str(run.model), losses, validation, "")


def _loss_order(name: str) -> tuple[int, int]:
    """Tasks in registry order, each task's own loss before its distillation loss."""
    prefix = next(prefix for prefix in LOSSES if name.startswith(prefix))
    tasks = list(TASKS)
    task = name[len(prefix) :]
    return (tasks.index(task) if task in tasks else len(tasks), LOSSES.index(prefix))


def _records(evaluation: Path, stem: str, missing: dict[str, str]) -> list[dict]:
    path = evaluation / f"{stem}.jsonl"
    if not path.is_file():
        missing[stem] = f"{evaluation}: {path.name} not recorded; rerun famevil evaluate"
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _spread(items: list, count: int, offset: float = 0.0) -> list:
    """`count` items spread evenly over the list (`offset`: the fraction of a stride to start at),
    not only its first few."""
    return [items[int((index + offset) * len(items) / count)] for index in range(count)] if len(items) > count else items


def _samples(evaluation: Path, keys: set[str], missing: dict[str, str], needing: list[str]) -> dict[str, dict[str, Any]]:
    """The samples with these keys from the shards the evaluation read, on the split it read; where
    those shards are gone or changed, nothing, and the reason under each stem in `needing`."""
    manifest = require_artifact(evaluation, "metrics", verify=False)
    ref = next((ref for ref in manifest.inputs if ref.role == "shards"), None)
    try:
        if ref is None:
            raise FamevilError(f"{evaluation}: its manifest names no shards")
        shards = Shards.open(ref.path)
        if shards.manifest.content_id != ref.id:
            raise FamevilError(f"{ref.path}: are not the shards {evaluation} was evaluated on (rebuilt since?); no pictures")
    except FamevilError as error:
        missing.update(dict.fromkeys(needing, str(error)))
        return {}
    split = manifest.details.get("split", "val")
    subsets = list(dict.fromkeys(subset for name in manifest.details.get("tasks", []) if name in TASKS for subset in TASKS[name].subsets(split)))
    return find_samples(shards, subsets, keys)


def _text_to_image(lines: list[dict]) -> list[dict]:
    """The retrieval records of text queries against the images, from the task that evaluates them."""
    searcher = next((task for task in TASKS.values() if isinstance(task, CrossModalRetrieval)), None)
    return [line for line in lines if searcher and line["task"] == searcher.direction(TEXT_TO_IMAGE)]


def _retrieval_example(line: dict, samples: dict[str, dict[str, Any]]) -> RetrievalExample:
    query = samples[line["query"]]["json"]
    found = [Found(key, CrossModalRetrieval.relevant(query, samples[key]["json"]), _thumbnail(samples[key])) for key in line["top10"][:RESULTS_SHOWN]]
    return RetrievalExample(line["query"], product_text(query), found)


def _thumbnail(sample: dict[str, Any]) -> bytes:
    with Image.open(io.BytesIO(sample[IMAGE_EXTENSION])) as image:
        return thumbnail_jpeg(image, THUMBNAIL)


def _confusion(task: str, lines: list[dict]) -> Confusion:
    truth, predicted = [line["label"] for line in lines], [line["predicted"] for line in lines]
    support = Counter(truth)
    classes = sorted(support, key=lambda name: (-support[name], name))[:CONFUSION_CLASSES]
    column = {name: index for index, name in enumerate(classes)}
    counts = [[0] * (len(classes) + 1) for _ in classes]
    for true, guess in zip(truth, predicted, strict=True):
        if true in column:
            counts[column[true]][column.get(guess, len(classes))] += 1
    errors = Counter((true, guess) for true, guess in zip(truth, predicted, strict=True) if true != guess)
    confused = [(true, guess, count) for (true, guess), count in errors.most_common(CONFUSED_PAIRS)]
    return Confusion(task, classes, counts, len(support), len(lines), 100 * accuracy(truth, predicted), confused)
