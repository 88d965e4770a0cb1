"""Reading the FashionGen release (fashiongen_256_256_{train,validation}.h5) as it is published.

One row per image view. Text fields are (N, 1) arrays of fixed-width latin-1 byte strings with HTML
entities and <br> tags; input_productID groups the views of a product; input_image is
(N, 256, 256, 3) uint8. The train file is tens of GB, so rows are read in slices, never whole.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from data_specs.errors import FamevilError

RELEASE_FILES = {"train": "fashiongen_256_256_train.h5", "val": "fashiongen_256_256_validation.h5"}
IMAGE_FIELD = "input_image"
PRODUCT_FIELD = "input_productID"
REQUIRED_TEXT_FIELDS = ("input_name", "input_description", "input_category", "input_subcategory", "input_pose")
OPTIONAL_TEXT_FIELDS = ("input_gender", "input_composition", "input_season")
ALL_TEXT_FIELDS = (
    *REQUIRED_TEXT_FIELDS,
    *OPTIONAL_TEXT_FIELDS,
    "input_concatenated_description",
)
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_text(value: bytes | str) -> str:
    """Release text to plain text: latin-1 bytes decoded, <br> and HTML entities resolved, padding and
    runs of whitespace collapsed."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return " ".join(html.unescape(_LINE_BREAK.sub(" ", text.replace("\x00", " "))).split())


@dataclass(frozen=True)
class FashionGenRow:
    product_id: int
    view: str  # input_pose
    title: str
    description: str
    category: str
    subcategory: str
    gender: str
    composition: str
    season: str
    image: np.ndarray  # (H, W, 3) uint8


def _first_line(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)  # str(KeyError) adds quotes
    return (text.strip().splitlines() or [type(error).__name__])[0]


class FashionGenFile:
    """A FashionGen h5 opened for streaming, its fields checked up front."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise FamevilError(f"{path}: no such file; expected {path.name} from the FashionGen release")
        try:
            self._h5 = h5py.File(path, "r")
        except OSError:
            raise FamevilError(f"{path}: not an HDF5 file; expected {path.name} from the FashionGen release") from None
        try:
            self._check()
        except FamevilError:
            self._h5.close()
            raise
        except (KeyError, OSError, ValueError, RuntimeError) as error:  # h5py's errors for damaged objects
            self._h5.close()
            raise FamevilError(f"{path}: a damaged HDF5 file ({_first_line(error)}); download {path.name} again") from None

    def _check(self) -> None:
        present = set(self._h5.keys())
        missing = [f for f in (IMAGE_FIELD, PRODUCT_FIELD, *REQUIRED_TEXT_FIELDS) if f not in present]
        if missing:
            raise FamevilError(f"{self.path}: missing field {missing[0]!r} (has: {', '.join(sorted(present)) or 'nothing'}); is this a FashionGen h5?")
        images = self._h5[IMAGE_FIELD]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise FamevilError(f"{self.path}: field {IMAGE_FIELD!r} is {images.dtype}{images.shape}, expected uint8 (N, H, W, 3)")
        for field in (PRODUCT_FIELD, *REQUIRED_TEXT_FIELDS, *self.optional_fields):
            if self._h5[field].shape[0] != images.shape[0]:
                raise FamevilError(f"{self.path}: field {field!r} has {self._h5[field].shape[0]} rows but {IMAGE_FIELD!r} has {images.shape[0]}")
        if images.shape[0] == 0:
            raise FamevilError(f"{self.path}: holds no rows; nothing to prepare")
        if min(images.shape[1:3]) == 0:
            raise FamevilError(f"{self.path}: field {IMAGE_FIELD!r} holds images of {images.shape[1]}x{images.shape[2]} pixels; is this a FashionGen h5?")

    @property
    def optional_fields(self) -> tuple[str, ...]:
        return tuple(f for f in OPTIONAL_TEXT_FIELDS if f in self._h5)

    def __len__(self) -> int:
        return int(self._h5[IMAGE_FIELD].shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self._h5[IMAGE_FIELD].shape[1:])

    def text(self, field: str, start: int, stop: int) -> list[str]:
        return self._text(field, slice(start, stop))

    def _text(self, field: str, selection: slice | np.ndarray) -> list[str]:
        cleaned: dict[bytes | str, str] = {}  # a column repeats values (categories, poses, seasons): each is cleaned once
        return [
            cleaned[value] if value in cleaned else cleaned.setdefault(value, clean_text(value))
            for value in self._column(field, selection).reshape(-1).tolist()
        ]

    def _column(self, field: str, selection: slice | np.ndarray) -> np.ndarray:
        """A column's rows: a slice as one hyperslab, a list of rows as one point selection.

        h5py selects a list of rows one hyperslab per row, in Python: 24 us for a FashionGen row's
        nine columns, a fifteenth of its JPEG encode; one HDF5 point selection a column reads the same
        rows in a sixth of that time."""
        column = self._h5[field]
        if isinstance(selection, slice) or np.prod(column.shape[1:]) != 1:  # a point is one value: a wider row takes h5py's way
            return np.asarray(column[selection])
        points = np.zeros((selection.size, column.ndim), dtype=np.uint64)
        points[:, 0] = selection
        rows = np.empty((selection.size, *column.shape[1:]), dtype=column.dtype)
        if selection.size:
            space = column.id.get_space()
            space.select_elements(points)
            column.id.read(h5py.h5s.create_simple(rows.shape), space, rows)
        return rows

    def rows(self, indices: Sequence[int], image_block: int = 64) -> Iterator[FashionGenRow]:
        """The rows at `indices` (ascending; a range reads fastest), in that order: text columns read
        in one go (kilobytes), images one at a time straight from the file where it stores them whole
        (_image_reader), else `image_block` rows at a time through h5py (megabytes), so memory stays
        bounded and h5 calls few."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (np.any(np.diff(indices) <= 0) or indices[0] < 0 or indices[-1] >= len(self)):
            raise ValueError(f"{self.path}: rows must be distinct, ascending and below {len(self)}")
        where = f"rows {indices[0]}-{indices[-1]}" if indices.size else "no rows"
        try:
            yield from self._rows(indices, image_block)
        except (KeyError, OSError, ValueError, RuntimeError) as error:  # a damaged chunk, found when read
            raise FamevilError(f"{self.path}: {where} are unreadable ({_first_line(error)}); download {self.path.name} again") from None

    def _rows(self, indices: np.ndarray, image_block: int) -> Iterator[FashionGenRow]:
        if not indices.size:
            return
        contiguous = indices[-1] - indices[0] + 1 == indices.size
        # A slice is one hyperslab; a list of rows (a shard of a shuffled order) is read as points (_column) or row by row (_image_reader).
        select = (lambda part: slice(int(part[0]), int(part[-1]) + 1)) if contiguous else (lambda part: part)
        blank = [""] * indices.size
        # In FashionGenRow's field order, after product_id and before image.
        fields = ("input_pose", "input_name", "input_description", "input_category", "input_subcategory", "input_gender", "input_composition", "input_season")
        present = set(REQUIRED_TEXT_FIELDS + self.optional_fields)
        texts = zip(*(self._text(field, select(indices)) if field in present else blank for field in fields), strict=True)
        products = self._column(PRODUCT_FIELD, select(indices)).reshape(-1).tolist()
        with self._image_reader(select) as read_images:
            images = (image for block in range(0, indices.size, image_block) for image in read_images(indices[block : block + image_block]))
            for product, text, image in zip(products, texts, images, strict=True):
                yield FashionGenRow(int(product), *text, image)

    @contextlib.contextmanager
    def _image_reader(self, select: Callable[[np.ndarray], slice | np.ndarray]) -> Iterator[Callable[[np.ndarray], Iterable[np.ndarray]]]:
        """A function giving the images at given rows: read straight from the file's bytes where the
        release stores them as one uncompressed, unchunked array (as FashionGen's h5 does), else through h5py.

        A training shard's rows are scattered (prepare shuffles them), and h5py selects a list of rows
        one hyperslab per row: 0.85 ms an image, three times its JPEG encode. One pread a row costs a
        copy (docs/benchmarks.md, "Data preparation"); unlike a memory map, it leaves the file's pages
        to the page cache rather than in the worker's resident memory."""
        images = self._h5[IMAGE_FIELD]
        offset = images.id.get_offset()
        if images.chunks is not None or images.compression is not None or offset is None:
            yield lambda part: images[select(part)]
            return
        shape, row_bytes = images.shape[1:], int(np.prod(images.shape[1:]))
        with open(self.path, "rb", buffering=0) as raw:

            def read(part: np.ndarray) -> Iterator[np.ndarray]:
                for row in part.tolist():  # one at a time: a buffer freed by the encoder is reused, not faulted in anew
                    image = np.empty(shape, dtype=np.uint8)
                    if os.preadv(raw.fileno(), [image], offset + row * row_bytes) != row_bytes:
                        raise OSError(f"row {row} ends past the end of the file")
                    yield image

            yield read

    def product_ids(self, block: int = 1 << 16) -> Iterator[int]:
        for start in range(0, len(self), block):
            yield from (int(p) for p in np.asarray(self._h5[PRODUCT_FIELD][start : start + block]).reshape(-1))

    def labels(self, block: int = 1 << 16) -> Iterator[tuple[str, str]]:
        """(category, subcategory) of every row, read a column block at a time (no images)."""
        for start in range(0, len(self), block):
            stop = min(start + block, len(self))
            yield from zip(self.text("input_category", start, stop), self.text("input_subcategory", start, stop), strict=True)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> FashionGenFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
