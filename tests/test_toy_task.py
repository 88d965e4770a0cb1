"""A fifth task, registered from this file alone, runs through teach, dump, distill (beside the four
built-in tasks), evaluate and report: adding a task is one module, and nothing else changes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from famevil.checkpoint import load_checkpoint
from famevil.model.fame_vil import FameVil
from famevil.report.table import build_report
from famevil.tasks import register, task_names, unregister
from famevil.tasks.base import CONTRASTIVE, Batch
from famevil.tasks.scr import SubcategoryRecognition
from stages.distill import distill
from stages.dump import dump
from stages.evaluate import evaluate
from stages.teach import teach
from tests.conftest import TASK_NAMES, TINY


class CategoryFromImage(SubcategoryRecognition):
    """The garment's category (48 in FashionGen) from the image alone: the classifier of SCR on the
    contrastive image embedding, with the category vocabulary."""

    name = "category"
    title = "category recognition from the image"
    aliases = ()
    mode = CONTRASTIVE
    report_rows = (("accuracy", "category accuracy"),)
    paper = {}
    vocabulary = "category"

    def features(self, network: FameVil, batch: Batch) -> torch.Tensor:
        return network.encode_image(batch["images"], self.name, normalize=False)

    def chance(self, facts) -> None:
        return None


@pytest.fixture
def toy_task():
    task = register(CategoryFromImage())
    yield task
    unregister(task.name)


@pytest.mark.slow
def test_a_fifth_task_runs_through_every_stage(toy_task, tiny_shards, tiny_dumps, tmp_path):
    assert task_names() == (*TASK_NAMES, "category")
    teacher_dir, outputs_dir = tmp_path / "teacher-category", tmp_path / "outputs-category"
    teach("category", tiny_shards, teacher_dir, overrides=TINY | {"max_steps": 3, "checkpoint_every": 3})
    teacher = load_checkpoint(teacher_dir)
    assert teacher.tasks == ("category",) and teacher.xaa is None  # contrastive alone: no cross-attention adapters
    assert isinstance(teacher.head("category"), nn.Linear) and teacher.head("category").out_features == len(teacher.config.vocabularies["category"])

    dumped = dump(teacher_dir, tiny_shards, outputs_dir, top_k=5, batch_size=16)
    assert dumped.task == "category" and dumped.samples > 0

    student_dir = tmp_path / "student"
    outputs = [tiny_dumps[task][1] for task in TASK_NAMES] + [outputs_dir]
    distill(tiny_shards, student_dir, outputs, overrides=TINY | {"max_steps": 10, "checkpoint_every": 10}, sampling="round-robin")
    lines = [json.loads(line) for line in (student_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss_category" in line for line in lines) == 2 and sum("kd_category" in line for line in lines) == 2
    assert load_checkpoint(student_dir).tasks == (*TASK_NAMES, "category")

    student_eval = evaluate(tmp_path / "eval-student", tiny_shards, model=student_dir, batch_size=16, max_new_tokens=4, random100_runs=1)
    assert set(student_eval.metrics) == {*TASK_NAMES, "category"}
    assert 0 <= student_eval.metrics["category"]["accuracy"] <= 100
    teacher_eval = evaluate(tmp_path / "eval-teacher", tiny_shards, model=teacher_dir, batch_size=16)
    assert set(teacher_eval.metrics) == {"category"}

    table = build_report([tmp_path / "eval-teacher"], [tmp_path / "eval-student"])
    row = next(row for row in table.rows if row[0] == "category accuracy")
    assert row[1].mean == teacher_eval.metrics["category"]["accuracy"] and row[2].mean == student_eval.metrics["category"]["accuracy"]


def test_a_taken_name_is_refused(toy_task):
    with pytest.raises(Exception, match="the name 'category' is taken"):
        register(CategoryFromImage())
