"""Help that runs: the Example commands of every command's --help, taken in the order `famevil --help` lists
the commands and run as printed, one after another in an empty directory, make one chain from
`famevil synth` to `famevil serve` (all in runs/example).

An example naming the xmr teacher stands for one per task where its help says so ("Repeat it for tgir,
scr and fic in place of xmr"): it runs once per task, as a reader would type it. `famevil serve` runs
with its socket and uvicorn stood in for by one request to the app it would serve, so no port is bound.
"""

from __future__ import annotations

import re
import shlex

import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import famevil_cli.commands.serve as serve_command
from famevil.tasks import task_names
from famevil_cli.app import COMMANDS, app, help_text

# The one file of the chain a reader writes by hand, as evaluate-search's help describes it.
QUERIES = ("runs/example/queries.csv", ["query,relevant", "navy wool cardigan,B002F7A5G2.png"])
REPEAT = re.compile(r"Repeat (?:it|the teacher's) for (.+?) in place of (\w+)")


def examples(help: str) -> list[list[str]]:
    """The example commands of a help text as their words: the indented lines after "Example", a line
    ending in a backslash continued on the next; repeated as a "Repeat it for ..." sentence says."""
    lines = help.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("Example"))
    commands, pending = [], ""
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
        else:
            commands.append(pending)
            pending = ""
    assert not pending, f"an example ends in a backslash: {pending!r}"
    repeat = REPEAT.search(" ".join(help.split()))
    if repeat:
        others, stand_in = re.split(r", | and ", repeat[1]), repeat[2]
        assert [stand_in, *others] == list(task_names()), repeat[0]
        named = re.compile(rf"\b{stand_in}\b")
        commands = [
            variant for command in commands for variant in ([command] + [named.sub(other, command) for other in others] if named.search(command) else [command])
        ]
    return [shlex.split(command) for command in commands]


def chain() -> list[list[str]]:
    made = []
    for entry in COMMANDS:
        shown = examples(help_text(entry))
        assert shown, f"famevil {entry.name} --help shows no example"
        for words in shown:
            assert words[:2] == ["famevil", entry.name], f"famevil {entry.name} --help shows an example of another command: {shlex.join(words)}"
        made += shown
    return made


def test_the_examples_make_one_chain_in_runs_example():
    commands = chain()
    assert [words[1] for words in commands][:2] == ["synth", "prepare"]
    for words in commands:
        paths = [word.removeprefix("qdrant+local:") for word in words if "/" in word]  # a local Qdrant collection is a folder too
        assert all(path.startswith("runs/example/") for path in paths), shlex.join(words)
    teachers = [words for words in commands if words[1] == "teach"]
    assert [words[words.index("--task") + 1] for words in teachers] == list(task_names())


def test_the_help_examples_run_as_printed_from_synth_to_serve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    served = []

    def one_request(server: uvicorn.Server, sockets: list) -> None:
        with TestClient(server.config.app, base_url="http://127.0.0.1:8000") as client:
            found = client.get("/api/search", params={"q": "navy wool cardigan", "top": 3})
        assert found.status_code == 200 and len(found.json()["results"]) == 3, found.text
        served.append(sockets[0])

    monkeypatch.setattr(serve_command, "listen", lambda host, port: {"host": host, "port": port})
    monkeypatch.setattr(uvicorn.Server, "run", one_request)
    path, lines = QUERIES
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = CliRunner()
    for words in chain():
        result = runner.invoke(app, words[1:])
        assert result.exit_code == 0, f"{shlex.join(words)} exited {result.exit_code}:\n{result.output[-3000:]}\n{result.exception!r}"
    assert served == [{"host": "127.0.0.1", "port": 8000}]
    assert (tmp_path / "runs" / "example" / "report.html").is_file() and (tmp_path / "runs" / "example" / "export" / "README.md").is_file()


def test_the_queries_file_is_the_one_the_help_describes():
    help = " ".join(help_text(next(entry for entry in COMMANDS if entry.name == "evaluate-search")).split())
    path, (header, row) = QUERIES
    assert f"header {header}" in help and f'row "{row}"' in help and path in help
