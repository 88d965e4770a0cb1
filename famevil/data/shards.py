"""Samples in and out of webdataset shards, in the layout data_specs.shards declares."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from data_specs.manifest import file_sha256
from data_specs.shards import IMAGE_EXTENSION, REFERENCE_IMAGE, TARGET_IMAGE
from famevil.data.fashiongen import FashionGenRow
from famevil.data.fashioniq import Triplet
from famevil.data.images import encode_jpeg

Sample = dict[str, Any]


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard: what sizes.json lists and the manifest's content id is built from."""

    path: str  # relative to the shard set's root
    samples: int
    sha256: str


def fashiongen_sample(key: str, row: FashionGenRow, category_ids: dict[str, int], subcategory_ids: dict[str, int]) -> Sample:
    return {
        "__key__": key,
        IMAGE_EXTENSION: encode_jpeg(row.image),
        "json": {
            "product_id": row.product_id,
            "view": row.view,
            "title": row.title,
            "description": row.description,
            "category": row.category,
            "subcategory": row.subcategory,
            "category_id": category_ids[row.category],
            "subcategory_id": subcategory_ids[row.subcategory],
            "gender": row.gender,
            "composition": row.composition,
            "season": row.season,
        },
    }


def triplet_sample(key: str, triplet: Triplet, reference_jpeg: bytes, target_jpeg: bytes | None) -> Sample:
    sample = {
        "__key__": key,
        REFERENCE_IMAGE: reference_jpeg,
        "json": {"group": triplet.group, "candidate": triplet.candidate, "target": triplet.target, "captions": list(triplet.captions)},
    }
    if target_jpeg is not None:
        sample[TARGET_IMAGE] = target_jpeg
    return sample


def gallery_sample(key: str, group: str, asin: str, jpeg: bytes) -> Sample:
    return {"__key__": key, IMAGE_EXTENSION: jpeg, "json": {"group": group, "asin": asin}}


def write_shard(root: Path, relative: str, samples: Iterable[Sample]) -> ShardRecord:
    """Write one tar beside its final name, then rename it into place: a shard either exists whole or not at all.

    Tar headers carry a fixed mtime so that the same samples always make the same bytes (and id).
    """
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    count = 0
    with open(temporary, "wb") as handle, wds.TarWriter(handle, mtime=0) as sink:
        for sample in samples:
            sink.write(sample)
            count += 1
    temporary.replace(path)
    return ShardRecord(relative, count, file_sha256(path))
