"""Samples in and out of webdataset shards, in the layout data_specs.shards declares."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_specs.shards import IMAGE_EXTENSION, REFERENCE_IMAGE, TARGET_IMAGE
from famevil.data.fashiongen import FashionGenFile, FashionGenRow
from famevil.data.fashioniq import Triplet
from famevil.data.images import encode_jpeg, image_file_as_jpeg, read_rgb
from famevil.data.parallel import worker_map
from famevil.progress import progress_bar

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

    A webdataset shard is a plain tar whose members sharing a key (KEY.EXTENSION) form a sample; it
    is written here with a few lines of ustar rather than through webdataset (whose import brings
    torch into every prepare worker) or tarfile (whose per-member header code costs a third of a
    JPEG encode). A fixed mtime makes the same samples always give the same bytes and content id.
    Members are appended in place to one buffer that is hashed and written a megabyte at a time: a
    sample costs no copies or calls beyond its members' bytes, and the sha256 is taken on the way out
    rather than by reading the file again.
    """
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    digest = hashlib.sha256()
    pending = bytearray()
    count = 0
    with open(temporary, "wb", buffering=0) as handle:

        def flush() -> None:
            digest.update(pending)
            handle.write(pending)
            pending.clear()

        for sample in samples:
            key = sample["__key__"]
            for extension, value in sample.items():
                if extension != "__key__":
                    _append_member(pending, f"{key}.{extension}", json.dumps(value, ensure_ascii=False).encode() if extension == "json" else value)
            count += 1
            if len(pending) >= WRITE_BUFFER:
                flush()
        pending += bytes(2 * _TAR_BLOCK)  # end of archive
        flush()
    temporary.replace(path)
    return ShardRecord(relative, count, digest.hexdigest())


_TAR_BLOCK = 512
WRITE_BUFFER = 1 << 20  # bytes of members hashed and written at once


def _header_template() -> tuple[bytes, int]:
    """The POSIX ustar header of a read-only regular file with mtime 0, owned by uid/gid 0, with the
    name, size and checksum left blank; and the checksum of those blank fields' bytes."""
    header = bytearray(_TAR_BLOCK)
    header[100:108] = b"0000444\0"  # mode
    header[108:124] = b"0000000\0" * 2  # uid, gid
    header[136:148] = b"00000000000\0"  # mtime
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    header[156:157] = b"0"  # regular file
    header[257:265] = b"ustar\x0000"
    return bytes(header), sum(header)


_HEADER, _HEADER_SUM = _header_template()
_PADDING = bytes(_TAR_BLOCK)


def _append_member(tar: bytearray, name: str, data: bytes) -> None:
    """Append a member to tar: the header template with its name, size and checksum filled in (only
    those bytes are summed: a whole header's sum costs as much as the rest of the writing), the
    data, and zeros to the next 512-byte block."""
    encoded = name.encode()
    if len(encoded) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    size_field = b"%011o\0" % len(data)
    start = len(tar)
    tar += _HEADER
    tar[start : start + len(encoded)] = encoded
    tar[start + 124 : start + 136] = size_field
    tar[start + 148 : start + 156] = b"%06o\0 " % (_HEADER_SUM + sum(encoded) + sum(size_field))
    tar += data
    tar += _PADDING[: -len(data) % _TAR_BLOCK]


# Writing a whole shards folder -------------------------------------------------------------------

READ_BLOCK = 64  # h5 rows a worker reads at once through h5py (a chunked or compressed release): about 12 MB of 256x256 images
DONE_FILE = ".done.jsonl"  # finished shards of an interrupted run, one ShardRecord per line


@dataclass(frozen=True)
class ShardTask:
    """One shard to write; small enough to send to a worker process."""

    relative: str
    kind: str  # "fashiongen", "catalogue", "triplets" or "gallery"
    split: str
    source: Path | None = None  # the h5, for FashionGen
    items: tuple = ()  # ascending h5 rows for FashionGen, TripletItem or GalleryItem for FashionIQ and pairs, CatalogueItem for a catalogue
    category_ids: dict[str, int] | None = None
    subcategory_ids: dict[str, int] | None = None

    @property
    def samples(self) -> int:
        return len(self.items)


def training_order(items: list, split: str, seed: int) -> list:
    """A training split's samples in a seeded random order, any other split's as the source lists them.

    Training streams its shards through a shuffle buffer about one shard long, so the order written
    here is the order a batch is drawn from: in the source's order a batch would come from one or two
    stretches of the file (a product's views side by side, and whatever the release is sorted by);
    shuffled, each batch draws from the whole split, as the authors' random permutation does."""
    if split != "train":
        return items
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def chunks(items: list, size: int) -> Iterator[tuple[int, tuple]]:
    """(shard index, items) of each shard of `size` items."""
    for index, start in enumerate(range(0, len(items), size)):
        yield index, tuple(items[start : start + size])


def _fashiongen_samples(task: ShardTask) -> Iterator[Sample]:
    with FashionGenFile(task.source) as release:
        for index, row in zip(task.items, release.rows(task.items, image_block=READ_BLOCK), strict=True):
            yield fashiongen_sample(f"{task.split}-{index:08d}", row, task.category_ids, task.subcategory_ids)


def _fashioniq_samples(task: ShardTask) -> Iterator[Sample]:
    for item in task.items:
        if task.kind == "gallery":
            yield gallery_sample(item.key, item.group, item.asin, image_file_as_jpeg(item.image))
        else:
            target = image_file_as_jpeg(item.target) if item.target else None
            yield triplet_sample(item.key, item.triplet, image_file_as_jpeg(item.reference), target)


def _catalogue_samples(task: ShardTask) -> Iterator[Sample]:
    for item in task.items:
        yield fashiongen_sample(item.key, item.view.row(item.product_id, np.asarray(read_rgb(item.image))), task.category_ids, task.subcategory_ids)


def _write_task(job: tuple[Path, ShardTask]) -> ShardRecord:
    """Runs in a worker process: read, encode and write one whole shard under root."""
    root, task = job
    samples = {"fashiongen": _fashiongen_samples, "catalogue": _catalogue_samples}.get(task.kind, _fashioniq_samples)(task)
    return write_shard(root, task.relative, samples)


def write_shards(partial: Path, tasks: list[ShardTask], workers: int, resume: bool) -> tuple[dict[str, ShardRecord], int]:
    """Every shard's record, writing those an interrupted run did not finish; and how many it had.

    Each finished shard is journaled at once, so a run killed at any point loses only the shards
    its workers were writing."""
    done = _finished_shards(partial) if resume else {}
    # Longest first: the short last shards of each split end the run, so no worker idles long beside the last one.
    todo = sorted((task for task in tasks if task.relative not in done), key=lambda task: -task.samples)
    with progress_bar("prepare", sum(t.samples for t in tasks), unit="samples") as advance:
        advance(sum(t.samples for t in tasks if t.relative in done))
        with open(partial / DONE_FILE, "a", encoding="utf-8") as journal:
            for record in worker_map(_write_task, [(partial, task) for task in todo], workers, ordered=False):
                journal.write(json.dumps(asdict(record)) + "\n")
                journal.flush()
                done[record.path] = record
                advance(record.samples)
    return done, len(tasks) - len(todo)


def _finished_shards(partial: Path) -> dict[str, ShardRecord]:
    """Shards an interrupted run finished: journaled and still on disk (a torn last line is ignored)."""
    done = {}
    journal = partial / DONE_FILE
    if journal.is_file():
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                record = ShardRecord(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            if (partial / record.path).is_file():
                done[record.path] = record
    return done
