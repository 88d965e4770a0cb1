"""What a task is, and the registry of tasks.

A task is one module (famevil/tasks/xmr.py, ...) holding everything famevil knows about it: the shard
subsets it reads, how a batch is built, its logits and loss, what a teacher hands its student and the
distillation loss, its evaluation protocol and headline metric, its rows in `famevil report`, its
share of the parameter accounting and its chance level. Stages never name a task: they iterate
`TASKS`. Adding a task is one module that subclasses `Task` and calls `register`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from data_specs.errors import FamevilError, did_you_mean
from data_specs.shards import Shards

if TYPE_CHECKING:
    from famevil.model.fame_vil import FameVil

CONTRASTIVE, FUSION, GENERATIVE = "contrastive", "fusion", "generative"  # how a task runs the towers
# The predictions an evaluation keeps, by file stem (evaluate writes STEM.jsonl; famevil report reads them).
RETRIEVAL, CAPTIONS, CLASSIFICATIONS = "retrieval", "captions", "classifications"
FASHIONGEN, FASHIONIQ = "fashiongen", "fashioniq"  # data sources: shard folders and `famevil prepare` flags
PREPARED_BY = {FASHIONGEN: "--fashiongen DIR (or --catalogue FILE)", FASHIONIQ: "--fashioniq DIR (or --catalogue FILE with --pairs FILE)"}

Batch = dict[str, Any]  # tensors on the model's device, plus "keys": the samples' keys
Signals = dict[str, torch.Tensor]  # what a teacher stores per sample: every tensor's first dimension is the batch
Sample = dict[str, Any]  # one decoded shard sample (webdataset)
Transform = Callable[[Any], torch.Tensor]
Tokenize = Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True)
class EvalSettings:
    """What every task's evaluation shares."""

    split: str  # the shards' split: val or train
    transform: Transform  # the evaluation image transform
    tokenize: Tokenize
    beams: int = 1  # caption decoding: 1 is greedy
    max_new_tokens: int | None = None  # caption length limit; None: the text context
    random100_runs: int = 5  # seeded random-100 draws averaged
    seed: int = 0
    meteor: bool = True  # METEOR needs a Java start-up: training's validation leaves it out
    vocabularies: dict[str, list[str]] = field(default_factory=dict)  # the label names the model's heads classify into


@dataclass
class TaskEvaluation:
    metrics: dict[str, Any]  # percent (CIDEr x100), nested as the task likes; flattened to "task.key" for reports
    records: dict[str, list[dict]] = field(default_factory=dict)  # predictions by file stem: RETRIEVAL, CAPTIONS, CLASSIFICATIONS
    warnings: list[str] = field(default_factory=list)


class Evaluator(Protocol):
    """One task's evaluation, fed the samples of its subsets (in the order `Task.subsets` gives them)."""

    def add(self, subset: str, samples: list[Sample]) -> None: ...

    def finish(self) -> TaskEvaluation: ...


@dataclass(frozen=True)
class DatasetFacts:
    """What chance levels are computed from: a data set's evaluation split beside its training split."""

    train_subcategories: Sequence[str]  # per training image
    val_subcategories: Sequence[str]  # per evaluation image
    val_product_ids: Sequence[int]  # per evaluation image
    train_texts: Sequence[str]  # per training image: what a FashionGen task reads (title. description)
    val_texts: Sequence[str]
    gallery_sizes: dict[str, int]  # FashionIQ images per group in the evaluation split
    seed: int


class Task:
    """Subclass, set the class attributes, implement the methods without a default, and `register` an instance."""

    name: str  # short id: adapter sets, heads, metrics and teacher outputs are keyed by it
    title: str  # in words
    aliases: tuple[str, ...] = ()  # other names `--task` accepts
    mode: str  # CONTRASTIVE, FUSION or GENERATIVE: FUSION and GENERATIVE need the cross-attention adapters
    source: str  # FASHIONGEN or FASHIONIQ: where its samples come from
    headline: str  # its metric that summarises it (and picks the best weights by default), a key of its flattened metrics
    authors_selection: str  # the metric the authors' config keeps a single-task model of it by (select_by=authors)
    report_rows: tuple[tuple[str, str], ...] = ()  # (metric key, label) rows of `famevil report`
    paper: dict[str, float] = {}  # the paper's FAME-ViL (multi-task) figures, by metric key, for --compare

    # Data -------------------------------------------------------------------------------------------

    @property
    def headline_key(self) -> str:
        """Its headline metric's name among flattened metrics ("xmr.random100.mean")."""
        return f"{self.name}.{self.headline}"

    @property
    def authors_selection_key(self) -> str:
        return f"{self.name}.{self.authors_selection}"

    def train_subset(self) -> str:
        return f"{self.source}/train"

    def subsets(self, split: str) -> tuple[str, ...]:
        """The shard subsets its evaluation on `split` reads, in reading order."""
        return (f"{self.source}/{split}",)

    def training_size(self, sizes: dict[str, Any]) -> int:
        """Its training-set size (sizes.json of the shards), for size-proportional task sampling: the
        products where a subset has several views of each (FashionGen: about 60k products in 260k
        images, as the authors count them), otherwise the samples (FashionIQ's triplets)."""
        subset = sizes["subsets"][self.train_subset()]
        return subset.get("products", subset["samples"])

    def batch(self, samples: list[Sample], transform: Transform, tokenize: Tokenize) -> Batch:
        """The tensors its logits and loss read, and the samples' keys."""
        raise NotImplementedError

    # Model ------------------------------------------------------------------------------------------

    def build_head(self, network: FameVil, vocabularies: dict[str, list[str]]) -> nn.Module | None:
        """What sits on top of the towers (None: nothing). vocabularies: label names by vocab.json entry."""
        return None

    def text_vocabulary(self, shards: Shards, tokenize: Tokenize) -> dict[str, list[str]]:
        """Entries for the model config's vocabularies when language-model heads are restricted to the
        training text (training option head_vocabulary=training); a task without such a head has none."""
        return {}

    def init_head(self, head: nn.Module, network: FameVil) -> None:
        """Called once the backbone's weights are loaded: a head may start from them."""

    def logits(self, network: FameVil, head: nn.Module | None, batch: Batch) -> torch.Tensor:
        """What its loss reads, and what distillation compares with a teacher's."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def check(self, network: FameVil, head: nn.Module | None, batch: Batch) -> dict[str, float]:
        """Figures measured on a training batch now and then (no gradients), for the training log; by default, none."""
        return {}

    def warning(self, figures: dict[str, float]) -> str | None:
        """A warning when `check`'s figures (averaged over recent checks) show the task failing in a way its loss hides."""
        return None

    # Distillation -----------------------------------------------------------------------------------

    def signals(self, network: FameVil, head: nn.Module | None, batch: Batch, top_k: int) -> Signals:
        """What `famevil dump` stores per sample: enough to rebuild the teacher's distributions for any batch."""
        raise NotImplementedError

    def distillation(self, student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
        """The distillation loss of the student's logits against the teacher's stored signals for this batch."""
        raise NotImplementedError

    # Evaluation -------------------------------------------------------------------------------------

    def evaluator(self, network: FameVil, head: nn.Module | None, settings: EvalSettings) -> Evaluator:
        raise NotImplementedError

    def chance(self, facts: DatasetFacts) -> dict[str, float] | None:
        """Its metrics by chance on a data set, in percent (None: not known)."""
        return None

    # Parameter accounting (the paper's Table 4) -------------------------------------------------------

    def standalone_parameters(self, network: FameVil, head: nn.Module | None) -> int:
        """The parameters of the separate single-task model it replaces, counted as the paper counts
        them: a fine-tuned CLIP plus its head."""
        return count_parameters(network.backbone) + count_parameters(head)


def count_parameters(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


TASKS: dict[str, Task] = {}  # by name, in registration order: the order of every table and loop


def register(task: Task) -> Task:
    taken = {name for known in TASKS.values() for name in (known.name, *known.aliases)}
    clashes = {task.name, *task.aliases} & taken
    if clashes:
        raise FamevilError(f"task {task.name!r}: the name {sorted(clashes)[0]!r} is taken by a registered task")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    TASKS.pop(name, None)


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def find_task(name: str) -> Task:
    """A task by name or alias ("captioning" is fic)."""
    wanted = name.strip().lower()
    for task in TASKS.values():
        if wanted == task.name or wanted in task.aliases:
            return task
    choices = ", ".join(f"{t.name} ({', '.join(t.aliases)})" if t.aliases else t.name for t in TASKS.values())
    names = [spelling for t in TASKS.values() for spelling in (t.name, *t.aliases)]
    raise FamevilError(f"unknown task {name!r}{did_you_mean(wanted, names)}; choose one of: {choices}")


AUTHORS_MULTITASK_SELECTION = "tgir.mean"  # mtl_wa_kd.yaml keeps the student by FashionIQ's R@K average


def selection_keys(tasks: list[str], select_by: str) -> list[str]:
    """The validation metrics whose mean picks the best weights, checked before any work."""
    if select_by == "headlines":
        return [find_task(task).headline_key for task in tasks]
    if select_by == "authors":
        if len(tasks) == 1:
            return [find_task(tasks[0]).authors_selection_key]
        if AUTHORS_MULTITASK_SELECTION.split(".")[0] not in tasks:
            raise FamevilError(f"--set select_by=authors: the authors keep a multi-task model by {AUTHORS_MULTITASK_SELECTION}, and tgir is not trained")
        return [AUTHORS_MULTITASK_SELECTION]
    if select_by.split(".")[0] not in tasks:
        raise FamevilError(
            f"--set select_by={select_by}: expected headlines, authors, or a validation metric of a trained task ({', '.join(tasks)}), e.g. {find_task(tasks[0]).headline_key}"
        )
    return [select_by]


def check_coverage(shards: Shards, tasks: Sequence[Task], train: bool, evaluate_on: str | None) -> None:
    """Every subset the tasks read holds samples (their training subsets if `train`, their evaluation
    subsets of split `evaluate_on` if given); otherwise one line naming the missing subset, the task
    that needs it, and the `famevil prepare` flag that makes it."""
    present = shards.subsets
    for task in tasks:
        needed = ((task.train_subset(),) if train else ()) + (task.subsets(evaluate_on) if evaluate_on else ())
        for subset in needed:
            if present.get(subset, {}).get("samples", 0) < 1:
                listed = ", ".join(sorted(name for name, entry in present.items() if entry.get("samples"))) or "none"
                raise FamevilError(
                    f"{shards}: has no {subset!r} samples, which {task.name} ({task.title}) needs (present: {listed}); "
                    f"prepare them into these shards with famevil prepare {PREPARED_BY.get(task.source, f'--{task.source} ...')}"
                )
