"""The command line: every stage listed with its purpose, every --help with a CPU-sized example."""

from __future__ import annotations

import importlib
import inspect
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import famevil
from data_specs.errors import FamevilError, FamevilWarning
from famevil.api import FashionModel, load
from famevil_cli.app import COMMANDS, LazyCommand, app, help_text

COMMANDS_DIR = Path(__file__).resolve().parents[1] / "famevil_cli" / "commands"

# The pipeline in order, then using a model, then tools: the order `famevil --help` lists them in.
STAGES = (
    "synth", "prepare", "pretrain", "teach", "dump", "distill", "evaluate", "report",
    "caption", "classify", "annotate", "index", "export-index", "search", "evaluate-search", "serve", "export",
    "inspect", "verify", "params",
)  # fmt: skip
PANELS = ("The pipeline, in order", "Using a model", "Tools")


def test_top_level_help_lists_every_stage_with_its_purpose(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for stage in STAGES:
        assert stage in result.stdout
    assert "Generate a procedural fashion data set" in result.stdout
    assert "Turn the raw FashionGen h5 files" in result.stdout


def test_top_level_help_lists_the_commands_in_pipeline_order_in_three_panels(cli):
    shown = cli("--help").stdout
    listed = re.findall(r"^│ ([a-z][a-z-]*) {2,}\S", shown, flags=re.MULTILINE)
    assert tuple(listed) == STAGES
    titles = [shown.index(f"─ {title} ─") for title in PANELS]
    assert titles == sorted(titles) and titles[0] > shown.index("─ Options ─")
    assert shown.index("─ Using a model ─") < shown.index("│ caption ") and shown.index("─ Tools ─") < shown.index("│ inspect ")


def test_a_commands_summary_is_the_first_paragraph_of_its_own_help():
    """`famevil --help` reads each summary from the help's source without importing the command; the
    command, once loaded, shows the same help."""
    group = typer.main.get_command(app)
    for entry in COMMANDS:
        listed = group.commands[entry.name]
        assert isinstance(listed, LazyCommand) and listed.rich_help_panel == entry.panel
        loaded = listed.loaded
        assert loaded.help == listed.help == help_text(entry) and loaded.help.split("\n\n")[0]
        module, _, function = (entry.help_from or f"{entry.module}:{entry.name}").partition(":")
        assert listed.help == inspect.cleandoc(getattr(importlib.import_module(module), function).__doc__)
    stems = sorted(path.stem for path in COMMANDS_DIR.glob("*.py") if path.stem not in ("__init__", "training_options"))
    assert stems == sorted(stage.replace("-", "_") for stage in STAGES)


NO_TORCH = """
import sys
from typer.testing import CliRunner
from famevil_cli.app import app
runner = CliRunner()
assert runner.invoke(app, ["--help"]).exit_code == 0
completing = {"_FAMEVIL_COMPLETE": "complete_bash", "COMP_WORDS": "famevil tea", "COMP_CWORD": "1"}
assert runner.invoke(app, [], env=completing).stdout.split() == ["teach"]
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "open_clip", "numpy") or name.startswith("stages."))))
"""


def test_the_top_level_help_and_completion_import_no_stage_and_no_torch():
    """Of the stages only the package itself is imported: to find the stage modules' files, whose docstrings are the help."""
    shown = subprocess.run([sys.executable, "-X", "importtime", "-m", "famevil_cli", "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "synth" in shown.stdout, shown.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines() if line.startswith("import time:")}
    assert "famevil_cli.app" in imported
    assert not {name for name in imported if name.split(".")[0] in ("torch", "open_clip", "numpy") or name.startswith("stages.") or name == "famevil.api"}
    completed = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and completed.stdout.strip() == "", completed.stdout + completed.stderr[-2000:]


def test_famevil_exports_its_errors_and_loads_the_model_api_on_first_use():
    code = "import sys, famevil; assert 'torch' not in sys.modules; famevil.load; assert 'torch' in sys.modules; print(famevil.FamevilError.__module__)"
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout.strip() == "data_specs.errors", finished.stderr[-2000:]
    assert famevil.FamevilError is FamevilError and famevil.FamevilWarning is FamevilWarning
    assert famevil.load is load and famevil.FashionModel is FashionModel and set(famevil.__all__) <= set(dir(famevil))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        famevil.nothing  # noqa: B018


# What a command's options are passed to, where the command's help is its own (a stage command's options go
# to its stage function, the one whose docstring is the help).
USES = {
    "caption": ["famevil.api:FashionModel.caption"],
    "classify": ["famevil.api:FashionModel.classify"],
    "serve": ["famevil.serving:SearchSession"],
    "params": ["famevil.params:count_parameters"],
}
NO_SHARED_DEFAULTS = ("inspect", "verify", "report")  # report's --teacher, --student, --baseline name one run each


def _function(path: str):
    module, _, name = path.partition(":")
    found = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda entry: entry.name)
def test_an_option_has_the_default_of_the_stage_parameter_it_is_passed_to(entry):
    defaults = {}
    for used in [entry.help_from] if entry.help_from else USES.get(entry.name, []):
        parameters = inspect.signature(_function(used)).parameters.values()
        defaults |= {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    options = {param.name: param for param in LazyCommand(entry, "markdown").loaded.params}
    shared = sorted(set(options) & set(defaults))
    for name in shared:
        assert options[name].default == defaults[name], (
            f"famevil {entry.name} {options[name].opts[0]}: {options[name].default!r}, the stage's {defaults[name]!r}"
        )
    assert shared or entry.name in NO_SHARED_DEFAULTS


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help_shows_an_example(cli, stage):
    result = cli(stage, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"famevil {stage} " in result.stdout


def _example_lines(text: str) -> list[str]:
    """The example commands of a help text: the indented lines after "Example"."""
    lines = inspect.cleandoc(text).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Example"))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("    ")]


@pytest.mark.parametrize("stage", STAGES)
def test_help_examples_stay_whole_in_an_80_column_terminal(stage):
    command = typer.main.get_command(app).commands[stage]
    examples = _example_lines(command.help)
    result = CliRunner().invoke(app, [stage, "--help"], env={"COLUMNS": "80"})
    shown = [line.strip() for line in result.stdout.splitlines()]
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for example in examples:
        assert example in shown, f"{stage}: the example line {example!r} wraps at 80 columns"


def test_synth_prepare_inspect_end_to_end(cli, tmp_path):
    raw, shards = tmp_path / "raw", tmp_path / "shards"
    result = cli("synth", "--preset", "tiny", "--seed", 5, "--out", raw, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "chance level" in result.stdout and "random100_r1" in result.stdout and "seed 5" in result.stderr
    result = cli("prepare", "--fashiongen", raw / "fashiongen", "--fashioniq", raw / "fashioniq", "--out", shards, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "fashiongen/train" in result.stdout and "samples/s" in result.stdout
    result = cli("inspect", shards)
    assert result.exit_code == 0 and "shards (schema 1)" in result.stdout and "from:    origin (raw-dataset)" in result.stdout
    result = cli("synth", "--preset", "tiny", "--out", raw)
    assert result.exit_code == 1 and "already exists" in result.stderr


@pytest.mark.parametrize(
    "option, message",
    [
        (("--preset", "huge"), "--preset 'huge' is unknown; choose one of tiny, demo, bench"),
        (("--image-size", 8), "--image-size 8 is out of range"),
    ],
    ids=["unknown-preset", "bad-image-size"],
)
def test_unknown_preset_and_bad_image_size(cli, tmp_path, option, message):
    result = cli("synth", *option, "--out", tmp_path / "raw")
    assert result.exit_code == 1 and message in result.stderr
    assert not (tmp_path / "raw").exists()


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("famevil 0.")


def test_teach_and_prepare_refuse_to_overwrite_their_own_input(cli, tiny_raw, tiny_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    result = cli("teach", "--task", "scr", "--set", "model=famevil-tiny", "--shards", shards, "--out", shards, "--overwrite")
    assert result.exit_code == 1 and "is the input" in result.stderr and (shards / "manifest.json").is_file()
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw, raw)
    result = cli("prepare", "--fashiongen", raw / "fashiongen", "--out", raw, "--overwrite")
    assert result.exit_code == 1 and "contains the input" in result.stderr and (raw / "fashiongen").is_dir()


@pytest.mark.parametrize(
    "failure",
    [
        OSError(28, "No space left on device", "shards/.partial/manifest.json"),
        RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: file write failed"),
    ],
    ids=["ENOSPC", "torch checkpoint writer"],
)
def test_a_full_disk_is_one_line(cli, tiny_raw, tmp_path, monkeypatch, failure):
    def full_disk(*args, **kwargs):
        raise failure

    monkeypatch.setattr("stages.prepare.write_manifest", full_disk)
    result = cli("prepare", "--fashiongen", tiny_raw / "fashiongen", "--out", tmp_path / "shards", "--workers", 1)
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: no space left on the device") and "rerun the same command" in line
    assert not (tmp_path / "shards").exists()


def test_shell_completion_completes_commands_and_options():
    # Typer finds the user's shell among the process's parents, so the script is asked for from a bash.
    command = f"{shlex.quote(str(Path(sys.executable).parent / 'famevil'))} --show-completion; exit $?"  # two commands: bash stays the parent
    script = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert script.returncode == 0 and "complete -o default -F _famevil_completion famevil" in script.stdout, script.stderr
    runner = CliRunner()
    completing = {"_FAMEVIL_COMPLETE": "complete_bash", "COMP_WORDS": "famevil tea", "COMP_CWORD": "1"}
    assert runner.invoke(app, [], env=completing).stdout.split() == ["teach"]
    options = runner.invoke(app, [], env=completing | {"COMP_WORDS": "famevil teach --max", "COMP_CWORD": "2"}).stdout.split()
    assert options == ["--max-steps"]


def test_without_a_terminal_progress_is_plain_lines(cli, tmp_path):
    result = cli("synth", "--preset", "tiny", "--seed", 2, "--out", tmp_path / "raw", "--workers", 1)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith(("FashionGen h5: ", "FashionIQ images: "))]
    assert any(line.startswith("FashionGen h5: ") and "(100%)" in line for line in lines) and any("images/s" in line for line in lines)
    assert "━" not in result.stderr  # no live bar
    assert len(lines) <= 22  # a line per tenth of each bar, not one per image
