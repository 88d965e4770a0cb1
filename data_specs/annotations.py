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
class LabelChoice:
    """An attribute's labels to choose among, and the prompts each is put in (as written: famevil.text.labels
    checks the labels and templates themselves)."""

    labels: tuple[str, ...]
    templates: tuple[str, ...]


def read_attributes(path: Path) -> dict[str, LabelChoice]:
    """An attributes file's label sets by attribute name; one line naming the file and the attribute or
    field at fault when its shape is wrong (a label or template that is not text, an unknown field)."""
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


def _attribute(path: Path, name: str, spec: object) -> LabelChoice:
    where = f"{path}: attribute {name!r}"
    if not name.strip():
        raise FamevilError(f"{path}: an attribute with an empty name; name each attribute")
    if name.strip().lower() in CSV_COLUMNS or name.strip().lower().startswith("subcategor"):
        raise FamevilError(f"{where}: the name is one of annotate's own columns ({', '.join(CSV_COLUMNS)}, subcategory_N); rename the attribute")
    if isinstance(spec, list):
        spec = {"labels": spec}
    if not isinstance(spec, dict) or "labels" not in spec:
        raise FamevilError(f'{where}: expected a list of labels or {{"labels": [...], "template": "... {{}} ..."}}')
    unknown = sorted(set(spec) - {"labels", "template"})
    if unknown:
        raise FamevilError(f"{where}: unknown field {unknown[0]!r}; an attribute has 'labels' and optionally 'template'")
    labels, template = spec["labels"], spec.get("template", ATTRIBUTE_TEMPLATE)
    templates = template if isinstance(template, list) else [template]
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise FamevilError(f'{where}: \'labels\' must be a list of strings, such as ["black", "white"]')
    if not all(isinstance(text, str) for text in templates):
        raise FamevilError(f"{where}: 'template' must be a string with one {{}}, or a list of them")
    return LabelChoice(tuple(labels), tuple(templates))
