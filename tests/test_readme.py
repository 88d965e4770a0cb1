"""The README's Python snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 1


def test_the_model_snippet_runs(capsys):
    snippet = next(s for s in SNIPPETS if "MultiTaskModel" in s)
    exec(compile(snippet, str(README), "exec"), {})  # noqa: S102 - the README is this repository's own text
    assert capsys.readouterr().out.strip()  # the decoded caption
