"""The layout of an `annotations` artifact, written by `famevil annotate`, and the attributes file it reads.

ANNOTATIONS/
  annotations.jsonl   one object per annotated product, in catalogue order: product_id, image, caption
                      (when the model captions), subcategories [{label, probability}, ...] with
                      subcategories_by ("scr" or "zero-shot"), attributes {name: {label, probability}}
  annotations.csv     the same, one row per product in flat columns (CSV_COLUMNS, then subcategory_1,
                      subcategory_1_probability, ..., then each attribute and attribute_probability)
  skipped.jsonl       the catalogue rows not annotated: file, line, reason, detail
  manifest.json       kind "annotations"; its inputs are the model and the catalogue

An attributes file is a JSON object of label sets, each a list of labels or an object with "labels" and
an optional "template" (a string with one `{}`, or a list of such strings, averaged):

    {"colour": ["black", "white", "navy"],
     "sleeve": {"labels": ["short", "long"], "template": "a photo of a garment with {} sleeves"}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from data_specs.errors import FamevilError

ANNOTATIONS_FILE = "annotations.jsonl"
TABLE_FILE = "annotations.csv"
SKIPPED_FILE = "skipped.jsonl"
CSV_COLUMNS = ("product_id", "image", "caption", "subcategories_by")  # before the subcategory and attribute columns
ATTRIBUTE_TEMPLATE = "a photo of a {} garment"  # an attribute's label names a quality, not the product itself
SUBCATEGORY_TEMPLATE = "a photo of a {}"  # a subcategory's label names the product


@dataclass(frozen=True)
class LabelSet:
    """Labels to choose among, and the prompts each is put in (their text embeddings are averaged)."""

    labels: tuple[str, ...]
    templates: tuple[str, ...]


def label_set(where: str, labels: object, templates: object) -> LabelSet:
    """Labels and templates checked: one line naming `where` (the file and attribute, or the flag) when a
    label is empty, not text or given twice (whatever its case), or a template is not one `{}` in text."""
    if not isinstance(labels, list) or not labels:
        raise FamevilError(f"{where}: expected a non-empty list of labels")
    seen: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise FamevilError(f"{where}: the label {json.dumps(label)} is empty or not text; give each label as a non-empty string")
        key = label.strip().lower()
        if key in seen:
            raise FamevilError(f"{where}: the label {label.strip()!r} is given twice (as {seen[key]!r} too); give each label once")
        seen[key] = label.strip()
    listed = templates if isinstance(templates, list) else [templates]
    for template in listed:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise FamevilError(f"{where}: the template {json.dumps(template)} must be text with exactly one {{}}, where the label goes")
    return LabelSet(tuple(seen.values()), tuple(listed))


def read_attributes(path: Path) -> dict[str, LabelSet]:
    """An attributes file's label sets by attribute name; one line naming the file and the attribute or
    field at fault when it is malformed."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FamevilError(f"--attributes {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FamevilError(f"--attributes {path}: unreadable ({error}); save it as UTF-8 JSON") from None
    except json.JSONDecodeError as error:
        raise FamevilError(f"--attributes {path}: line {error.lineno}: malformed JSON ({error.msg})") from None
    if not isinstance(raw, dict) or not raw:
        raise FamevilError(f'--attributes {path}: expected a JSON object of label sets, such as {{"colour": ["black", "white"]}}')
    return {name.strip(): _attribute(path, name, spec) for name, spec in raw.items()}


def _attribute(path: Path, name: str, spec: object) -> LabelSet:
    where = f"{path}: attribute {name!r}"
    if not name.strip():
        raise FamevilError(f"{path}: an attribute with an empty name; name each attribute")
    if name.strip().lower() in CSV_COLUMNS or name.strip().lower().startswith("subcategor"):
        raise FamevilError(f"{where}: the name is one of annotate's own columns ({', '.join(CSV_COLUMNS)}, subcategory_N); rename the attribute")
    if isinstance(spec, list):
        return label_set(where, spec, ATTRIBUTE_TEMPLATE)
    if not isinstance(spec, dict) or "labels" not in spec:
        raise FamevilError(f'{where}: expected a list of labels or {{"labels": [...], "template": "... {{}} ..."}}')
    unknown = sorted(set(spec) - {"labels", "template"})
    if unknown:
        raise FamevilError(f"{where}: unknown field {unknown[0]!r}; an attribute has 'labels' and optionally 'template'")
    return label_set(where, spec["labels"], spec.get("template", ATTRIBUTE_TEMPLATE))
