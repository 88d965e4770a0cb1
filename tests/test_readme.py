"""The README and the docs/ pages: their Python snippets run as written, their relative links lead
somewhere, and the README stays a short user guide.

Snippets: every fenced block opened with ```python in README.md and docs/*.md is collected. Each
runs, in a fresh namespace and an empty temporary directory (so that a snippet cannot lean on files
of the checkout, such as a runs/ folder from an earlier demo), unless the last non-blank line before
its fence is the marker

    <!-- not run: REASON -->

which GitHub does not render. Mark a snippet so when it needs a trained model or files, e.g.
`<!-- not run: needs runs/demo from scripts/demo.sh -->`; every other snippet must run on its own.

Links: every relative link or image in README.md and docs/*.md, `[text](path)` and
`[text](path#anchor)`, must name an existing file (relative to the page); with an anchor, or a bare
`#anchor`, the target page must have a heading with that anchor (GitHub's rule: lower case, spaces
to hyphens, punctuation dropped). Links inside code (fenced blocks, inline code) are not links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.DOTALL | re.MULTILINE)
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", flags=re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", flags=re.MULTILINE)


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None  # the marker's reason

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def snippets(page: Path) -> list[Snippet]:
    """The page's ```python blocks, each with the reason of a not-run marker right before it."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = [line.strip() for line in text[: match.start()].splitlines() if line.strip()]
        marker = NOT_RUN.match(before[-1]) if before else None
        found.append(Snippet(page, text.count("\n", 0, match.start()) + 1, match.group(2), marker.group(1) if marker else None))
    return found


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where brackets and parentheses are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation but hyphens and
    underscores dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = anchor(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")  # GitHub numbers repeated headings
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of the page whose file, or heading, does not exist, with the reason (paths
    shown relative to `root`)."""
    problems = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE):  # https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            problems.append(f"{target}: no file {_shown(destination, root)}")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            problems.append(f"{target}: no heading with anchor #{fragment} in {_shown(destination, root)}")
    return problems


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


SNIPPETS = [snippet for page in PAGES for snippet in snippets(page)]
RUN = [snippet for snippet in SNIPPETS if snippet.not_run is None]


def test_the_pages_have_python_snippets_and_some_run():
    assert any(snippet.page == README for snippet in SNIPPETS)
    assert RUN, "no ```python snippet in README.md or docs/*.md runs: is every one marked <!-- not run: ... -->?"


def test_the_model_snippet_is_run():
    assert any("MultiTaskModel" in snippet.code for snippet in RUN), "docs/model.md's network snippet should run in the tests"


@pytest.mark.parametrize("snippet", RUN, ids=lambda snippet: snippet.name)
def test_the_snippet_runs(snippet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # an empty directory: a snippet that needs files must say so
    exec(compile(snippet.code, snippet.name, "exec"), {"__name__": "__snippet__"})  # noqa: S102 - this repository's own text
    if "print(" in snippet.code:
        assert capsys.readouterr().out.strip()  # e.g. the model snippet's decoded caption


def test_every_not_run_marker_stands_before_a_python_snippet():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        markers = [line for line in text.splitlines() if line.strip().startswith("<!-- not run")]
        assert all(NOT_RUN.match(line.strip()) for line in markers), f"{page.name}: a marker needs a reason, <!-- not run: REASON -->"
        assert len(markers) == sum(1 for snippet in snippets(page) if snippet.not_run), f"{page.name}: a not-run marker that no ```python fence follows"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    assert broken_links(page) == []


def test_the_readme_is_a_short_guide_that_links_every_docs_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/ (at most {README_MAX_LINES})"
    linked = {target.partition("#")[0] for target in LINK.findall(prose("\n".join(lines)))}
    missing = [f"docs/{page.name}" for page in PAGES[1:] if f"docs/{page.name}" not in linked]
    assert missing == [], "the README's map of the docs lacks these pages"


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The helpers above report a broken page: a missing file, a missing heading, a marker, code."""
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# A page\n\n## The demo's result\n\n"
        "[ok](#the-demos-result) [ok](page.md#a-page) [gone](missing.md) [no heading](page.md#nowhere) "
        "[web](https://example.com/x) `[code](not-a-link.md)`\n\n"
        "<!-- not run: needs files -->\n```python\nopen('runs/demo')\n```\n\n```python\nprint(1)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: no file docs/missing.md",
        "page.md#nowhere: no heading with anchor #nowhere in docs/page.md",
    ]
    assert [snippet.not_run for snippet in snippets(page)] == ["needs files", None]
    assert anchor("Earlier results: 100-update teachers, shards in the release's order") == "earlier-results-100-update-teachers-shards-in-the-releases-order"
