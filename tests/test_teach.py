"""famevil teach and pretrain: a whole stage at tiny scale, resume, two processes, bad input."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_specs.errors import FamevilError
from data_specs.manifest import read_manifest
from famevil.checkpoint import load_checkpoint
from famevil.tasks import find_task
from famevil.training.loop import _truncate_log
from famevil.training.streams import TaskStream
from stages.prepare import prepare
from stages.pretrain import pretrain
from stages.teach import teach
from tests.conftest import RunsCode, launch

# A 2-layer backbone, small batches, a learning rate that moves it within a dozen updates.
TINY = {"model": "famevil-tiny", "batch_size": 8, "batches_per_epoch": 5, "warmup_steps": 2, "lr_backbone": 1e-3, "lr_adapters": 3e-3, "workers": 0}
STATE_FILES = {"famevil-state.json", "run_state.json", "model.safetensors", "optimizer.bin", "random_states_0.pkl", "scheduler.bin"}


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def _losses(run: Path, task: str) -> list[float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line[f"loss_{task}"] for line in lines if f"loss_{task}" in line]


# TGIR's run is the quickest: it stays in the fast tier, the others in the slow one.
@pytest.mark.parametrize("task", [pytest.param(task, marks=() if task == "tgir" else pytest.mark.slow) for task in ("xmr", "tgir", "scr", "fic")])
def test_each_task_trains_and_writes_exactly_its_files(tiny_shards, tmp_path, task):
    out = tmp_path / task
    result = teach(task, tiny_shards, out, overrides=TINY | {"max_steps": 14, "eval_every": 14, "checkpoint_every": 5, "keep_checkpoints": 2})

    losses = _losses(out, task)
    assert len(losses) == 14
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, losses
    states = {f"checkpoints/step-{step:06d}/{name}" for step in (10, 14) for name in STATE_FILES}
    assert _files(out) == {"manifest.json", "config.json", "model.safetensors", "train_config.json", "metrics.jsonl", "timings.jsonl"} | states
    manifest = read_manifest(out)
    assert "timings.jsonl" not in manifest.files  # wall-clock times: outside the content id
    assert manifest.kind == "teacher" and manifest.details["task"] == task
    assert [(ref.role, ref.kind) for ref in manifest.inputs] == [("base", "random-weights"), ("shards", "shards")]
    assert manifest.inputs[1].id == read_manifest(tiny_shards).content_id
    assert manifest.details["steps"] == 14 and manifest.details["best_step"] == 14
    assert all(key.startswith(f"{task}.") for key in result.validation if key != "score")
    assert result.validation["score"] == result.validation[f"{task}.{find_task(task).headline}"]
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 14
    assert list(load_checkpoint(out).tsa) == [task]


def test_pretrained_base_trains_only_the_backbone_and_feeds_a_teacher(tiny_shards, tmp_path):
    base = tmp_path / "base"
    pretrain(tiny_shards, base, overrides=TINY | {"max_steps": 3, "eval_every": 0, "checkpoint_every": 3})
    trained = load_checkpoint(base)
    assert read_manifest(base).kind == "base"
    assert all(float(p.detach().abs().sum()) == 0 for n, p in trained.tsa.named_parameters() if n.endswith("up.weight"))  # adapters still zero

    teacher = tmp_path / "teacher"
    teach("captioning", tiny_shards, teacher, base=str(base), overrides=TINY | {"max_steps": 1, "eval_every": 0, "checkpoint_every": 1})
    assert read_manifest(teacher).inputs[0].kind == "base"
    assert read_manifest(teacher).inputs[0].id == read_manifest(base).content_id
    assert read_manifest(teacher).details["task"] == "fic"


@pytest.mark.slow
def test_an_interrupted_run_resumed_ends_with_the_same_weights(tiny_shards, tmp_path, monkeypatch):
    options = TINY | {"max_steps": 8, "eval_every": 4, "checkpoint_every": 3, "keep_checkpoints": 5}
    teach("scr", tiny_shards, tmp_path / "whole", overrides=options)

    calls = {"n": 0}
    original = TaskStream.__next__

    def interrupted_at_the_sixth_batch(self):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # Ctrl-C in the middle of step 6, after the step-3 state was saved
        return original(self)

    monkeypatch.setattr(TaskStream, "__next__", interrupted_at_the_sixth_batch)
    with pytest.raises(KeyboardInterrupt):
        teach("scr", tiny_shards, tmp_path / "resumed", overrides=options)
    monkeypatch.setattr(TaskStream, "__next__", original)
    assert not (tmp_path / "resumed").exists()
    with pytest.raises(FamevilError, match="--resume auto"):  # without --resume, the interrupted run is not thrown away
        teach("scr", tiny_shards, tmp_path / "resumed", overrides=options)
    result = teach("scr", tiny_shards, tmp_path / "resumed", overrides=options, resume="auto")

    assert result.resumed_from == 3
    for name in ("model.safetensors", "checkpoints/step-000008/model.safetensors"):
        whole, resumed = load_file(tmp_path / "whole" / name), load_file(tmp_path / "resumed" / name)
        assert whole.keys() == resumed.keys()
        for key in whole:
            assert (whole[key] - resumed[key]).abs().max() <= 1e-6, key

    def strip(run):
        return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"} for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert strip(tmp_path / "resumed") == strip(tmp_path / "whole")


# Run teach in a child process that SIGKILLs itself in the middle of its second checkpoint save, after
# Accelerate wrote the weights and before famevil's marker: what a kill -9 at the worst moment leaves.
_KILLED_WHILE_SAVING = """
import os, signal, sys
import accelerate
from pathlib import Path
from stages.teach import teach
saves = {"n": 0}
original = accelerate.Accelerator.save_state
def save_then_die(self, output_dir=None, **kwargs):
    saves["n"] += 1
    result = original(self, output_dir, **kwargs)
    if saves["n"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
accelerate.Accelerator.save_state = save_then_die
teach("scr", Path(sys.argv[1]), Path(sys.argv[2]), overrides=__import__("json").loads(sys.argv[3]))
"""


def test_a_run_killed_with_sigkill_while_saving_resumes_to_the_same_weights(tiny_shards, tmp_path):
    options = TINY | {"max_steps": 6, "checkpoint_every": 2, "keep_checkpoints": 5}
    teach("scr", tiny_shards, tmp_path / "whole", overrides=options)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_SAVING, str(tiny_shards), str(tmp_path / "resumed"), json.dumps(options)],
        capture_output=True,
        timeout=300,
        env=os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads())},  # as many threads as here: the same float sums
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    checkpoints = tmp_path / ".resumed.partial" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [".step-000004.tmp", "step-000002"]  # the torn save never became a state
    result = teach("scr", tiny_shards, tmp_path / "resumed", overrides=options, resume="auto")
    assert result.resumed_from == 2
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert all((whole[key] - resumed[key]).abs().max() <= 1e-6 for key in whole)


@pytest.mark.slow  # two processes under accelerate launch
def test_two_processes_end_with_the_same_weights(tiny_shards, tmp_path):
    out = tmp_path / "teacher"
    overrides = [f"--set={name}={value}" for name, value in (TINY | {"eval_every": 2, "checkpoint_every": 2}).items()]
    arguments = ["teach", "--task", "tgir", "--shards", tiny_shards, "--out", out, "--max-steps", "4", *overrides, "--report-to", "csv"]
    finished = launch(arguments, port=29517)
    assert finished.returncode == 0, finished.stderr[-3000:]
    details = read_manifest(out).details
    assert details["processes"] == 2
    logged = [(row["step"], row["name"]) for row in csv.DictReader((out / "metrics.csv").open())]
    assert {step for step, _ in logged} == {"1", "2", "3", "4"} and len(logged) == len(set(logged))  # once, by the main process
    digests = details["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in (out / "checkpoints" / "step-000004").iterdir()}


def _wrong_kind(shards: Path, tmp_path: Path, **changes) -> Path:
    copy = tmp_path / "changed-shards"
    shutil.copytree(shards, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(manifest | changes))
    return copy


def _fashiongen_only(raw: Path, tmp_path: Path) -> Path:
    prepare(tmp_path / "fashiongen-only", fashiongen=raw / "fashiongen", shard_size=64, workers=1)
    return tmp_path / "fashiongen-only"


def _state_without_marker(tmp_path: Path) -> Path:
    state = tmp_path / "checkpoints" / "step-000003"
    state.mkdir(parents=True)
    (state / "custom_checkpoint_0.pkl").write_bytes(b"not famevil's")
    return state


TEACH = ["teach", "--task", "xmr", "--set", "model=famevil-tiny", "--max-steps", "1"]
# (case, the command's arguments made from (tiny_shards, tiny_raw, tmp_path), what the one line says)
BAD_INPUTS = [
    ("shards of the wrong kind", lambda s, r, t: [*TEACH, "--shards", _wrong_kind(s, t, kind="metrics"), "--out", t / "a"], ["famevil prepare"]),
    ("an unknown schema version", lambda s, r, t: [*TEACH, "--shards", _wrong_kind(s, t, schema_version=99), "--out", t / "a"], ["schema"]),
    (
        "shards without the task's source",
        lambda s, r, t: ["teach", "--task", "tgir", "--shards", _fashiongen_only(r, t), "--out", t / "b"],
        ["fashioniq/train", "--fashioniq"],
    ),
    ("an unknown option", lambda s, r, t: [*TEACH, "--shards", s, "--out", t / "c", "--set", "learning_rate=1"], ["unknown training option 'learning_rate'"]),
    ("an option of the wrong type", lambda s, r, t: [*TEACH, "--shards", s, "--out", t / "c", "--set", "batch_size=abc"], ["--set batch_size", "integer"]),
    *[
        (f"{assignment} out of range", lambda s, r, t, a=assignment: [*TEACH, "--shards", s, "--out", t / "c", "--set", a], [f"--set {assignment}", "must be"])
        for assignment in ("gradient_accumulation=0", "checkpoint_every=0", "seed=-1", "workers=-1", "batch_size=0", "decay_steps=0")
    ],
    (
        "an output under a file",
        lambda s, r, t: [*TEACH, "--shards", s, "--out", (t / "a-file").write_text("") or t / "a-file" / "teacher"],
        ["is not a directory"],
    ),
    ("an output where nothing can be written", lambda s, r, t: [*TEACH, "--shards", s, "--out", "/proc/famevil-teacher"], ["cannot write there"]),
    (
        "a hub base",
        lambda s, r, t: [*TEACH, "--shards", s, "--out", t / "d", "--base", "hf-hub:org/name"],
        ["--base hf-hub:org/name: could not fetch it"],  # offline here: its config cannot be read
    ),
    (
        "a base of another architecture",
        lambda s, r, t: [*TEACH, "--shards", s, "--out", t / "d", "--base", "ViT-B-16:openai"],
        ["--set model=famevil-tiny: --base ViT-B-16:openai is a ViT-B-16", "drop --set model="],
    ),
    (
        "a base famevil cannot adapt yet",
        lambda s, r, t: [*TEACH, "--shards", s, "--out", t / "d", "--base", "RN50:openai"],
        ["--base RN50:openai: famevil cannot adapt a ResNet image tower (open_clip's ModifiedResNet) yet"],
    ),
    (
        "a selection criterion of an untrained task",
        lambda s, r, t: [*TEACH, "--shards", s, "--out", t / "d", "--set", "select_by=fic.bleu4"],
        ["--set select_by=fic.bleu4: expected headlines, authors, or a validation metric of a trained task"],
    ),
    (
        "a resume folder famevil did not write",
        lambda s, r, t: [*TEACH, "--shards", s, "--out", t / "e", "--resume", _state_without_marker(t)],
        ["famevil resumes only the states a run wrote itself"],
    ),
]


@pytest.mark.parametrize(("arguments", "says"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_before_training(tiny_shards, tiny_raw, tmp_path, cli, arguments, says):
    result = cli(*arguments(tiny_shards, tiny_raw, tmp_path))
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert "Traceback" not in result.stderr and "\n" not in line, result.stderr  # the one line, and nothing started before it
    assert all(text in line for text in says), line
    assert "--model" not in line  # teach has no such flag: an error names the flag the user passed
    assert not any(path.name.startswith(".") for path in tmp_path.rglob("*"))  # nothing half-written


def test_no_file_of_a_resume_folder_is_unpickled_unless_the_run_wrote_it(tiny_shards, tmp_path, monkeypatch):
    options = TINY | {"max_steps": 4, "checkpoint_every": 2}
    original, calls = TaskStream.__next__, {"n": 0}

    def interrupted_at_the_third_batch(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(TaskStream, "__next__", interrupted_at_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        teach("scr", tiny_shards, tmp_path / "teacher", overrides=options)
    monkeypatch.setattr(TaskStream, "__next__", original)
    state = tmp_path / ".teacher.partial" / "checkpoints" / "step-000002"
    assert {path.name for path in state.iterdir()} == STATE_FILES
    sentinel = tmp_path / "code-ran"
    for name in sorted(STATE_FILES - {"famevil-state.json"}):
        saved = (state / name).read_bytes()
        (state / name).write_bytes(pickle.dumps(RunsCode(sentinel)))
        with pytest.raises(FamevilError, match=f"{name}: not the file this run saved"):
            teach("scr", tiny_shards, tmp_path / "teacher", overrides=options, resume="auto")
        assert not sentinel.exists(), name
        (state / name).write_bytes(saved)
    # A state folder from elsewhere is refused before anything in it is read, marker or not.
    elsewhere = tmp_path / "downloaded" / "step-000002"
    shutil.copytree(state, elsewhere)
    with pytest.raises(FamevilError, match="famevil resumes only the states a run wrote itself"):
        teach("scr", tiny_shards, tmp_path / "teacher", overrides=options, resume=str(elsewhere))
    assert teach("scr", tiny_shards, tmp_path / "teacher", overrides=options, resume="auto").resumed_from == 2


def test_a_loss_that_turns_nan_stops_the_run_and_publishes_nothing(tiny_shards, tmp_path, monkeypatch):
    task = find_task("scr")
    original, calls = type(task).loss, {"n": 0}

    def nan_from_the_fifth_update(self, logits, batch):
        calls["n"] += 1
        loss = original(self, logits, batch)
        return loss * float("nan") if calls["n"] >= 5 else loss

    monkeypatch.setattr(type(task), "loss", nan_from_the_fifth_update)
    options = TINY | {"max_steps": 8, "checkpoint_every": 2}
    with pytest.raises(FamevilError, match=r"step 5: loss_scr is nan; nothing was published.*--resume .*step-000004"):
        teach("scr", tiny_shards, tmp_path / "teacher", overrides=options)
    assert not (tmp_path / "teacher").exists()
    states = sorted(p.name for p in (tmp_path / ".teacher.partial" / "checkpoints").iterdir())
    assert states[-1] == "step-000004"  # the last good state, kept for a resume
    assert all(math.isfinite(json.loads(line)["loss_scr"]) for line in (tmp_path / ".teacher.partial" / "metrics.jsonl").read_text().splitlines())


def test_early_stopping_ends_a_run_that_stops_improving(tiny_shards, tmp_path):
    frozen = TINY | {"lr_backbone": 0.0, "lr_adapters": 0.0, "max_steps": 10, "eval_every": 1, "checkpoint_every": 10, "early_stopping": 2}
    result = teach("xmr", tiny_shards, tmp_path / "teacher", overrides=frozen)
    assert result.steps == 3 and result.best_step == 1  # validations at 2 and 3 gained nothing over 1
    assert (tmp_path / "teacher" / "checkpoints" / "step-000003").is_dir()


def test_a_log_torn_by_an_interruption_is_mended_on_resume(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss_xmr": 2.0}\n{"step": 2, "loss_xmr": 1.9}\n{"step": 3, "loss_xmr": 1.8}\n{"step": 4, "lo')
    _truncate_log(log, step=2)
    assert log.read_text() == '{"step": 1, "loss_xmr": 2.0}\n{"step": 2, "loss_xmr": 1.9}\n'


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "expected"), [([], "bf16"), (["--set", "mixed_precision=no"], "no")])
def test_accelerates_mixed_precision_applies_unless_the_options_set_one(tiny_shards, tmp_path, overrides, expected):
    """The demo presets leave mixed precision to Accelerate (here its environment, as `accelerate launch
    --mixed_precision bf16` sets it); an option set on the command line or in a preset wins."""
    out = tmp_path / "teacher"
    options = [f"--set={name}={value}" for name, value in TINY.items()]
    command = [sys.executable, "-m", "famevil_cli", "teach", "--task", "scr", "--shards", str(tiny_shards), "--out", str(out), "--max-steps", "1"]
    environment = os.environ | {"OMP_NUM_THREADS": "1", "ACCELERATE_MIXED_PRECISION": "bf16"}
    finished = subprocess.run([*command, *options, "--set", "eval_every=0", *overrides], capture_output=True, text=True, timeout=600, env=environment)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"mixed precision {expected}" in finished.stdout + finished.stderr
    assert read_manifest(out).details["mixed_precision"] == expected


def test_trackers_receive_what_metrics_jsonl_records(tiny_shards, tmp_path):
    out = tmp_path / "teacher"
    teach("scr", tiny_shards, out, overrides=TINY | {"max_steps": 2, "eval_every": 2, "checkpoint_every": 2}, report_to=["tensorboard", "csv"])
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = {record["step"]: record["loss_scr"] for record in logged if "loss_scr" in record}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert {int(r["step"]): float(r["value"]) for r in rows if r["name"] == "loss_scr"} == pytest.approx(losses)
    assert any(r["name"] == "validation/scr.accuracy" for r in rows)
    events = EventAccumulator(str(next((out / "teacher").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("loss_scr")} == pytest.approx(losses, rel=1e-6)
    assert read_manifest(out).kind == "teacher"  # the tracker's files are part of the published run


def test_an_unknown_or_missing_tracker_is_one_line(tiny_shards, tmp_path):
    with pytest.raises(FamevilError, match="--report-to mlflow: unknown tracker; choose from tensorboard, wandb, csv, none"):
        teach("scr", tiny_shards, tmp_path / "a", overrides=TINY | {"max_steps": 1}, report_to=["mlflow"])
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(FamevilError, match="--report-to wandb: needs the wandb package; pip install wandb"):
            teach("scr", tiny_shards, tmp_path / "b", overrides=TINY | {"max_steps": 1}, report_to=["wandb"])


def test_select_by_authors_keeps_a_teacher_by_the_authors_criterion(tiny_shards, tmp_path):
    """XMR's authors keep the teacher by the full gallery's mean, not famevil's headline (random 100)."""
    result = teach("xmr", tiny_shards, tmp_path / "xmr", overrides=TINY | {"max_steps": 2, "eval_every": 2, "checkpoint_every": 2, "select_by": "authors"})
    assert result.validation["score"] == result.validation["xmr.full.mean"] != result.validation["xmr.random100.mean"]
