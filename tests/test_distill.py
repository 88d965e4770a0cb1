"""famevil dump and distill: stored teacher outputs rebuild the teacher's distributions; a student
trains on all four tasks from them; bad teacher outputs are refused before any step."""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
from collections import Counter
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from data_specs.errors import FamevilError
from data_specs.manifest import read_manifest, write_manifest
from data_specs.shards import Shards
from famevil.checkpoint import load_checkpoint
from famevil.data.loading import shard_samples
from famevil.data.teacher_outputs import TeacherOutputs, read_keys, write_outputs
from famevil.data.transforms import image_transform
from famevil.tasks import find_task
from famevil.training.sampling import TaskSampler
from stages.distill import distill, distillation_loss, kd_weight_at
from stages.dump import dump
from stages.evaluate import evaluate
from tests.conftest import TASK_NAMES, TINY, RunsCode


def _first_batch(shards: Path, task_name: str, teacher) -> dict:
    task = find_task(task_name)
    samples = list(itertools.islice(shard_samples(Shards.open(shards).listed_files(task.train_subset())), 8))
    return task.batch(samples, image_transform(teacher.preprocess, train=False), teacher.tokenizer())


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture)
@torch.no_grad()
@pytest.mark.parametrize("task", TASK_NAMES)
def test_stored_outputs_rebuild_the_teachers_own_distributions(tiny_shards, tiny_dumps, task):
    teacher_dir, outputs_dir = tiny_dumps[task]
    teacher = load_checkpoint(teacher_dir).eval()
    batch = _first_batch(tiny_shards, task, teacher)
    own = teacher(task, batch)
    stored = TeacherOutputs(outputs_dir)
    signals = stored.gather(batch["keys"])
    if task in ("xmr", "tgir"):  # XMR: (image-to-text, text-to-image) x B x B; TGIR: queries x targets
        rebuilt = find_task(task).teacher_logits(signals, batch)
        assert torch.allclose(F.softmax(rebuilt, -1), F.softmax(own, -1), atol=2e-3)
    elif task == "scr":
        assert torch.allclose(F.softmax(signals["logits"].float(), -1), F.softmax(own, -1), atol=2e-3)
    else:
        real = own.real
        length = real.shape[1]
        expected_logprobs, expected_columns = own.log_probs.topk(5, dim=-1)  # own: packed real positions
        assert torch.equal(signals["ids"][:, :length][real].long(), own.tokens[expected_columns])
        assert torch.allclose(signals["logprobs"][:, :length][real].float(), expected_logprobs, atol=2e-2)

    manifest = read_manifest(outputs_dir)
    assert manifest.kind == "teacher-outputs" and manifest.details["task"] == task
    assert [ref.role for ref in manifest.inputs] == ["teacher", "shards"]
    assert len(stored) == manifest.details["samples"] == sum(1 for _ in shard_samples(Shards.open(tiny_shards).listed_files(find_task(task).train_subset())))
    assert {p.name for p in (outputs_dir / "outputs").iterdir()} == {
        f"{p.stem}.safetensors" for p in Shards.open(tiny_shards).paths(find_task(task).train_subset())
    }
    assert manifest.details["bytes_per_sample"] < 10_000


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture)
def test_a_dump_resumes_shard_by_shard(tiny_shards, tiny_dumps, tmp_path):
    teacher, outputs = tiny_dumps["scr"]
    partial = tmp_path / ".again.partial"
    shutil.copytree(outputs, partial)
    first = next(iter(sorted((partial / "outputs").iterdir())))
    (partial / "outputs" / "stale-marker").write_text("")
    (partial / "manifest.json").unlink()
    for other in sorted((partial / "outputs").glob("*.safetensors"))[1:]:
        other.unlink()
    (partial / "outputs" / "stale-marker").unlink()
    (partial / ".plan.json").write_text(json.dumps({"inputs": [ref.id for ref in read_manifest(outputs).inputs], "top_k": 5}))
    result = dump(teacher, tiny_shards, tmp_path / "again", top_k=5, batch_size=16)
    assert result.resumed_shards == 1 and first.name in {p.name for p in (tmp_path / "again" / "outputs").iterdir()}
    assert read_manifest(tmp_path / "again").details["samples"] == read_manifest(outputs).details["samples"]


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture)
def test_a_short_distillation_trains_all_four_tasks_from_one_checkpoint(tiny_shards, tiny_dumps, tmp_path):
    out = tmp_path / "student"
    outputs = [tiny_dumps[task][1] for task in TASK_NAMES]
    # The demo's setting: the student's captioning head restricted to the training text, its teacher's not.
    overrides = TINY | {"max_steps": 32, "eval_every": 32, "checkpoint_every": 32, "head_vocabulary": "training"}
    result = distill(tiny_shards, out, outputs, overrides=overrides, sampling="round-robin")

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    drawn = Counter(name.removeprefix("loss_") for line in lines for name in line if name.startswith("loss_"))
    assert drawn == {task: 8 for task in TASK_NAMES}
    for task in TASK_NAMES:
        for part in ("loss", "kd"):
            values = [line[f"{part}_{task}"] for line in lines if f"{part}_{task}" in line]
            assert sum(values[-3:]) < sum(values[:3]), (part, task, values)
    manifest = read_manifest(out)
    assert manifest.kind == "student" and manifest.details["kd_weight"] == 1.0
    assert [ref.role for ref in manifest.inputs] == ["base", "shards", *[f"teacher-outputs:{task}" for task in TASK_NAMES]]
    assert set(result.validation) >= {f"{task}.{find_task(task).headline}" for task in TASK_NAMES}

    evaluation = evaluate(tmp_path / "eval", tiny_shards, model=out)
    assert set(evaluation.metrics) == set(TASK_NAMES)
    assert load_checkpoint(out).head("fic").weight.shape[0] < 1000


def test_the_baseline_needs_no_teachers(tiny_shards, tmp_path):
    overrides = TINY | {"max_steps": 4, "checkpoint_every": 4, "head_vocabulary": "training"}
    result = distill(tiny_shards, tmp_path / "baseline", kd_weight=0, overrides=overrides)
    lines = (tmp_path / "baseline" / "metrics.jsonl").read_text()
    assert "kd_" not in lines and result.manifest.details["kd_weight"] == 0
    assert [ref.role for ref in result.manifest.inputs] == ["base", "shards"]


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture)
@torch.no_grad()
def test_teacher_annealing_fades_the_distillation_loss_out(tiny_shards, tiny_dumps):
    student = load_checkpoint(tiny_dumps["scr"][0])
    torch.nn.init.normal_(student.head("scr").weight)  # away from its teacher, so that the distillation loss is not 0
    batch = _first_batch(tiny_shards, "scr", student)
    teachers = {"scr": TeacherOutputs(tiny_dumps["scr"][1])}

    def total(schedule: str, step: int) -> tuple[float, float, float]:
        loss, parts = distillation_loss(teachers, partial(kd_weight_at, 2.0, schedule, 4), 1.0, student, "scr", batch, step)
        return loss.item(), parts["loss_scr"], parts["kd_scr"]

    for step, weight in [(0, 2.0), (2, 1.0), (4, 0.0)]:
        annealed, task_loss, kd_loss = total("anneal", step)
        assert kd_loss > 0.1 and annealed == pytest.approx(task_loss + weight * kd_loss, rel=1e-5)
        assert total("constant", step)[0] == pytest.approx(task_loss + 2.0 * kd_loss, rel=1e-5)
    with pytest.raises(FamevilError, match="--kd-schedule 'cosine'"):
        distill(tiny_shards, Path("unused"), kd_schedule="cosine")


def _from_other_shards(outputs: dict[str, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "outputs-from-other-shards"
    shutil.copytree(outputs["fic"], copy)
    made = read_manifest(copy)  # rewritten whole, as a dump of other shards would have written it
    inputs = [replace(ref, id="sha256:" + "0" * 64) if ref.role == "shards" else ref for ref in made.inputs]
    write_manifest(copy, made.kind, inputs=inputs, details=made.details, command=made.command)
    return copy


def _missing_a_row(outputs: dict[str, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "outputs-missing-rows"
    shutil.copytree(outputs["scr"], copy)
    first = sorted((copy / "outputs").glob("*.safetensors"))[0]
    keys = read_keys(first)[:-1]
    write_outputs(first, keys, TeacherOutputs(copy).gather(keys))
    return copy


# (case, the --teacher-outputs made from (each task's outputs, each task's teacher, tmp_path), what the error says)
BAD_OUTPUTS = [
    ("one task missing", lambda o, t, d: [o[task] for task in TASK_NAMES if task != "scr"], "no --teacher-outputs for scr"),
    ("two sets for a task", lambda o, t, d: [*o.values(), o["xmr"]], "a second set for xmr"),
    ("outputs of other shards", lambda o, t, d: [o["xmr"], o["tgir"], o["scr"], _from_other_shards(o, d)], "dumped from other shards"),
    (
        "a shard with a row missing",
        lambda o, t, d: [o["xmr"], o["tgir"], _missing_a_row(o, d), o["fic"]],
        r"train-000000.safetensors: [0-9,]+ bytes where its manifest lists",
    ),
    ("a teacher instead of its outputs", lambda o, t, d: [o["xmr"], o["tgir"], o["scr"], t["fic"]], "teacher-outputs"),
]


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture)
@pytest.mark.parametrize(("paths", "says"), [case[1:] for case in BAD_OUTPUTS], ids=[case[0] for case in BAD_OUTPUTS])
def test_bad_teacher_outputs_are_refused_before_any_step(tiny_shards, tiny_dumps, tmp_path, paths, says):
    outputs = {task: made[1] for task, made in tiny_dumps.items()}
    teachers = {task: made[0] for task, made in tiny_dumps.items()}
    with pytest.raises(FamevilError, match=says):
        distill(tiny_shards, tmp_path / "student", paths(outputs, teachers, tmp_path), overrides=TINY | {"max_steps": 1})
    assert not (tmp_path / "student").exists() and not (tmp_path / ".student.partial").exists()


def test_task_sampling_draws_the_intended_frequencies():
    sizes = {"xmr": 3000, "tgir": 900, "scr": 3000, "fic": 3000}
    draws = 40_000
    for strategy, expected in (("size", {t: s / 9900 for t, s in sizes.items()}), ("uniform", {t: 0.25 for t in sizes})):
        sampler = TaskSampler(sizes, strategy, seed=0)
        counts = Counter(next(sampler) for _ in range(draws))
        for task, probability in expected.items():
            standard_error = (probability * (1 - probability) / draws) ** 0.5
            assert abs(counts[task] / draws - probability) < 4 * standard_error, (strategy, task, counts)
    round_robin = TaskSampler(sizes, "round-robin")
    assert [next(round_robin) for _ in range(6)] == ["xmr", "tgir", "scr", "fic", "xmr", "tgir"]

    sampler = TaskSampler(sizes, "size", seed=3)
    for _ in range(17):
        next(sampler)
    restored = TaskSampler(sizes, "size", seed=99)
    restored.load_state_dict(json.loads(json.dumps(sampler.state_dict())))  # as a checkpoint stores it
    assert [next(restored) for _ in range(50)] == [next(sampler) for _ in range(50)]
    with pytest.raises(FamevilError, match="--sampling"):
        TaskSampler(sizes, "ias")


@pytest.mark.slow  # four teachers trained and dumped (the tiny_dumps fixture)
def test_a_pickle_in_place_of_teacher_outputs_is_refused_unread(tiny_shards, tiny_dumps, tmp_path):
    outputs = {task: tiny_dumps[task][1] for task in TASK_NAMES}
    crafted = tmp_path / "outputs-scr"
    shutil.copytree(outputs["scr"], crafted)
    sentinel = tmp_path / "code-ran"
    target = sorted((crafted / "outputs").iterdir())[0]
    target.write_bytes(pickle.dumps(RunsCode(sentinel)))
    with pytest.raises(FamevilError, match=f"{target.name}: "):
        distill(tiny_shards, tmp_path / "student", [*(outputs[t] for t in TASK_NAMES if t != "scr"), crafted], overrides=TINY | {"max_steps": 1})
    assert not sentinel.exists()
