"""A shop with photos and copy but no modification pairs trains the tasks it has: teachers, their outputs,
the student and the baseline of --tasks xmr,scr,fic, their evaluations and the report, on shards
without FashionIQ's subsets."""

from __future__ import annotations

import math

import pytest

from data_specs.errors import FamevilError
from famevil.checkpoint import load_checkpoint
from stages.distill import distill
from stages.dump import dump
from stages.evaluate import evaluate
from stages.prepare import prepare
from stages.report import report
from stages.teach import teach
from tests.conftest import TINY

SUBSET = ["xmr", "scr", "fic"]


@pytest.fixture(scope="module")
def products_only(tiny_raw, tmp_path_factory):
    """Shards of the products alone: no modification pairs, so no TGIR subsets."""
    return prepare(tmp_path_factory.mktemp("shop") / "shards", fashiongen=tiny_raw / "fashiongen", shard_size=16, workers=2).out


def test_all_four_tasks_need_pairs_and_a_subset_does_not(products_only, tmp_path):
    with pytest.raises(FamevilError, match="fashioniq/train"):
        distill(products_only, tmp_path / "all", kd_weight=0, overrides=TINY | {"max_steps": 1})
    baseline = distill(products_only, tmp_path / "baseline", tasks=["retrieval", "scr", "captioning"], kd_weight=0, overrides=TINY | {"max_steps": 1})
    assert load_checkpoint(baseline.out).tasks == ("xmr", "scr", "fic")  # aliases resolved, the registry's order


@pytest.mark.slow  # three tiny teachers, their outputs, a student, a baseline and their evaluations
def test_the_chain_of_a_subset_runs_to_the_report(products_only, tmp_path):
    options = TINY | {"max_steps": 2}
    teachers = {task: teach(task, products_only, tmp_path / f"teacher-{task}", overrides=options).out for task in SUBSET}
    outputs = [dump(teacher, products_only, tmp_path / f"outputs-{task}", top_k=4, batch_size=16).out for task, teacher in teachers.items()]
    with pytest.raises(FamevilError, match="is a fic teacher's, a task the student does not train"):
        distill(products_only, tmp_path / "wrong", teacher_outputs=outputs, tasks=["xmr", "scr"], overrides=options)
    student = distill(products_only, tmp_path / "student", teacher_outputs=outputs, tasks=SUBSET, overrides=options).out
    baseline = distill(products_only, tmp_path / "baseline", tasks=SUBSET, kd_weight=0, overrides=options).out

    def evaluation(model, name):
        return evaluate(tmp_path / "eval" / name, products_only, model=model, batch_size=16, random100_runs=1, max_new_tokens=8).out

    table = report(
        [evaluation(teacher, f"teacher-{task}") for task, teacher in teachers.items()],
        [evaluation(student, "student")],
        [evaluation(baseline, "baseline")],
    ).table
    figures = {row[0]: row for row in table.rows}
    assert figures["XMR mean R (random 100)"][2] is not None and figures["SCR accuracy"][2] is not None and figures["FIC CIDEr"][2] is not None
    assert figures["TGIR avg R@10"][2] is None  # a task the student does not have: an empty cell, not an error
    assert all(math.isfinite(gain.mean) for gain in table.relative_gains.values())
