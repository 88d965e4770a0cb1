"""The `famevil` command group and its commands, in the order `famevil --help` shows them.

Each command lives in famevil_cli/commands/NAME.py (a function NAME) and is imported only when it runs,
completes or shows its own --help: `famevil --help` and shell completion import no stage and no torch.
A command's help is a docstring, read here without importing its module (ast): the stage function's
for a stage, else the command function's own, so its one-line summary is written once.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from data_specs.manifest import famevil_version
from famevil_cli.common import out_console, state

PIPELINE, USE, TOOLS = "The pipeline, in order", "Using a model", "Tools"


@dataclass(frozen=True)
class Entry:
    name: str  # the command; its function and module (famevil_cli/commands/NAME.py) spell a hyphen as _
    panel: str
    help_from: str | None = None  # "module:function" whose docstring is the help (a stage); None: the command function's

    @property
    def function(self) -> str:
        return self.name.replace("-", "_")

    @property
    def module(self) -> str:
        return f"famevil_cli.commands.{self.function}"


COMMANDS = (
    Entry("synth", PIPELINE, "stages.synth:synth"),
    Entry("prepare", PIPELINE, "stages.prepare:prepare"),
    Entry("pretrain", PIPELINE, "stages.pretrain:pretrain"),
    Entry("teach", PIPELINE, "stages.teach:teach"),
    Entry("dump", PIPELINE, "stages.dump:dump"),
    Entry("distill", PIPELINE, "stages.distill:distill"),
    Entry("evaluate", PIPELINE, "stages.evaluate:evaluate"),
    Entry("report", PIPELINE, "stages.report:report"),
    Entry("caption", USE),
    Entry("classify", USE),
    Entry("annotate", USE, "stages.annotate:annotate"),
    Entry("index", USE, "stages.index:index"),
    Entry("export-index", USE, "stages.export_index:export_index"),
    Entry("search", USE, "stages.search:search"),
    Entry("evaluate-search", USE, "stages.evaluate_search:evaluate_search"),
    Entry("serve", USE),
    Entry("export", USE, "stages.export:export"),
    Entry("inspect", TOOLS),
    Entry("verify", TOOLS),
    Entry("params", TOOLS),
)


@cache
def _functions(module: str) -> dict[str, ast.FunctionDef]:
    """A module's top-level functions, parsed from its file: finding the file imports only the packages above it."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def help_text(entry: Entry) -> str:
    """The command's --help: the docstring `help_from` names, or the command function's own (both cleaned as inspect.cleandoc does)."""
    module, _, function = (entry.help_from or f"{entry.module}:{entry.function}").partition(":")
    return ast.get_docstring(_functions(module)[function]) or ""


class LazyCommand(typer.core.TyperCommand):
    """A registry entry as a click command: its name, help and panel without importing anything; parsing,
    running, --help and completion go to the real command, built from its module on first use (Click's
    group runs the command of the context that make_context returns)."""

    def __init__(self, entry: Entry, rich_markup_mode: Any) -> None:
        super().__init__(entry.name, help=help_text(entry), rich_help_panel=entry.panel, rich_markup_mode=rich_markup_mode)
        self.entry = entry

    @cached_property
    def loaded(self) -> typer.core.TyperCommand:
        function = getattr(importlib.import_module(self.entry.module), self.entry.function)
        single = typer.Typer(add_completion=False, rich_markup_mode=self.rich_markup_mode)
        single.command(self.name, help=self.help)(function)
        return typer.main.get_command(single)

    def make_context(self, info_name, args, parent=None, **extra):
        return self.loaded.make_context(info_name, args, parent=parent, **extra)

    def get_params(self, ctx):
        return self.loaded.get_params(ctx)

    def get_usage(self, ctx) -> str:
        return self.loaded.get_usage(ctx)

    def format_help(self, ctx, formatter) -> None:
        self.loaded.format_help(ctx, formatter)

    def invoke(self, ctx):
        return self.loaded.invoke(ctx)

    def shell_complete(self, ctx, incomplete):
        return self.loaded.shell_complete(ctx, incomplete)


class FamevilGroup(typer.core.TyperGroup):
    """The root group: the registry's commands, in its order, each loaded when used."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for entry in COMMANDS:
            self.add_command(LazyCommand(entry, self.rich_markup_mode))


app = typer.Typer(
    name="famevil",
    cls=FamevilGroup,
    help="Train, distil and evaluate one vision-language model for many fashion tasks (after FAME-ViL, CVPR 2023).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion and --show-completion for bash, zsh, fish and PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings reflow; their indented example commands stay as written
)


def _print_version(value: bool) -> None:
    if value:
        out_console.print(f"famevil {famevil_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)] = False,
) -> None:
    state["debug"] = debug


def main() -> None:
    app()
