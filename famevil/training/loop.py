"""The training loop that pretrain, teach and distill share, in Accelerate's idiom: set_seed, build,
one prepare(), accumulate(), save_state/load_state. The same code runs in one CPU process, on one GPU,
and under `accelerate launch` on several processes, GPUs or nodes (a shared filesystem for --out).

A run writes into OUT's staging directory (.OUT.partial) and publishes OUT when it ends, in the
layout data_specs.training_runs declares.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import broadcast_object_list, gather_object, set_seed

from data_specs.errors import FamevilError
from data_specs.manifest import TIMINGS_FILE, InputRef, Manifest, famevil_version, file_sha256, write_manifest
from data_specs.staging import check_destination, partial_path, read_plan, staging
from data_specs.training_runs import CHECKPOINTS, LOSSES, METRICS_LOG, RUN_STATE_FILE, SCORE, STATE_MARKER, STATE_PREFIX, TRAIN_CONFIG_FILE
from famevil.checkpoint import save_weights
from famevil.multitask import MultiTaskModel
from famevil.processes import cpu_processes
from famevil.progress import console, progress_bar
from famevil.tasks import find_task
from famevil.tensors import nonfinite_tensors
from famevil.training.balancing import Balancing
from famevil.training.config import TrainConfig
from famevil.training.optim import build_optimizer, build_scheduler
from famevil.training.sampling import TaskSampler
from famevil.training.streams import TaskStream
from famevil.training.tracking import scalars, trackers

# A task's checks on a training batch (Task.check): logged every CHECK_EVERY updates after warm-up, and
# warned about (once per run) on the mean of the last CHECKS_AVERAGED, since one small batch is noisy,
# from a quarter of the run on: a captioner learns the copy's language before it reads the image (on
# the demo its grounding gap was 1% at update 100 of 600, 7% at 150 and 20% from 300 on).
CHECK_EVERY, CHECKS_AVERAGED = 25, 4

Batch = dict[str, Any]
# (model as prepared, task, batch on the device, updates done so far) -> (loss to minimise, its parts for the log)
LossFunction = Callable[[torch.nn.Module, str, Batch, int], tuple[torch.Tensor, dict[str, float]]]
# (the unwrapped model) -> flat validation metrics with a SCORE, e.g. {"xmr.random100.mean": 41.2, "score": 41.2}
Validation = Callable[[MultiTaskModel], dict[str, float]]


@dataclass(frozen=True)
class Risk:
    """Something a stage knows may make training diverge, and what to do about it: named when a loss or
    the weights turn NaN, in place of the learning rates, which are always suspects."""

    cause: str
    fix: str


@dataclass(frozen=True, kw_only=True)
class Job:
    """What a stage asks the loop for."""

    kind: str  # the artifact kind to publish: base, teacher, student
    out: Path
    config: TrainConfig
    inputs: list[InputRef]  # recorded in the manifest and in the plan a resume must match
    details: dict[str, Any]  # the stage's own facts for the manifest (task, sampling, ...)
    resume: str | None = None  # None, "auto" (OUT's interrupted run) or a checkpoints/step-N directory
    overwrite: bool = False
    title: str = "train"  # the progress bar's label
    report_to: tuple[str, ...] = ()  # experiment trackers (famevil.training.tracking), beside metrics.jsonl
    risks: tuple[Risk, ...] = ()  # the likeliest first (distill: a --kd-weight far above 1, huge teacher outputs)


_COUNTERS = ("step", "best_value", "best_step", "validations_without_gain", "best_validation")  # RunState's, saved as they are


@dataclass
class RunState:
    """Everything besides model, optimiser and scheduler that a resumed run needs; saved in each checkpoint."""

    sampler: TaskSampler
    streams: dict[str, TaskStream]
    balancing: Balancing
    step: int = 0
    best_value: float = -math.inf
    best_step: int = 0
    validations_without_gain: int = 0
    best_validation: dict[str, float] = field(default_factory=dict)
    # Training time so far, resumes added up: kept in timings.jsonl, not in the saved state, since wall-clock
    # times would make identical runs' states (and so their content ids) differ.
    seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        counters = {name: getattr(self, name) for name in _COUNTERS}
        streams = {task: stream.state_dict() for task, stream in self.streams.items()}
        return counters | {"sampler": self.sampler.state_dict(), "streams": streams, "balancing": self.balancing.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in _COUNTERS:
            setattr(self, name, state[name])
        self.sampler.load_state_dict(state["sampler"])
        for task, stream in self.streams.items():
            stream.load_state_dict(state["streams"][task])
        self.balancing.load_state_dict(state.get("balancing", {}))  # states saved before balancing existed had none


@dataclass(frozen=True)
class TrainingResult:
    out: Path
    manifest: Manifest | None  # None on processes other than the main one
    steps: int
    seconds: float
    best_step: int
    validation: dict[str, float]  # the best weights' validation metrics (empty without validation)
    resumed_from: int  # the step a resumed run started at; 0 for a fresh one


def fit(
    job: Job,
    build_model: Callable[[], MultiTaskModel],
    streams: dict[str, TaskStream],
    sampler: TaskSampler,
    loss_function: LossFunction,
    validate: Validation,
    balancing: Balancing | None = None,
) -> TrainingResult:
    """Train build_model()'s trainable parameters for job.config.max_steps updates and publish job.out.
    balancing: how the tasks' gradients combine in an update (famevil.training.balancing; by default summed)."""
    config = job.config
    balancing = balancing or Balancing()
    accelerator = Accelerator(
        log_with=trackers(list(job.report_to), partial_path(job.out)) or None,
        project_dir=partial_path(job.out),
        cpu=cpu_processes(),
        gradient_accumulation_steps=config.gradient_accumulation * balancing.tasks_per_update,
        mixed_precision=config.mixed_precision,
        step_scheduler_with_optimizer=False,  # the schedule counts optimiser updates, whatever the process count
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],  # other tasks' adapters sit idle
    )
    main = accelerator.is_main_process
    plan = {"kind": job.kind, "inputs": [ref.id for ref in job.inputs], "config": config.to_dict(), "details": job.details}
    plan = json.loads(json.dumps(plan))  # as it reads back from the plan file
    with ExitStack() as stack:
        if main:
            resume_from = _prepare_destination(job, plan)
            stage = stack.enter_context(staging(job.out, plan, resume=resume_from is not None))
            (stage.partial / CHECKPOINTS).mkdir(exist_ok=True)
            (stage.partial / TRAIN_CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
        accelerator.wait_for_everyone()
        workdir = partial_path(job.out)
        resume_from = _resume_point(job, workdir)  # every rank reads the same shared directory

        set_seed(config.seed)
        # Trackers write into the staging directory, so their logs are published with the run.
        accelerator.init_trackers(job.kind, config={name: v if isinstance(v, (int, float, str, bool)) else str(v) for name, v in config.to_dict().items()})
        if main:
            console.print(
                f"{job.title}: seed {config.seed}, {accelerator.num_processes} process(es) on {accelerator.device}, mixed precision {accelerator.mixed_precision}"
            )
        model = build_model()
        model.train()
        balancing.attach(model)
        optimizer = build_optimizer(model, config)
        scheduler = build_scheduler(optimizer, config)
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        state = RunState(sampler, streams, balancing)
        if resume_from is not None:
            _verify_state(resume_from)  # before anything in it is unpickled
            accelerator.load_state(str(resume_from))
            state.load_state_dict(json.loads((resume_from / RUN_STATE_FILE).read_text(encoding="utf-8")))
            if main:
                _truncate_log(workdir / METRICS_LOG, state.step)
                state.seconds = sum(record["seconds"] for record in _truncate_log(workdir / TIMINGS_FILE, state.step))
                console.print(f"{job.title}: resumed at step {state.step} from {resume_from}")
        started_at = state.step

        _train(job, accelerator, model, optimizer, scheduler, state, loss_function, validate, workdir)
        for tracker in accelerator.trackers:  # flushed and closed before the directory is published (end_training() would also end the process group)
            tracker.finish()
        replicas = gather_object([_weights_digest(accelerator.unwrap_model(model))])

        if main:
            if state.best_step == 0:  # nothing validated: the last weights are the result
                _save_finite_weights(job, accelerator.unwrap_model(model), workdir)
            details = job.details | {
                "steps": state.step,
                "best_step": state.best_step,
                "validation": state.best_validation,
                "processes": accelerator.num_processes,
                "mixed_precision": accelerator.mixed_precision,  # the one used, whoever chose it
                "seed": config.seed,
                "replica_digests": replicas,  # one per process: equal unless the replicas drifted apart
            }
            manifest = write_manifest(workdir, job.kind, inputs=job.inputs, details=details)
            stage.publish()
        accelerator.wait_for_everyone()
    if not main:
        return TrainingResult(job.out, None, state.step, state.seconds, state.best_step, {}, started_at)
    return TrainingResult(job.out, manifest, state.step, state.seconds, state.best_step, details["validation"], started_at)


def _prepare_destination(job: Job, plan: dict[str, Any]) -> Path | None:
    """Refuse what would lose work or clobber an artifact; say where a resume starts (main process only)."""
    check_destination(job.out, job.overwrite, inputs=[ref.path for ref in job.inputs])
    interrupted = _newest_state(partial_path(job.out))
    earlier_plan = read_plan(job.out)
    if job.resume == "auto" and interrupted is not None and earlier_plan != plan:
        raise FamevilError(
            f"{job.out}: the interrupted run was started with other inputs or options; rerun its exact command "
            "with --resume auto, or pass --overwrite to start again"
        )
    if job.resume is None and interrupted is not None and not job.overwrite:
        raise FamevilError(
            f"{job.out}: an interrupted run of it stopped at {interrupted.name}; pass --resume auto to continue it, or --overwrite to start again"
        )
    return _resume_point(job, partial_path(job.out))


def _resume_point(job: Job, workdir: Path) -> Path | None:
    if job.resume is None:
        return None
    if job.resume == "auto":
        return _newest_state(workdir)
    chosen = Path(job.resume)
    # Accelerate stores optimiser, scheduler and random states as pickles, which can run code when read:
    # only states this run wrote into its own staging directory are resumed.
    if chosen.resolve().parent != (workdir / CHECKPOINTS).resolve():
        raise FamevilError(
            f"--resume {chosen}: famevil resumes only the states a run wrote itself, in {workdir / CHECKPOINTS}; "
            "use --resume auto, or start again with --overwrite"
        )
    if not (chosen / STATE_MARKER).is_file():
        raise FamevilError(f"--resume {chosen}: not a training state (a checkpoints/{STATE_PREFIX}N folder of a famevil run); use --resume auto")
    return chosen


def _file_digests(folder: Path) -> dict[str, str]:
    return {path.name: file_sha256(path) for path in sorted(folder.iterdir()) if path.is_file() and path.name != STATE_MARKER}


def _verify_state(folder: Path) -> None:
    """Every file of a saved state is the one the run wrote (by the digests in its marker)."""
    recorded = json.loads((folder / STATE_MARKER).read_text(encoding="utf-8")).get("files")
    if recorded is None:
        raise FamevilError(f"{folder}: a state saved by an older famevil, without file digests; start again with --overwrite")
    found = _file_digests(folder)
    changed = sorted(set(recorded) ^ set(found) | {name for name in recorded if found.get(name) != recorded[name]})
    if changed:
        raise FamevilError(f"{folder / changed[0]}: not the file this run saved (its digest differs, or it is new or missing); start again with --overwrite")


def _newest_state(workdir: Path) -> Path | None:
    states = sorted(state for state in (workdir / CHECKPOINTS).glob(f"{STATE_PREFIX}*") if (state / STATE_MARKER).is_file())
    return states[-1] if states else None


def _truncate_log(log: Path, step: int) -> list[dict[str, Any]]:
    """Drop the lines an interrupted run wrote after the state it resumes from (they will be written
    again), and a last line torn by the interruption; return the records kept."""
    if not log.is_file():
        return []
    kept: list[tuple[str, dict[str, Any]]] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # only a kill mid-write leaves such a line: the step it began is redone
        if record["step"] <= step:
            kept.append((line, record))
    log.write_text("".join(line + "\n" for line, _ in kept), encoding="utf-8")
    return [record for _, record in kept]


def _train(
    job: Job, accelerator: Accelerator, model, optimizer, scheduler, state: RunState, loss_function: LossFunction, validate: Validation, workdir: Path
) -> None:
    config = job.config
    main = accelerator.is_main_process
    micro_batches = accelerator.gradient_accumulation_steps
    samples_per_update = config.batch_size * micro_batches * accelerator.num_processes
    unwrapped = accelerator.unwrap_model(model)
    log = open(workdir / METRICS_LOG, "a", encoding="utf-8") if main else None  # noqa: SIM115 - closed below
    timings = open(workdir / TIMINGS_FILE, "a", encoding="utf-8") if main else None  # noqa: SIM115 - closed below
    checks = TaskChecks(job.title, warn_from=max(config.warmup_steps, config.max_steps // 4))
    try:
        with progress_bar(job.title, config.max_steps, unit="updates", enabled=main) as advance:
            advance(state.step)
            while state.step < config.max_steps:
                started = time.perf_counter()
                losses: dict[str, list[float]] = {}
                for _ in range(micro_batches):
                    task = next(state.sampler)
                    batch = _to_device(next(state.streams[task]), accelerator.device)
                    state.balancing.start_micro_batch(task)
                    with accelerator.accumulate(model), accelerator.autocast():
                        loss, parts = loss_function(model, task, batch, state.step)
                        accelerator.backward(loss)
                        state.balancing.end_micro_batch(unwrapped, task, accelerator.sync_gradients, partial(accelerator.reduce, reduction="mean"))
                        if accelerator.sync_gradients:
                            state.balancing.before_step(unwrapped)
                        if accelerator.sync_gradients and config.grad_clip > 0:
                            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
                        optimizer.step()
                        if accelerator.sync_gradients:
                            scheduler.step()
                        optimizer.zero_grad()
                    for name, value in parts.items():
                        losses.setdefault(name, []).append(value)
                state.step += 1
                elapsed = time.perf_counter() - started
                state.seconds += elapsed
                record = {"step": state.step, **_mean_losses(accelerator, losses)}
                _stop_if_diverged(job, record, workdir)  # every process sees the same reduced losses
                record |= {f"lr_{group['name']}": group["lr"] for group in optimizer.param_groups}
                timing = {"step": state.step, "seconds": round(elapsed, 4), "samples_per_s": round(samples_per_update / elapsed, 2)}
                if main and state.step > config.warmup_steps and state.step % CHECK_EVERY == 0:
                    record |= checks.run(accelerator.unwrap_model(model), task, batch, state.step)
                if main:
                    for file, line in ((log, record), (timings, timing)):
                        file.write(json.dumps(line) + "\n")
                        file.flush()
                accelerator.log(scalars(record | timing), step=state.step)
                shown = {name: f"{value:.4g}" for name, value in record.items() if name.startswith("loss")}
                advance(1, **shown, lr=f"{record.get('lr_adapters', record.get('lr_backbone')):.2e}")

                last = state.step == config.max_steps
                if config.eval_every and (last or state.step % config.eval_every == 0):
                    _validate(job, accelerator, model, state, validate, log, workdir)
                    last = last or accelerator.check_trigger()  # early stopping, decided on the main process
                if last or state.step % config.checkpoint_every == 0:
                    _refuse_nonfinite_weights(job, unwrapped, workdir)  # on every process, which all save the state
                    _save_state(accelerator, state, workdir, config.keep_checkpoints)
                if last:
                    break
    finally:
        for file in (log, timings):
            if file is not None:
                file.close()


class TaskChecks:
    """Runs each task's check on a training batch, keeps its recent figures and warns once per task."""

    def __init__(self, title: str, warn_from: int):
        self.title, self.warn_from = title, warn_from
        self.recent: dict[str, list[dict[str, float]]] = {}
        self.warned: set[str] = set()

    def run(self, model: MultiTaskModel, task_name: str, batch: Batch, step: int) -> dict[str, float]:
        task = find_task(task_name)
        was_training = model.training
        model.eval()
        figures = task.check(model, model.head(task_name), batch)
        model.train(was_training)
        if not figures:
            return {}
        recent = self.recent.setdefault(task_name, [])
        recent[:] = [*recent, figures][-CHECKS_AVERAGED:]
        if step >= self.warn_from and len(recent) == CHECKS_AVERAGED and task_name not in self.warned:
            averaged = {name: sum(f[name] for f in recent) / len(recent) for name in figures}
            if (warning := task.warning(averaged)) is not None:
                self.warned.add(task_name)
                console.print(f"[yellow]{self.title}: step {step}: {warning}[/]", soft_wrap=True)
        return {f"{name}_{task_name}": value for name, value in figures.items()}


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _likely_cause(job: Job, workdir: Path) -> str:
    """What most likely made the run diverge, and its fix: the stage's likeliest risk, else the learning rates."""
    if job.risks:
        return f"{job.risks[0].cause}; {job.risks[0].fix}"
    rates = f"lr_backbone {job.config.lr_backbone:g}, lr_adapters {job.config.lr_adapters:g}"
    state = _newest_state(workdir)
    again = f"resume from the last good state with lower ones (--resume {state} --set lr_adapters=...)" if state else "rerun it with lower ones"
    return f"learning rates too high for this run ({rates}); {again}, or start again with --overwrite"


def _stop_if_diverged(job: Job, record: dict[str, float], workdir: Path) -> None:
    """A NaN or infinite loss stops the run before anything more is saved: the weights it updated are
    lost, the last good state stays, and nothing is published."""
    diverged = next((name for name, value in record.items() if name.startswith(LOSSES) and not math.isfinite(value)), None)
    if diverged is not None:
        raise FamevilError(
            f"{job.title}: step {record['step']}: {diverged} is {record[diverged]}; nothing was published. Likely cause: {_likely_cause(job, workdir)}"
        )


def _refuse_nonfinite_weights(job: Job, model: MultiTaskModel, workdir: Path) -> None:
    """Stop a run whose weights hold a NaN or an infinity before they are saved as its weights or as a
    state to resume from: a run can blow up without a NaN loss (one update too large, the last one say)."""
    weights = model.state_dict()
    if bad := nonfinite_tensors(weights):
        named = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise FamevilError(
            f"{job.title}: {len(bad)} of {len(weights)} tensors hold NaN or infinite values ({named}); nothing was published. "
            f"Likely cause: {_likely_cause(job, workdir)}"
        )


def _save_finite_weights(job: Job, model: MultiTaskModel, workdir: Path) -> None:
    _refuse_nonfinite_weights(job, model, workdir)
    save_weights(model, workdir)


def _mean_losses(accelerator: Accelerator, losses: dict[str, list[float]]) -> dict[str, float]:
    """Each loss part averaged over micro-batches and processes (a task no process drew this step is left out)."""
    names = sorted(losses)
    return {name: round(float(accelerator.reduce(torch.tensor(sum(losses[name]) / len(losses[name]), device=accelerator.device), "mean")), 5) for name in names}


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value for name, value in batch.items()}


def _validate(job: Job, accelerator: Accelerator, model, state: RunState, validate: Validation, log, workdir: Path) -> None:
    """Validate on the main process; keep the weights if they are the best so far; maybe stop early;
    let the balancing react on every process."""
    metrics = validate(accelerator.unwrap_model(model)) if accelerator.is_main_process else None
    metrics = broadcast_object_list([metrics])[0]  # a balancer must change alike on every process
    figures = state.balancing.after_validation(metrics)
    if accelerator.is_main_process:
        log.write(json.dumps({"step": state.step, "validation": metrics} | ({"balancing": figures} if figures else {})) + "\n")
        log.flush()
        accelerator.log(scalars({"validation": metrics, "balancing": figures}), step=state.step)
        value = metrics[SCORE]
        console.print(f"{job.title}: step {state.step} validation {SCORE} = {value:.2f}" + (" (best)" if value > state.best_value else ""))
        if value > state.best_value:
            state.best_value, state.best_step, state.validations_without_gain = value, state.step, 0
            state.best_validation = metrics
            _save_finite_weights(job, accelerator.unwrap_model(model), workdir)
        else:
            state.validations_without_gain += 1
            if job.config.early_stopping and state.validations_without_gain >= job.config.early_stopping:
                console.print(f"{job.title}: stopping early, no gain in {state.validations_without_gain} validations")
                accelerator.set_trigger()
    accelerator.wait_for_everyone()


def _save_state(accelerator: Accelerator, state: RunState, workdir: Path, keep: int) -> None:
    """A resumable state, written under a temporary name and renamed, so a run killed while saving
    resumes from the previous one; then only the newest `keep` are kept."""
    checkpoints = workdir / CHECKPOINTS
    name = f"{STATE_PREFIX}{state.step:06d}"
    temporary = checkpoints / f".{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temporary / RUN_STATE_FILE).write_text(json.dumps(state.state_dict()) + "\n", encoding="utf-8")
        marker = {"step": state.step, "processes": accelerator.num_processes, "famevil_version": famevil_version(), "files": _file_digests(temporary)}
        (temporary / STATE_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        shutil.rmtree(checkpoints / name, ignore_errors=True)
        temporary.rename(checkpoints / name)
        for stale in sorted(checkpoints.glob(f"{STATE_PREFIX}*"))[: -max(1, keep)]:
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
