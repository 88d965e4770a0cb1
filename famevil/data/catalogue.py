"""A shop's own catalogue as training data: a products file whose rows are image views, and
optionally a pairs file of modification texts between two of its images. Either file is CSV (a
header row) or JSON Lines (one object per line), told apart by its suffix.

    catalogue  image, title, description, category, subcategory; optional product_id, split
    pairs      reference, target, captions, group

Column names are matched whatever their case (`Product_ID` is product_id). `image` is a path relative
to the images folder, and stays inside it: an absolute path or one through `..` is a skipped row. Rows
sharing a product_id are views of one product; a row without one is a product of its own. `split` is
train or val (val serves as the test split, as FashionGen's validation file does); without the column
a seeded hash of the product decides, so a product keeps its split as the catalogue grows. A pair's reference and target are catalogue images,
named as the `image` column names them, and the pair belongs to its reference's split. `captions`
holds one or more modification texts separated by "|" (in JSON Lines, a list of strings too).

A row that cannot be used is skipped with its line and a reason, for the caller to count and list.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_specs.errors import FamevilError
from data_specs.shards import FASHIONGEN_SPLITS
from famevil.data.fashiongen import FashionGenRow, clean_text

CATALOGUE_COLUMNS = ("image", "title", "description", "category", "subcategory")
OPTIONAL_CATALOGUE_COLUMNS = ("product_id", "split")
PAIR_COLUMNS = ("reference", "target", "captions", "group")
CAPTION_SEPARATOR = "|"
FORMATS = (".csv", ".jsonl")
SPLIT_SEED = 0
VAL_PERCENT = 10
HASHED_SPLIT = {
    "by": "product hash",
    "seed": SPLIT_SEED,
    "val_percent": VAL_PERCENT,
    "rule": "val if int.from_bytes(sha256(f'{seed}:{product}')[:8], 'big') % 100 < val_percent, else train; product: product_id, else image",
}
SPLIT_COLUMN = {"by": "split column"}

CATALOGUE, PAIRS = "catalogue", "pairs"  # the files a skipped row comes from

Record = dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    file: str  # CATALOGUE or PAIRS
    line: int  # 1-based, in that file (a CSV's header is line 1)
    reason: str  # a short class, counted in summaries
    detail: str = ""  # the value at fault


@dataclass(frozen=True)
class View:
    """One usable catalogue row: an image view of a product."""

    line: int
    image: str  # as the catalogue names it, normalised: the view's name in the shards, and what pairs refer to
    product: str  # its product_id, or its image when it has none
    title: str
    description: str
    category: str
    subcategory: str
    split: str

    def row(self, product_id: int, pixels: np.ndarray) -> FashionGenRow:
        """The view as a FashionGen release row, which the FashionGen sample writer takes."""
        return FashionGenRow(product_id, self.image, self.title, self.description, self.category, self.subcategory, "", "", "", pixels)


@dataclass(frozen=True)
class Pair:
    line: int
    reference: View
    target: View
    captions: tuple[str, ...]
    group: str

    @property
    def split(self) -> str:
        return self.reference.split


@dataclass(frozen=True)
class Catalogue:
    views: list[View]
    skipped: list[Skipped]
    split: dict[str, Any]  # how views were split: SPLIT_COLUMN or HASHED_SPLIT


class UnusableRow(Exception):
    """A row that is skipped, with its reason and what in it was wrong."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def read_catalogue(path: Path) -> Catalogue:
    records, skipped, columns = read_table(path, CATALOGUE)
    _check_columns(
        path, columns, CATALOGUE_COLUMNS, f"a catalogue needs columns {', '.join(CATALOGUE_COLUMNS)} (optional: {', '.join(OPTIONAL_CATALOGUE_COLUMNS)})"
    )
    has_split = "split" in columns
    views: list[View] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        try:
            view = _view(line, record, has_split)
            if view.image in first_line:
                raise UnusableRow("duplicate image", f"{view.image} (first on line {first_line[view.image]})")
        except UnusableRow as bad:
            skipped.append(Skipped(CATALOGUE, line, bad.reason, bad.detail))
            continue
        first_line[view.image] = line
        views.append(view)
    return Catalogue(views, skipped, SPLIT_COLUMN if has_split else HASHED_SPLIT)


def read_pairs(path: Path, views: Iterable[View]) -> tuple[list[Pair], list[Skipped]]:
    """The pairs whose reference and target are among `views` (the usable catalogue rows)."""
    records, skipped, columns = read_table(path, PAIRS)
    expected = f"a pairs file needs columns {', '.join(PAIR_COLUMNS)}, captions holding one or more texts separated by {CAPTION_SEPARATOR!r}"
    for column in sorted(columns):
        if column.startswith("caption") and column != "captions":
            raise FamevilError(f"{path}: column {column!r}: {expected}")
    _check_columns(path, columns, PAIR_COLUMNS, expected)
    by_image = {view.image: view for view in views}
    pairs = []
    for line, record in records:
        try:
            ends = [by_image.get(record_image(record, end)) for end in ("reference", "target")]
            for end, view in zip(("reference", "target"), ends, strict=True):
                if view is None:
                    raise UnusableRow(f"unknown {end}", record_text(record, end))
            group = record_text(record, "group")
            if not group:
                raise UnusableRow("empty group")
            pairs.append(Pair(line, *ends, _captions(record), group))
        except UnusableRow as bad:
            skipped.append(Skipped(PAIRS, line, bad.reason, bad.detail))
    return pairs, skipped


def hashed_split(product: str) -> str:
    """val for about VAL_PERCENT products in 100: a product's split depends on nothing else."""
    number = int.from_bytes(hashlib.sha256(f"{SPLIT_SEED}:{product}".encode()).digest()[:8], "big")
    return "val" if number % 100 < VAL_PERCENT else "train"


def product_numbers(views: Iterable[View]) -> dict[str, int]:
    """Integer product ids, as FashionGen's samples carry, in order of first appearance."""
    return {product: number for number, product in enumerate(dict.fromkeys(view.product for view in views))}


def summary(skipped: list[Skipped]) -> str:
    """'2 missing image, 1 unknown split': the reasons, most frequent first."""
    return ", ".join(f"{count} {reason}" for reason, count in Counter(s.reason for s in skipped).most_common())


# Rows -----------------------------------------------------------------------------------------------


def row_image(record: Record) -> str:
    """A catalogue row's image path, in one spelling and inside the images folder; UnusableRow otherwise."""
    image = record_image(record, "image")
    if not image:
        raise UnusableRow("no image")
    if leaves_folder(image):
        raise UnusableRow("image outside --images", image)
    return image


def _view(line: int, record: Record, has_split: bool) -> View:
    image = row_image(record)
    title, description = clean_text(record_text(record, "title")), clean_text(record_text(record, "description"))
    if not title and not description:
        raise UnusableRow("empty title and description", image)
    labels = {name: clean_text(record_text(record, name)) for name in ("category", "subcategory")}
    for name, label in labels.items():
        if not label:
            raise UnusableRow(f"empty {name}", image)
    product = record_text(record, "product_id") or image
    split = record_text(record, "split").lower() if has_split else hashed_split(product)
    if split not in FASHIONGEN_SPLITS:
        raise UnusableRow("unknown split", f"{split!r} (expected {' or '.join(FASHIONGEN_SPLITS)})")
    return View(line, image, product, title, description, labels["category"], labels["subcategory"], split)


def record_text(record: Record, column: str) -> str:
    value = record.get(column)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnusableRow(f"{column} not text", json.dumps(value)[:80])
    return str(value).strip()


def record_image(record: Record, column: str) -> str:
    """An image path in one spelling, so that pairs find it however the catalogue wrote it ('./a.jpg' is 'a.jpg')."""
    value = record_text(record, column)
    return posixpath.normpath(value) if value else ""


def leaves_folder(relative: str) -> bool:
    """Whether a path a listing gives relative to a folder points outside it: absolute, or up through '..'.
    Such a path is never read, so a listing cannot make a stage read (and hash and publish) any file."""
    normal = posixpath.normpath(relative)
    return posixpath.isabs(normal) or normal == ".." or normal.startswith("../")


def _captions(record: Record) -> tuple[str, ...]:
    value = record.get("captions")
    listed = isinstance(value, list) and all(isinstance(text, str) for text in value)
    parts = value if listed else record_text(record, "captions").split(CAPTION_SEPARATOR)
    captions = tuple(text.strip() for text in parts if text.strip())
    if not captions:
        raise UnusableRow("no caption")
    return captions


# Files ----------------------------------------------------------------------------------------------


def read_table(path: Path, role: str) -> tuple[list[tuple[int, Record]], list[Skipped], set[str]]:
    """(line, record) of every row, the rows that are not records, and the columns found: a CSV's
    header, or every key some JSON Lines record has. Column names are stripped and lower-cased, as a
    spreadsheet's 'Image' or 'Product_ID' header means the column famevil names image or product_id."""
    if path.suffix.lower() not in FORMATS:
        raise FamevilError(f"{path}: expected a {' or '.join(FORMATS)} file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte order mark is no part of the first column's name
    except UnicodeDecodeError as error:
        raise FamevilError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise FamevilError(f"{path}: unreadable ({error.strerror or error})") from None
    return _read_csv(path, text) if path.suffix.lower() == ".csv" else _read_jsonl(text, role)


def _read_csv(path: Path, text: str) -> tuple[list[tuple[int, Record]], list[Skipped], set[str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []
    try:
        header = _column_names(path, next(reader, []))
        while True:
            line = reader.line_num + 1  # where the row starts: a quoted value may span lines
            row = next(reader, None)
            if row is None:
                break
            if any(value.strip() for value in row):
                records.append((line, dict(zip(header, row, strict=False))))
    except csv.Error as error:
        raise FamevilError(f"{path}: line {reader.line_num}: malformed CSV ({error})") from None
    return records, [], set(header) - {""}


def _read_jsonl(text: str, role: str) -> tuple[list[tuple[int, Record]], list[Skipped], set[str]]:
    records, skipped, columns = [], [], set()
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as error:
            skipped.append(Skipped(role, line, "malformed JSON", error.msg))
            continue
        if not isinstance(record, dict):
            skipped.append(Skipped(role, line, "not a JSON object", type(record).__name__))
            continue
        named = {_column_name(key): value for key, value in record.items()}
        if len(named) < len(record):
            skipped.append(Skipped(role, line, "duplicate column", ", ".join(sorted(record))))
            continue
        records.append((line, named))
        columns |= set(named)
    return records, skipped, columns


def _column_name(name: str) -> str:
    return name.strip().lower()


def _column_names(path: Path, header: list[str]) -> list[str]:
    """A CSV header's names as famevil matches them; two that only case tells apart are refused, since
    either could be the column meant."""
    names = [_column_name(name) for name in header]
    for name, count in Counter(names).items():
        if name and count > 1:
            spellings = [given.strip() for given in header if _column_name(given) == name]
            raise FamevilError(f"{path}: columns {' and '.join(repr(s) for s in spellings)} are one column to famevil, which ignores case; rename or drop one")
    return names


def _check_columns(path: Path, columns: set[str], required: tuple[str, ...], expected: str) -> None:
    missing = [column for column in required if column not in columns]
    if missing:
        found = ", ".join(sorted(columns)) or "none"
        raise FamevilError(f"{path}: no column {', '.join(missing)} (found: {found}); {expected}")
