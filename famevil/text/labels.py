"""Zero-shot labels and prompt templates, checked before any encoding: each label named and given once
(case and surrounding spaces aside), each template with one `{}` where the label goes.

A problem is one line naming where the label was written: its position in a list, or a file's line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data_specs.errors import FamevilError

DEFAULT_TEMPLATES = ("a photo of a {}",)  # CLIP's own zero-shot prompt
SLOT = "{}"  # where a template takes its label
COMMENT = "#"


def checked_labels(labels: Sequence[str], places: Sequence[str] | None = None) -> tuple[str, ...]:
    """The labels stripped, refused in one line when one is empty or repeats another ignoring case.
    places: where each label was written (`labels.txt line 4`), by default its position in the list."""
    if isinstance(labels, str):
        raise FamevilError(f"labels={labels!r}: give a list of labels, not one string (split it: {labels.split(',')!r})")
    places = places or [f"label {number}" for number in range(1, len(labels) + 1)]
    if len(labels) < 2:
        raise FamevilError(f"{len(labels)} label(s) given: zero-shot chooses among labels, so give two or more")
    first_place: dict[str, str] = {}
    for label, place in zip(labels, places, strict=True):
        name = label.strip()
        if not name:
            raise FamevilError(f"{place}: an empty label; give every label a name or remove it")
        if name.casefold() in first_place:
            raise FamevilError(f"{place}: {name!r} repeats {first_place[name.casefold()]}; give each label once")
        first_place[name.casefold()] = place
    return tuple(label.strip() for label in labels)


def checked_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """The templates, refused in one line when one has no `{}` or more than one."""
    if isinstance(templates, str):
        templates = [templates]  # one template given alone
    if not templates:
        raise FamevilError(f"no templates given; give at least one, such as {DEFAULT_TEMPLATES[0]!r}")
    for number, template in enumerate(templates, start=1):
        slots = template.count(SLOT)
        if slots != 1:
            raise FamevilError(f"template {number} {template!r}: has {slots} {SLOT} where it needs one, for the label (such as {DEFAULT_TEMPLATES[0]!r})")
    return tuple(templates)


def prompts(labels: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every template filled with every label, template by template (replace, not format: a template's
    other braces are text)."""
    return [template.replace(SLOT, label) for template in templates for label in labels]


def read_labels_file(path: Path) -> tuple[str, ...]:
    """A file of labels, one a line, blank lines and `#` comments skipped; checked, naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FamevilError(f"{path}: no such labels file") from None
    except UnicodeDecodeError as error:
        raise FamevilError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8, one label a line") from None
    except OSError as error:
        raise FamevilError(f"{path}: unreadable ({error.strerror or error})") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip() and not line.lstrip().startswith(COMMENT)]
    if len(lines) < 2:
        raise FamevilError(f"{path}: {len(lines)} label(s); give two or more, one a line")
    return checked_labels([line for _, line in lines], [f"{path} line {number}" for number, _ in lines])
