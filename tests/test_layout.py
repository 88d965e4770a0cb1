"""The package's shape: no import cycle, layers that only point down, and no task named outside its module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from famevil.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("data_specs", "famevil", "stages", "famevil_cli")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules a module imports, type-checking-only imports included (a cycle hidden behind
    TYPE_CHECKING is still a cycle of the design)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            # `from package import module` imports the module; `from module import name` the module.
            imported |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return {module for module in imported if module in MODULES and module != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_no_import_cycle():
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycle = trail[trail.index(target) :] + [target] if target in trail else [module, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("data_specs", ("famevil", "stages", "famevil_cli")),
        ("famevil", ("stages", "famevil_cli")),
        ("stages", ("famevil_cli",)),
        ("famevil.model", ("famevil.tasks", "famevil.multitask", "famevil.checkpoint", "famevil.training")),
        ("famevil.data", ("famevil.model", "famevil.tasks", "famevil.multitask", "famevil.training")),
    ],
)
def test_layers_point_down(layer, forbidden):
    for module, targets in GRAPH.items():
        if module == layer or module.startswith(layer + "."):
            wrong = sorted(t for t in targets if any(t == f or t.startswith(f + ".") for f in forbidden))
            assert not wrong, f"{module} imports {wrong}"


def test_no_stage_imports_another():
    """A stage orchestrates one command; what two stages share belongs in the core or in data_specs."""
    for module, targets in GRAPH.items():
        if module.startswith("stages."):
            others = sorted(t for t in targets if t.startswith("stages.") or t == "stages")
            assert not others, f"{module} imports the stages {others}"


def test_every_stage_is_a_command():
    """Each module in stages/ defines the function its command runs, named after the module."""
    for module, path in MODULES.items():
        if module.startswith("stages."):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
            assert module.split(".")[-1] in functions, f"{path.relative_to(ROOT)} defines no {module.split('.')[-1]}() stage"


def test_names_say_one_thing():
    """No two modules of the same file name, and no two public classes of the same name, anywhere in the
    packages: a name found in a traceback or a search points at one place. The CLI's command modules
    (famevil_cli/commands/NAME.py) are named after their command, as its stage is: one name, one command."""
    stems = [path.stem for module, path in MODULES.items() if path.name != "__init__.py" and not module.startswith("famevil_cli.commands.")]
    assert not sorted({stem for stem in stems if stems.count(stem) > 1}), "modules sharing a name"
    classes: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                classes.setdefault(node.name, []).append(module)
    assert not {name: found for name, found in classes.items() if len(found) > 1}, "public classes sharing a name"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def test_no_task_is_named_outside_its_module():
    names = set(TASKS)
    found = []
    for module, path in MODULES.items():
        if module.startswith("famevil.tasks") or module.startswith("data_specs"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "task names outside famevil/tasks: " + "; ".join(found)
