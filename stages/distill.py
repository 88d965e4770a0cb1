"""famevil distill: one multi-task student from four teachers' stored outputs (multi-teacher distillation)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from data_specs.errors import FamevilError
from data_specs.evaluations import flatten, read_metrics
from data_specs.manifest import InputRef, require_artifact
from data_specs.shards import Shards
from famevil.data.teacher_outputs import TeacherOutputs
from famevil.multitask import task_loss
from famevil.tasks import TASKS, find_task
from famevil.tasks.base import Task, selection_keys
from famevil.training.balancing import Balancing, build_balancing
from famevil.training.loop import Job, Risk, TrainingResult, fit
from famevil.training.recipe import build_model, model_vocabularies, network_config, task_stream, training_base, training_shards, validation
from famevil.training.sampling import TaskSampler

KD_SCHEDULES = ("constant", "anneal")
# Where a diverged run's likely cause is looked for (Risk): a weight past KD_WEIGHT_FAR_ABOVE_ONE lets the
# distillation loss swamp the task's; teacher outputs are unit embeddings, logits within the retrieval
# scale (at most 100) and log-probabilities, so a value past HUGE_TEACHER_OUTPUT is damage or a broken teacher.
KD_WEIGHT_FAR_ABOVE_ONE = 10.0
HUGE_TEACHER_OUTPUT = 1e4


def distill(
    shards: Path,
    out: Path,
    teacher_outputs: list[Path] | None = None,
    tasks: list[str] | None = None,
    base: str | None = None,
    preset: str = "demo-cpu",
    overrides: dict[str, Any] | None = None,
    sampling: str = "size",
    kd_weight: float = 1.0,
    kd_schedule: str = "constant",
    temperature: float = 1.0,
    balancing: str = "none",
    ias_targets: dict[str, float] | None = None,
    ias_targets_from: list[Path] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    report_to: list[str] | None = None,
) -> TrainingResult:
    """Train one multi-task model (shared backbone and cross-attention adapters, one task adapter set and
    one head per task) from the teachers' stored outputs, as FAME-ViL's multi-teacher distillation does.

    Each iteration draws one task (--sampling size: in proportion to its training-set size, the
    paper's default; uniform; round-robin) and minimises that task's loss plus --kd-weight times the
    distillation loss against its teacher: KL between the in-batch similarity distributions (XMR both
    ways, TGIR query to target), soft class labels (SCR), per-token soft labels over the teacher's
    top-k (FIC), at --temperature. --kd-weight 0 trains the plain multi-task baseline and needs no
    teacher outputs. --kd-schedule anneal lowers the weight linearly from --kd-weight to 0 over the
    run (teacher annealing, Clark et al. 2019), so that a student can outgrow a weak teacher: it learns
    from the teachers first and from the labels alone by the end. Same options, resume and outputs as
    famevil teach. --tasks trains a subset (e.g. xmr,scr,fic for a catalogue without modification
    pairs): the student, its teacher outputs and its evaluation follow.

    The paper's alternatives to plain summed gradients (--balancing): ias scales each task's gradient
    on the backbone after every validation (eval_every > 0), up for a task that lags its
    --ias-target TASK=VALUE (its headline validation metric) more than the others, or than the
    teachers' evaluations say with --ias-targets-from EVAL (one per task);
    imtl-g takes one batch of each task per update (with --sampling round-robin; a quarter of the
    updates for the same samples) and combines their gradients so that no task's dominates.

    Example (seconds on a laptop CPU, after famevil dump for the four teachers):

        famevil distill --shards runs/example/shards --base runs/example/base \\
            --out runs/example/student --max-steps 4 \\
            --teacher-outputs runs/example/outputs-xmr \\
            --teacher-outputs runs/example/outputs-tgir \\
            --teacher-outputs runs/example/outputs-scr \\
            --teacher-outputs runs/example/outputs-fic
    """
    if kd_weight < 0 or temperature <= 0:
        raise FamevilError(f"--kd-weight {kd_weight} --temperature {temperature}: the weight must be >= 0 and the temperature > 0")
    if kd_schedule not in KD_SCHEDULES:
        raise FamevilError(f"--kd-schedule {kd_schedule!r}: choose one of {', '.join(KD_SCHEDULES)}")
    if (ias_targets or ias_targets_from) and balancing != "ias":  # targets only IAS reads would be dropped without a word
        given = "--ias-target" if ias_targets else "--ias-targets-from"
        raise FamevilError(f"{given} goes with --balancing ias, and this run balances with {balancing}; add --balancing ias or drop {given}")
    config, backbone = training_base(preset, overrides, base)
    tasks = chosen_tasks(tasks)
    names = tuple(task.name for task in tasks)
    ias_targets = _headlines(ias_targets_from or [], names) | (ias_targets or {})
    balancer = _balancing(balancing, sampling, ias_targets, config.eval_every, names)
    selection_keys(list(names), config.select_by)  # a bad criterion fails before any work
    opened = training_shards(shards, tasks)
    student_text = backbone.architecture["text_cfg"]
    given = teacher_outputs or []
    teachers, teacher_refs = _teacher_outputs(given, opened, backbone.backbone, student_text, names) if kd_weight > 0 else ({}, [])
    model_config = network_config(config, names, model_vocabularies(opened, tasks, config, backbone))
    sampler = TaskSampler({task.name: task.training_size(opened.sizes) for task in tasks}, sampling, seed=config.seed)
    inputs = [backbone.ref, opened.ref]
    inputs += teacher_refs
    details = {
        "tasks": list(names),
        "sampling": sampling,
        "task_probabilities": {t: round(p, 4) for t, p in sampler.probabilities.items()},
        "kd_weight": kd_weight,
        "kd_schedule": kd_schedule,
        "temperature": temperature,
        "balancing": balancing,
        **({"ias_targets": ias_targets} if balancing == "ias" else {}),
    }
    title = "distill" if teachers else "multi-task baseline"
    job = Job(
        kind="student",
        out=out,
        config=config,
        inputs=inputs,
        details=details,
        resume=resume,
        overwrite=overwrite,
        title=title,
        report_to=tuple(report_to or ()),
        risks=_risks(kd_weight, teachers),
    )
    return fit(
        job,
        partial(build_model, model_config, backbone, config.xaa_init, config.head_init),
        {task.name: task_stream(opened, task, config, backbone) for task in tasks},
        sampler,
        partial(distillation_loss, teachers, partial(kd_weight_at, kd_weight, kd_schedule, config.max_steps), temperature),
        partial(validation, opened, list(names), config),
        balancer,
    )


def chosen_tasks(names: list[str] | None) -> list[Task]:
    """The tasks --tasks names (any of their aliases), in the registry's order; every task by default. A
    shop with photos and copy but no modification pairs trains xmr, scr and fic."""
    if not names:
        return list(TASKS.values())
    chosen = {find_task(name).name for name in names}
    return [task for task in TASKS.values() if task.name in chosen]


def _risks(kd_weight: float, teachers: dict[str, TeacherOutputs]) -> tuple[Risk, ...]:
    """What in distillation itself may make the run diverge, the likeliest first."""
    risks = []
    if kd_weight > KD_WEIGHT_FAR_ABOVE_ONE:
        risks.append(
            Risk(
                f"--kd-weight {kd_weight:g} is far above 1, so the distillation loss swamps the task losses",
                "pass a --kd-weight near 1 (the default) and start again with --overwrite",
            )
        )
    for task, outputs in teachers.items():
        if outputs.largest > HUGE_TEACHER_OUTPUT:
            risks.append(
                Risk(
                    f"the {task} teacher outputs {outputs.root} hold values up to {outputs.largest:.3g}",
                    f"dump them again from a sound {task} teacher (famevil dump)",
                )
            )
    return tuple(risks)


def _headlines(evaluations: list[Path], names: tuple[str, ...]) -> dict[str, float]:
    """Each evaluated task's headline metric, from famevil evaluate's outputs (a teacher's: its own task)."""
    found = {}
    for evaluation in evaluations:
        metrics = flatten(read_metrics(evaluation))
        found |= {task.name: metrics[task.headline_key] for task in TASKS.values() if task.name in names and task.headline_key in metrics}
    return found


def _balancing(name: str, sampling: str, targets: dict[str, float], eval_every: int, names: tuple[str, ...]) -> Balancing:
    unknown = sorted(set(targets) - set(names))
    if unknown or any(value < 0 for value in targets.values()):
        raise FamevilError(f"--ias-target {targets}: give TASK=VALUE with a task among {', '.join(names)} and a value >= 0")
    if name == "imtl-g" and sampling != "round-robin":
        raise FamevilError("--balancing imtl-g takes one batch of every task per update: pass --sampling round-robin with it")
    if name == "ias" and eval_every == 0:
        raise FamevilError("--balancing ias follows the validation scores: set eval_every > 0 (e.g. --set eval_every=100)")
    return build_balancing(name, list(names), targets)


def kd_weight_at(weight: float, schedule: str, steps: int, step: int) -> float:
    """The distillation weight of update `step` (0-based) of `steps`: constant, or annealed linearly to 0."""
    return weight if schedule == "constant" else weight * (1 - step / steps)


def distillation_loss(
    teachers: dict[str, TeacherOutputs],
    kd_weight: Callable[[int], float],
    temperature: float,
    model: torch.nn.Module,
    task: str,
    batch: dict[str, Any],
    step: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The task's loss plus kd_weight(step) times the distillation loss against the task's teacher."""
    loss, logits = task_loss(model, task, batch)
    if task not in teachers:
        return loss, {f"loss_{task}": loss.item()}
    signals = teachers[task].gather(batch["keys"], logits.device)
    kd_loss = find_task(task).distillation(logits, signals, batch, temperature)
    return loss + kd_weight(step) * kd_loss, {f"loss_{task}": loss.item(), f"kd_{task}": kd_loss.item()}


def _teacher_outputs(
    paths: list[Path], shards: Shards, student_backbone: str, student_text: dict, names: tuple[str, ...]
) -> tuple[dict[str, TeacherOutputs], list[InputRef]]:
    """Each of the student's tasks' teacher outputs, checked against the shards (and the student's text
    tower: its vocabulary and context) before any training step, and their references."""
    found: dict[str, TeacherOutputs] = {}
    references: list[InputRef] = []
    for path in paths:
        manifest = require_artifact(path, "teacher-outputs")
        task = manifest.details["task"]
        if task not in names:
            raise FamevilError(
                f"--teacher-outputs {path}: is a {task} teacher's, a task the student does not train (--tasks {','.join(names)}); drop it or add {task}"
            )
        if task in found:
            raise FamevilError(f"--teacher-outputs {path}: a second set for {task} (the first: {found[task].root}); give one per task")
        made_from = next(ref for ref in manifest.inputs if ref.role == "shards")
        if made_from.id != shards.manifest.content_id:
            raise FamevilError(
                f"--teacher-outputs {path}: was dumped from other shards ({made_from.path}, id {made_from.id[:19]}…) than --shards {shards}; "
                f"rerun famevil dump --shards {shards}"
            )
        if (manifest.details["vocab_size"], manifest.details["context_length"]) != (student_text["vocab_size"], student_text.get("context_length", 77)):
            raise FamevilError(
                f"--teacher-outputs {path}: its teacher ({manifest.details['teacher_backbone']}) tokenises text differently from the student ({student_backbone})"
            )
        outputs = TeacherOutputs(path, manifest)
        _check_keys(outputs, shards, find_task(task).train_subset(), path)
        found[task] = outputs
        references.append(InputRef(f"teacher-outputs:{task}", "teacher-outputs", manifest.content_id, str(path)))
    missing = [task for task in names if task not in found]
    if missing:
        raise FamevilError(
            f"no --teacher-outputs for {', '.join(missing)}; dump a teacher of each task (famevil dump), "
            "or pass --kd-weight 0 for the multi-task baseline without teachers"
        )
    return found, references


def _check_keys(outputs: TeacherOutputs, shards: Shards, subset: str, path: Path) -> None:
    """The outputs hold exactly the training samples of the shards, shard by shard (read from the tar headers)."""
    for shard in shards.paths(subset):
        keys = shards.sample_keys(shard)
        stored = outputs.keys_by_shard.get(shard.name.removesuffix(".tar"))
        if stored != keys:
            problem = "no outputs" if stored is None else f"{len(stored)} outputs for {len(keys)} samples" if len(stored) != len(keys) else "other sample keys"
            raise FamevilError(f"--teacher-outputs {path}: {problem} for shard {shard.name}; rerun famevil dump on these shards")
