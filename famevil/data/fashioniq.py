"""Reading the FashionIQ release as it is published.

The release folder holds:

    captions/cap.{group}.{split}.json       [{"candidate": asin, "target": asin, "captions": [two strings]}, ...]
                                            (the test split has no "target")
    image_splits/split.{group}.{split}.json [asin, ...]: the images of that group and split
    images/{asin}.jpg or .png               some listed images are missing (dead links in the release)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from data_specs.errors import FamevilError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Triplet:
    group: str
    candidate: str  # the reference image's asin
    target: str | None  # None in the test split
    captions: tuple[str, ...]  # two relative captions


def caption_file(root: Path, group: str, split: str) -> Path:
    return root / "captions" / f"cap.{group}.{split}.json"


def image_split_file(root: Path, group: str, split: str) -> Path:
    return root / "image_splits" / f"split.{group}.{split}.json"


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FamevilError(f"{path}: malformed JSON at line {error.lineno} column {error.colno} ({error.msg}); re-extract the FashionIQ release") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FamevilError(f"{path}: unreadable ({error}); re-extract the FashionIQ release") from None


def read_triplets(root: Path, group: str, split: str) -> list[Triplet]:
    """The triplets of one group and split; the target is required except in the test split."""
    path = caption_file(root, group, split)
    entries = _load_json(path)
    if not isinstance(entries, list):
        raise FamevilError(f"{path}: expected a JSON list of triplets, found {type(entries).__name__}")
    triplets = []
    for index, entry in enumerate(entries):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("candidate"), str):
            raise FamevilError(f"{where}: needs a string field 'candidate'")
        captions = entry.get("captions")
        if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
            raise FamevilError(f"{where}: needs 'captions', a non-empty list of strings")
        target = entry.get("target")
        if split != "test" and not isinstance(target, str):
            raise FamevilError(f"{where}: needs a string field 'target' (only the test split may omit it)")
        triplets.append(Triplet(group, entry["candidate"], target, tuple(captions)))
    return triplets


def read_image_split(root: Path, group: str, split: str) -> list[str]:
    path = image_split_file(root, group, split)
    asins = _load_json(path)
    if not isinstance(asins, list) or not all(isinstance(a, str) for a in asins):
        raise FamevilError(f"{path}: expected a JSON list of image names (asins)")
    return asins


def image_index(root: Path) -> dict[str, Path]:
    """asin -> image file, from one scan of images/ (77k files in the release: one listing, not 77k stats)."""
    folder = root / "images"
    if not folder.is_dir():
        raise FamevilError(f"{folder}: no such directory; expected the FashionIQ images/ folder beside captions/")
    index: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES:
                index[stem] = Path(entry.path)
    return index
