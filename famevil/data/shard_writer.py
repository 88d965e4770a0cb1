"""Samples in and out of webdataset shards, in the layout data_specs.shards declares."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _encode(sample: Sample) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) per file of a sample, in webdataset's naming: KEY.EXTENSION."""
    key = sample["__key__"]
    for extension, value in sample.items():
        if extension != "__key__":
            data = json.dumps(value, ensure_ascii=False).encode() if extension == "json" else value
            yield f"{key}.{extension}", data


def write_shard(root: Path, relative: str, samples: Iterable[Sample]) -> ShardRecord:
    """Write one tar beside its final name, then rename it into place: a shard either exists whole or not at all.

    A webdataset shard is a plain tar whose members sharing a key form a sample; it is written here
    with a few lines of ustar rather than through webdataset (whose import brings torch into every
    prepare worker) or tarfile (whose per-member header code costs a third of a JPEG encode). A
    fixed mtime makes the same samples always give the same bytes and content id; the sha256 is
    taken on the way out rather than by reading the file again.
    """
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    digest = hashlib.sha256()
    count = 0
    with open(temporary, "wb") as handle:

        def emit(data: bytes) -> None:
            digest.update(data)
            handle.write(data)

        for sample in samples:
            for name, data in _encode(sample):
                emit(_ustar_header(name, len(data)))
                emit(data)
                emit(bytes(-len(data) % _TAR_BLOCK))
            count += 1
        emit(bytes(2 * _TAR_BLOCK))  # end of archive
    temporary.replace(path)
    return ShardRecord(relative, count, digest.hexdigest())


_TAR_BLOCK = 512


def _ustar_header(name: str, size: int) -> bytes:
    """The POSIX ustar header of a read-only regular file with mtime 0, owned by uid/gid 0."""
    encoded = name.encode()
    if len(encoded) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    header = bytearray(_TAR_BLOCK)
    header[0 : len(encoded)] = encoded
    header[100:108] = b"0000444\0"  # mode
    header[108:124] = b"0000000\0" * 2  # uid, gid
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"00000000000\0"  # mtime
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    header[156:157] = b"0"  # regular file
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)
