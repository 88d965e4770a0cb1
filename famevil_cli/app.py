"""The Typer app. Each command's help is its stage function's docstring; the command maps options
onto the stage, runs it, and prints the result. Errors a user can fix print as one line."""

from __future__ import annotations

import errno
import inspect
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

import famevil
from data_specs.errors import FamevilError, FamevilWarning
from data_specs.evaluations import flatten, read_metrics
from data_specs.manifest import famevil_version, require_artifact, verify_artifact
from famevil.params import FASHIONGEN_SUBCATEGORIES, count_parameters
from famevil.report.table import format_row
from famevil.serving import SearchSession
from famevil.tasks import TASKS, find_task, task_names
from famevil.training.balancing import BALANCINGS
from famevil.training.config import PRESET_NAMES, parse_overrides
from famevil.training.loop import TrainingResult
from famevil_cli.server import create_app
from stages import distill as distill_stage
from stages import dump as dump_stage
from stages import evaluate as evaluate_stage
from stages import export as export_stage
from stages import index as index_stage
from stages import prepare as prepare_stage
from stages import pretrain as pretrain_stage
from stages import report as report_stage
from stages import search as search_stage
from stages import synth as synth_stage
from stages import teach as teach_stage

app = typer.Typer(
    name="famevil",
    help="Train, distil and evaluate one vision-language model for many fashion tasks (after FAME-ViL, CVPR 2023).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion and --show-completion for bash, zsh, fish and PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings reflow; their indented example commands stay as written
)
out_console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}
_python_show_warning = warnings.showwarning
Result = TypeVar("Result")


def _print_version(value: bool) -> None:
    if value:
        out_console.print(f"famevil {famevil_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)] = False,
) -> None:
    _state["debug"] = debug


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A FamevilWarning as one yellow line; any other warning as Python prints it."""
    if issubclass(category, FamevilWarning):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def _run(stage: Callable[..., Result], **options) -> Result:
    """Run a stage; a FamevilError becomes one red line and exit code 1 (a traceback only with --debug),
    a FamevilWarning one yellow line."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return stage(**options)
    except FamevilError as error:
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: rerun the same command to resume or start over")
        raise typer.Exit(130) from None
    except (OSError, RuntimeError) as error:
        if _state["debug"] or not _out_of_space(error):
            raise
        where = f" while writing {error.filename}" if getattr(error, "filename", None) else ""
        err_console.print(
            f"[bold red]error:[/] no space left on the device{where}; free space and rerun the same command (training: with --resume auto)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def _out_of_space(error: BaseException) -> bool:
    """A full disk, as the OS reports it (ENOSPC) or as torch's checkpoint writer does (a failed write)."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return "file write failed" in str(error) or "No space left on device" in str(error)


def _table(title: str, columns: list[str], rows: list[list]) -> Table:
    """Numbers right-aligned, words (names, paths, captions) left-aligned."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        numeric = index > 0 and all(isinstance(row[index], (int, float)) or str(row[index]).replace(",", "").isdigit() for row in rows)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    return table


OutOption = Annotated[Path, typer.Option("--out", help="Directory to write; it appears only when complete.")]
WorkersOption = Annotated[int | None, typer.Option("--workers", help="Worker processes (default: all cores).", min=1)]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")]
ReportToOption = Annotated[
    list[str] | None,
    typer.Option("--report-to", help="Also log to an experiment tracker: tensorboard, wandb, csv or none (repeatable); logs live in OUT."),
]


@app.command(help=inspect.cleandoc(synth_stage.synth.__doc__))
def synth(
    out: OutOption,
    preset: Annotated[str, typer.Option(help="tiny (tests), demo (the README pipeline) or bench (throughput).")] = "demo",
    seed: Annotated[int, typer.Option(help="Fixes every random choice: products, copy, pixels.", min=0, max=2**32 - 1)] = 0,
    image_size: Annotated[int | None, typer.Option(help="Image side in pixels (the release has 256; default: the preset's).")] = None,
    workers: WorkersOption = None,
    contact_sheet: Annotated[Path | None, typer.Option(help="Also save a PNG grid of labelled samples here.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    err_console.print(f"synth: preset {preset}, seed {seed}")
    result = _run(
        synth_stage.synth, out=out, preset=preset, seed=seed, image_size=image_size, workers=workers, contact_sheet=contact_sheet, overwrite=overwrite
    )
    fashiongen, fashioniq = result.sizes["fashiongen"], result.sizes["fashioniq"]
    out_console.print(
        _table(
            f"{result.out}  ({result.manifest.content_id[:19]}…)",
            ["source / split", "products or triplets", "images", "note"],
            [[f"fashiongen/{s}", v["products"], v["images"], f"{v['subcategories']} subcategories"] for s, v in fashiongen.items()]
            + [[f"fashioniq/{s}", v["triplets"], v["images"], f"{v['missing_images']} images missing, as in the release"] for s, v in fashioniq.items()],
        )
    )
    out_console.print(
        _table(
            "chance level on the evaluation splits (percent)",
            ["task", "metric", "chance"],
            [[task, metric, value] for task, values in result.chance.items() for metric, value in values.items()],
        )
    )
    if result.contact_sheet:
        out_console.print(f"contact sheet: {result.contact_sheet}")


@app.command(help=inspect.cleandoc(prepare_stage.prepare.__doc__))
def prepare(
    out: OutOption,
    fashiongen: Annotated[Path | None, typer.Option(help="Folder with fashiongen_256_256_{train,validation}.h5.")] = None,
    fashioniq: Annotated[Path | None, typer.Option(help="Folder with captions/, image_splits/ and images/.")] = None,
    catalogue: Annotated[Path | None, typer.Option(help="Your own products, .csv or .jsonl (columns above), instead of the releases.")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder the catalogue's image paths are relative to.")] = None,
    pairs: Annotated[Path | None, typer.Option(help="Modification texts between catalogue images, .csv or .jsonl (columns above).")] = None,
    shard_size: Annotated[int, typer.Option(help="Samples per tar shard.", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the training samples' random order in the shards.")] = 0,
    workers: WorkersOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    result = _run(
        prepare_stage.prepare,
        out=out,
        fashiongen=fashiongen,
        fashioniq=fashioniq,
        catalogue=catalogue,
        images=images,
        pairs=pairs,
        shard_size=shard_size,
        seed=seed,
        workers=workers,
        overwrite=overwrite,
    )
    subsets = result.sizes["subsets"]
    total = sum(entry["samples"] for entry in subsets.values())
    out_console.print(
        _table(
            f"{result.out}  ({result.manifest.content_id[:19]}…)",
            ["subset", "samples", "shards"],
            [[name, entry["samples"], len(entry["shards"])] for name, entry in subsets.items()],
        )
    )
    for subset, skipped in result.sizes["skipped"].items():
        examples = ", ".join(skipped.get("examples", []))
        out_console.print(
            f"[yellow]skipped[/] {skipped['samples']} samples of {subset}: {skipped['missing_images']} images missing"
            + (f" (e.g. {examples})" if examples else ""),
            soft_wrap=True,
        )
    for name, vocab in result.sizes.get("vocab", {}).items():
        out_console.print(f"{name} vocabulary: {vocab['names']} names, {vocab['num_train']} seen in training")
    for note in result.notes:
        out_console.print(note, soft_wrap=True, highlight=False)
    resumed = f", {result.resumed_shards} shards resumed" if result.resumed_shards else ""
    out_console.print(f"{total} samples in {result.seconds:.1f} s ({total / result.seconds:.0f} samples/s{resumed})")


@app.command()
def params(
    model: Annotated[str, typer.Option(help="open_clip architecture: ViT-B-16 (the paper's), famevil-tiny, ...")] = "ViT-B-16",
    bottleneck: Annotated[int, typer.Option(help="Task-specific adapter bottleneck (paper: 64; ablations 128, 512).", min=1)] = 64,
    xaa_bottleneck: Annotated[int | None, typer.Option(help="Cross-attention adapter bottleneck (default: --bottleneck).", min=1)] = None,
    classes: Annotated[int, typer.Option(help="SCR classes (FashionGen: 121).", min=1)] = FASHIONGEN_SUBCATEGORIES,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object of integer counts.")] = False,
) -> None:
    """Count the parameters of the multi-task model and of the four single-task models it replaces (Table 4).

    The backbone, the shared cross-attention adapters, each task's adapters and head, the whole
    multi-task model, the separate models counted as the paper counts them (fine-tuned CLIP plus its
    head for XMR, TGIR and SCR; CLIP with text-side cross-attention and the language-model head for
    FIC), and the saving. No weights are needed: the architecture decides.

    Example (a second on a laptop CPU):

        famevil params --model ViT-B-16 --bottleneck 64 --json
    """
    counts = _run(count_parameters, backbone=model, tsa_bottleneck=bottleneck, xaa_bottleneck=xaa_bottleneck, num_classes=classes)
    if as_json:
        out_console.print_json(data=counts)
        return
    rows = [["backbone (open_clip)", counts["backbone"]], ["cross-attention adapters (shared)", counts["xaa"]]]
    rows += [[f"task-specific adapters: {task}", count] for task, count in counts["tsa"].items()]
    rows += [[f"head: {task}", count] for task, count in counts["heads"].items()]
    rows += [["multi-task model", counts["multitask_total"]], ["four single-task models", counts["separate_total"]]]
    out_console.print(_table(f"{model}, bottleneck {bottleneck}", ["part", "parameters"], [[name, f"{n:,}"] for name, n in rows]))
    out_console.print(f"saving: {counts['saving_percent']:.2f} %")


@app.command(help=inspect.cleandoc(evaluate_stage.evaluate.__doc__))
def evaluate(
    runs: Annotated[list[Path] | None, typer.Argument(help="With --compare: evaluation directories to print side by side.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Directory to write; it appears only when complete.")] = None,
    shards: Annotated[Path | None, typer.Option(help="A shards artifact (famevil prepare).")] = None,
    model: Annotated[Path | None, typer.Option(help="A famevil checkpoint directory.")] = None,
    base: Annotated[
        str | None,
        typer.Option(
            help="Instead of --model: open_clip NAME:TAG, hf-hub:ORG/NAME, local-dir:DIR, a local checkpoint file, or a config name (random weights)."
        ),
    ] = None,
    arch: Annotated[str, typer.Option(help="The architecture of a local --base checkpoint file (e.g. ViT-B-16-quickgelu for OpenAI's weights).")] = "ViT-B-16",
    tasks: Annotated[str | None, typer.Option(help=f"Comma-separated tasks (default: all the model has): {','.join(task_names())}.")] = None,
    split: Annotated[str, typer.Option(help="The shards' split to evaluate on: val or train.")] = "val",
    beams: Annotated[int, typer.Option(help="Caption decoding: 1 is greedy, more is beam search.", min=1)] = 1,
    max_new_tokens: Annotated[int | None, typer.Option(help="Caption length limit in tokens (default: the text context, 76 for CLIP).", min=1)] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 64,
    seed: Annotated[int, typer.Option(help="Fixes the random-100 draws (and random --base weights).", min=0, max=2**32 - 1)] = 0,
    compare: Annotated[bool, typer.Option("--compare", help="Print earlier runs side by side with the paper's numbers, evaluate nothing.")] = False,
    overwrite: OverwriteOption = False,
) -> None:
    if compare:
        _print_comparison(runs or [])
        return
    if out is None or shards is None:
        err_console.print("[bold red]error:[/] evaluate needs --out DIR and --shards DIR (or --compare DIR ...)")
        raise typer.Exit(2)
    task_list = [t for t in tasks.split(",") if t.strip()] if tasks else None
    result = _run(
        evaluate_stage.evaluate,
        out=out,
        shards=shards,
        model=model,
        base=base,
        arch=arch,
        tasks=task_list,
        split=split,
        beams=beams,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        overwrite=overwrite,
    )
    flat = flatten(result.metrics)
    out_console.print(
        _table(f"{result.out}  ({result.manifest.content_id[:19]}…)", ["metric", "percent"], [[k, v if v is not None else "missing"] for k, v in flat.items()])
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")


def _print_comparison(runs: list[Path]) -> None:
    if not runs:
        err_console.print("[bold red]error:[/] --compare needs evaluation directories: famevil evaluate --compare DIR1 DIR2 ...")
        raise typer.Exit(2)
    flat = [flatten(_run(read_metrics, directory=run)) for run in runs]
    paper = evaluate_stage.paper_figures()
    names = sorted(set().union(*flat) | set(paper), key=lambda name: (name.split(".")[0], name))
    rows = [[name, *[f.get(name, "") if f.get(name) is not None else "" for f in flat], paper.get(name, "")] for name in names]
    out_console.print(_table("evaluation runs against the paper (FAME-ViL multi-task, percent)", ["metric", *[str(run) for run in runs], "paper"], rows))


ShardsOption = Annotated[Path, typer.Option(help="A shards artifact (famevil prepare).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a training option: NAME=VALUE (repeatable), e.g. --set batch_size=16.")]
MaxStepsOption = Annotated[int | None, typer.Option(help="Optimiser updates (overrides the preset's max_steps).", min=1)]
BaseOption = Annotated[
    str | None,
    typer.Option(
        help="Starting weights, which bring their architecture, activation and preprocessing: open_clip NAME:TAG (ViT-B-16:openai), "
        "hf-hub:ORG/NAME, local-dir:DIR, a famevil checkpoint directory, or a local open_clip file of --set model=. Default: random."
    ),
]
ResumeOption = Annotated[str | None, typer.Option(help="'auto' continues OUT's interrupted run; or a checkpoints/step-N folder to start from.")]


def _training_overrides(assignments: list[str] | None, max_steps: int | None) -> dict:
    overrides = _run(parse_overrides, assignments=assignments or [])
    return overrides | ({"max_steps": max_steps} if max_steps else {})


def _task_values(flag: str, assignments: list[str]) -> dict[str, float]:
    """TASK=VALUE pairs (a task by any of its names) as {task: value}."""
    values = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        try:
            values[find_task(name.strip()).name] = float(value)
        except (FamevilError, ValueError):
            raise FamevilError(f"{flag} {assignment!r}: expected TASK=NUMBER with a task among {', '.join(task_names())}") from None
        if not equals:
            raise FamevilError(f"{flag} {assignment!r}: expected TASK=NUMBER")
    return values


def _print_training(result: TrainingResult) -> None:
    if result.manifest is None:  # processes other than the main one stay quiet
        return
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    kept = f"the best weights, from step {result.best_step}" if result.best_step else "the last weights (no validation)"
    out_console.print(f"{result.out}: {result.manifest.kind}, {result.steps} updates in {result.seconds:.0f} s{resumed}; kept {kept}", soft_wrap=True)
    if result.validation:
        out_console.print(_table("validation of the best weights", ["metric", "value"], [[name, value] for name, value in result.validation.items()]))


@app.command(help=inspect.cleandoc(teach_stage.teach.__doc__))
def teach(
    task: Annotated[str, typer.Option(help="One of: " + "; ".join(f"{t.name} ({', '.join(t.aliases)}): {t.title}" for t in TASKS.values()) + ".")],
    shards: ShardsOption,
    out: OutOption,
    base: BaseOption = None,
    preset: Annotated[str, typer.Option(help=f"Training options: one of {', '.join(PRESET_NAMES)}, or a .json file.")] = "demo-cpu",
    set_: SetOption = None,
    max_steps: MaxStepsOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
    report_to: ReportToOption = None,
) -> None:
    overrides = _training_overrides(set_, max_steps)
    _print_training(
        _run(
            teach_stage.teach,
            task=task,
            shards=shards,
            out=out,
            base=base,
            preset=preset,
            overrides=overrides,
            resume=resume,
            overwrite=overwrite,
            report_to=report_to,
        )
    )


@app.command(help=inspect.cleandoc(pretrain_stage.pretrain.__doc__))
def pretrain(
    shards: ShardsOption,
    out: OutOption,
    preset: Annotated[str, typer.Option(help=f"Training options: one of {', '.join(PRESET_NAMES)}, or a .json file.")] = "demo-base",
    set_: SetOption = None,
    max_steps: MaxStepsOption = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
    report_to: ReportToOption = None,
) -> None:
    overrides = _training_overrides(set_, max_steps)
    _print_training(
        _run(pretrain_stage.pretrain, shards=shards, out=out, preset=preset, overrides=overrides, resume=resume, overwrite=overwrite, report_to=report_to)
    )


@app.command(help=inspect.cleandoc(dump_stage.dump.__doc__))
def dump(
    teacher: Annotated[Path, typer.Option(help="A teacher directory (famevil teach).")],
    shards: ShardsOption,
    out: OutOption,
    top_k: Annotated[int, typer.Option(help="FIC: next-token log-probabilities kept per position.", min=1)] = 8,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.", min=1)] = 64,
    overwrite: OverwriteOption = False,
) -> None:
    result = _run(dump_stage.dump, teacher=teacher, shards=shards, out=out, top_k=top_k, batch_size=batch_size, overwrite=overwrite)
    resumed = f" ({result.resumed_shards} shards resumed)" if result.resumed_shards else ""
    out_console.print(
        f"{result.out}: {result.task} teacher outputs for {result.samples} samples, {result.bytes_per_sample:,.0f} bytes per sample{resumed}", soft_wrap=True
    )


@app.command(help=inspect.cleandoc(distill_stage.distill.__doc__))
def distill(
    shards: ShardsOption,
    out: OutOption,
    teacher_outputs: Annotated[list[Path] | None, typer.Option("--teacher-outputs", help="A famevil dump directory; one per task (repeat the option).")] = None,
    base: BaseOption = None,
    preset: Annotated[str, typer.Option(help=f"Training options: one of {', '.join(PRESET_NAMES)}, or a .json file.")] = "demo-cpu",
    set_: SetOption = None,
    max_steps: MaxStepsOption = None,
    sampling: Annotated[str, typer.Option(help="Task sampling: size (proportional to training-set size), uniform or round-robin.")] = "size",
    kd_weight: Annotated[float, typer.Option(help="Weight of the distillation loss; 0 trains the multi-task baseline.", min=0)] = 1.0,
    kd_schedule: Annotated[
        str,
        typer.Option(help=f"The distillation weight over the run: {', '.join(distill_stage.KD_SCHEDULES)} (anneal: linearly down to 0, teacher annealing)."),
    ] = "constant",
    temperature: Annotated[float, typer.Option(help="Distillation temperature.", min=0.01, max=100)] = 1.0,
    balancing: Annotated[str, typer.Option(help=f"How the tasks' gradients combine: {', '.join(BALANCINGS)} (none: summed, the paper's).")] = "none",
    ias_target: Annotated[
        list[str] | None, typer.Option("--ias-target", help="With --balancing ias: TASK=VALUE, the task's target headline validation metric (repeat per task).")
    ] = None,
    ias_targets_from: Annotated[
        list[Path] | None, typer.Option("--ias-targets-from", help="With --balancing ias: an evaluation (famevil evaluate) whose headline metrics are targets.")
    ] = None,
    resume: ResumeOption = None,
    overwrite: OverwriteOption = False,
    report_to: ReportToOption = None,
) -> None:
    overrides = _training_overrides(set_, max_steps)
    targets = _run(_task_values, flag="--ias-target", assignments=ias_target or [])
    result = _run(
        distill_stage.distill,
        shards=shards,
        out=out,
        teacher_outputs=teacher_outputs,
        base=base,
        preset=preset,
        overrides=overrides,
        sampling=sampling,
        kd_weight=kd_weight,
        kd_schedule=kd_schedule,
        temperature=temperature,
        balancing=balancing,
        ias_targets=targets,
        ias_targets_from=ias_targets_from,
        resume=resume,
        overwrite=overwrite,
        report_to=report_to,
    )
    _print_training(result)


@app.command(help=inspect.cleandoc(report_stage.report.__doc__))
def report(
    teacher: Annotated[list[Path], typer.Option("--teacher", help="A teacher's evaluation directory (famevil evaluate); one per task and seed.")],
    student: Annotated[list[Path], typer.Option("--student", help="The distilled student's evaluation directory; one per seed.")],
    baseline: Annotated[
        list[Path] | None, typer.Option("--baseline", help="The multi-task baseline's evaluation (distill --kd-weight 0); one per seed.")
    ] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for a README) instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table, the relative gains and the page's sections as JSON instead.")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write the report as one self-contained HTML page: plots and pictures.")] = None,
    ablation: Annotated[
        list[Path] | None,
        typer.Option("--ablation", help="A distilled model's evaluation, trained with other switches (scripts/ablations.sh); one per variant and seed."),
    ] = None,
) -> None:
    made = _run(report_stage.report, teachers=teacher, students=student, baselines=baseline, ablations=ablation, html=html_file, with_sections=as_json)
    result, ablations, sections = made.table, made.ablations, made.sections
    if made.page is not None:
        err_console.print(f"report page: {made.page}", highlight=False, soft_wrap=True)
    if as_json:
        out_console.print_json(data=result.to_json() | {"sections": sections.to_json()} | ({"ablations": asdict(ablations)} if ablations else {}))
        return
    rows = [format_row(row) for row in result.rows]
    if markdown:
        _print_markdown(["metric", *result.columns], rows, right_aligned=range(1, len(result.columns) + 1))
        out_console.print("\n" + "\n".join(f"- {line}" for line in result.gain_lines()), highlight=False, soft_wrap=True)
        if ablations:
            out_console.print()
            _print_markdown(ablations.header(), ablations.text_rows(), right_aligned=range(1, len(ablations.header()) - 1))
        return
    out_console.print(_table(f"teachers, student and baseline ({result.units()})", ["metric", *result.columns], rows))
    for line in result.gain_lines():
        out_console.print(line, highlight=False)
    if ablations:
        out_console.print(_table(f"ablations ({ablations.units()})", ablations.header(), ablations.text_rows()))


def _print_markdown(columns: list[str], rows: list[list[str]], right_aligned: range) -> None:
    """A Markdown table, the columns in `right_aligned` (numbers) aligned right."""
    rule = "".join("---:|" if index in right_aligned else "---|" for index in range(len(columns)))
    out_console.print(f"| {' | '.join(columns)} |\n|{rule}", highlight=False, soft_wrap=True)
    for row in rows:
        out_console.print("| " + " | ".join(row) + " |", highlight=False, soft_wrap=True)


ModelOption = Annotated[Path, typer.Option("--model", help="A famevil checkpoint directory (base, teacher or student).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ApproximateOption = Annotated[bool, typer.Option("--approximate", help="Search FAISS inverted-file indexes, not every item (needs faiss-cpu).")]


@app.command()
def caption(
    images: Annotated[list[Path], typer.Argument(help="Image files to caption.", show_default=False)],
    model: ModelOption,
    beams: Annotated[int, typer.Option(help="1 is greedy decoding, more is beam search.", min=1)] = 1,
    max_new_tokens: Annotated[int | None, typer.Option(help="Caption length limit in tokens (default: the text context).", min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """Caption images with a model trained for captioning (a FIC teacher or the student).

    Greedy decoding, or beam search with --beams; one caption per image, as a table or --json.

    Example (seconds on a laptop CPU, after scripts/demo.sh):

        famevil caption --model runs/demo/seed-0/student front.jpg back.jpg
    """
    loaded = _run(famevil.load, directory=model)
    captions = _run(loaded.caption, images=images, beams=beams, max_new_tokens=max_new_tokens)
    if as_json:
        out_console.print_json(data=[{"image": str(image), "caption": text} for image, text in zip(images, captions, strict=True)])
        return
    out_console.print(_table(str(model), ["image", "caption"], [[str(image), text] for image, text in zip(images, captions, strict=True)]))


@app.command()
def classify(
    image: Annotated[Path, typer.Argument(help="An image file.", show_default=False)],
    model: ModelOption,
    text: Annotated[str, typer.Option("--text", help='The product\'s text, "title. description".')],
    top: Annotated[int, typer.Option(help="How many subcategories to list.", min=1)] = 5,
    as_json: JsonOption = False,
) -> None:
    """The most likely subcategories of a product from its image and its text.

    The model must be trained for sub-category recognition (an SCR teacher or the student); the
    names are the checkpoint's own. A table, or --json.

    Example (seconds on a laptop CPU, after scripts/demo.sh):

        famevil classify --model runs/demo/seed-0/student front.jpg \\
            --text "Navy Cardigan. Cardigan in navy wool."
    """
    loaded = _run(famevil.load, directory=model)
    (predictions,) = _run(loaded.classify, images=[image], texts=[text], top=top)
    if as_json:
        out_console.print_json(data=[{"subcategory": p.label, "probability": p.probability} for p in predictions])
        return
    out_console.print(_table(str(image), ["subcategory", "probability"], [[p.label, p.probability] for p in predictions]))


@app.command("index", help=inspect.cleandoc(index_stage.index.__doc__))
def index(
    model: ModelOption,
    images: Annotated[Path, typer.Option("--images", help="A folder of images, or a CSV with an 'image' column.")],
    out: OutOption,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass (and per resumable chunk).", min=1)] = 64,
    thumbnail: Annotated[int, typer.Option(help="Thumbnail size in pixels (the longer side).", min=16, max=512)] = 96,
    overwrite: OverwriteOption = False,
) -> None:
    result = _run(index_stage.index, model=model, images=images, out=out, batch_size=batch_size, thumbnail=thumbnail, overwrite=overwrite)
    resumed = f", {result.resumed_chunks} batches resumed" if result.resumed_chunks else ""
    out_console.print(f"{result.out}: {result.items} images indexed in {result.seconds:.1f} s{resumed}", highlight=False, soft_wrap=True)
    if result.skipped:
        err_console.print(f"[yellow]skipped {len(result.skipped)} unreadable images[/] (listed in {result.out / 'skipped.jsonl'}):", highlight=False)
        for entry in result.skipped[:10]:
            err_console.print(f"  {entry['path']}: {entry['reason']}", highlight=False, soft_wrap=True)


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="An index (famevil index).", show_default=False)],
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.", show_default=False)] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Composed search: a reference image ...")] = None,
    modify: Annotated[str | None, typer.Option("--modify", help="... and how the wanted item differs from it.")] = None,
    top: Annotated[int, typer.Option(help="How many results.", min=1)] = 10,
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = None,
    as_json: JsonOption = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write a page of thumbnails with their scores.")] = None,
    approximate: ApproximateOption = False,
) -> None:
    """Search a catalogue index by text, or by a reference image and a modification (composed search).

    Exact search over every item (--approximate: FAISS inverted files). Results as a table, --json,
    or --html FILE, a page of thumbnails with their scores.

    Example (seconds on a laptop CPU, after famevil index):

        famevil search runs/demo/index "navy wool cardigan" --top 5
        famevil search runs/demo/index --image ref.jpg \\
            --modify "is red with short sleeves"
    """
    result = _run(search_stage.search, index=index_dir, text=text, image=image, modify=modify, top=top, model=model, approximate=approximate, html=html_file)
    if as_json:
        out_console.print_json(data=[{"rank": h.rank, "item": h.item, "path": h.path, "score": h.score} for h in result.hits])
        return
    out_console.print(_table(f"{result.kind} search: {result.query}", ["rank", "score", "image"], [[h.rank, h.score, h.path] for h in result.hits]))


@app.command()
def serve(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="An index (famevil index).", show_default=False)],
    model: Annotated[Path | None, typer.Option("--model", help="The model the index was built with, if it moved.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the server to this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    approximate: ApproximateOption = False,
) -> None:
    """Serve a catalogue index: an HTTP JSON API and a web page.

    The API: text search, composed search from an upload or a catalogue item, caption and classify
    of an upload (its schema at /docs). The page, at /: search by text or from a photo, open a
    product's caption and subcategory, and search for a variation of it.

    Example (after famevil index):

        famevil serve runs/demo/index --port 8000
    """
    catalogue = _run(SearchSession, index=index_dir, model=model, approximate=approximate)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can use the server (it has no authentication)")
    out_console.print(f"serving {index_dir} ({len(catalogue.index)} items) at http://{host}:{port}/", highlight=False, soft_wrap=True)
    uvicorn.run(create_app(catalogue), host=host, port=port, log_level="warning")


@app.command("export", help=inspect.cleandoc(export_stage.export.__doc__))
def export(
    model: ModelOption,
    out: OutOption,
    form: Annotated[str, typer.Option("--format", help="famevil (a checkpoint) or open_clip (a local-dir: folder of the backbone).")] = "famevil",
    metrics: Annotated[Path | None, typer.Option("--metrics", help="An evaluation (famevil evaluate) for the card's table.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    result = _run(export_stage.export, model=model, out=out, form=form, metrics=metrics, overwrite=overwrite)
    trained_on = ", trained on the synthetic data set (the card says so)" if result.synthetic else ""
    out_console.print(f"{result.out}: {result.format} export with a model card{trained_on}", highlight=False, soft_wrap=True)


@app.command("inspect")
def inspect_artifact(path: Annotated[Path, typer.Argument(help="An artifact directory written by a famevil stage.")]) -> None:
    """Show what an artifact is, the command that made it, what it was made from and what it holds.

    Example:

        famevil inspect runs/demo/shards
    """
    manifest = _run(require_artifact, root=path)
    out_console.print(
        f"[bold]{path}[/]: {manifest.kind} (schema {manifest.schema_version}), famevil {manifest.famevil_version}, {manifest.created}", soft_wrap=True
    )
    out_console.print(f"id:      {manifest.content_id}", highlight=False)
    out_console.print(f"command: {manifest.command}", highlight=False, soft_wrap=True)
    for ref in manifest.inputs:
        out_console.print(f"from:    {ref.role} ({ref.kind}) {ref.id} at {ref.path}", highlight=False, soft_wrap=True)
    out_console.print_json(data=manifest.details)


@app.command("verify")
def verify(path: Annotated[Path, typer.Argument(help="An artifact directory written by a famevil stage.")]) -> None:
    """Check every file of an artifact against its manifest: the listed files, their sizes and their full
    SHA-256, and the content id. Stages check sizes, weights and manifests whenever they read an
    artifact; this reads everything (the shards' tars too).

    Example:

        famevil verify runs/demo/shards
    """
    manifest = _run(require_artifact, root=path, verify=False)
    hashed = _run(verify_artifact, root=path, manifest=manifest, full=True)
    out_console.print(f"{path}: {manifest.kind} {manifest.content_id}: {hashed} files match their manifest", highlight=False, soft_wrap=True)


def main() -> None:
    app()
