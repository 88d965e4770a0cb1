"""From shards to model inputs: training batches and evaluation samples (the image transforms are famevil.data.transforms)."""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import torch
import webdataset as wds
from webdataset.autodecode import DecodingError

from data_specs.errors import FamevilError
from data_specs.integrity import HashingReader, ListedFile
from data_specs.shards import Shards, sample_key

REBUILD_SHARDS = "rebuild the shards with famevil prepare"

# A sample's key, as `famevil prepare` writes them ("train-00000042", "val-dress-B0JBVYKKR8"): a member
# name outside it (a path such as "../../x.jpg") is not one of famevil's samples.
SAMPLE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _checked_key(sample: dict[str, Any]) -> dict[str, Any]:
    if not SAMPLE_KEY.fullmatch(sample["__key__"]):
        raise FamevilError(
            f"{sample.get('__url__', 'a shard')}: member {sample['__key__']!r} is not a sample key (letters, digits, - and _); "
            "rebuild the shards with famevil prepare"
        )
    return sample


def _json_member(key: str, data: bytes) -> Any:
    return json.loads(data) if key.rsplit(".", 1)[-1].lower() == "json" else None


# Shard members decode as images (PIL) and JSON, and nothing else: webdataset's default decoders would
# also unpickle .pyd, .pickle and .pth members, which can run code. Any other member stays bytes.
DECODE = wds.Decoder([wds.imagehandler("pil"), _json_member], post=[])


def _unreadable_member(url: str, member: str, error: BaseException) -> FamevilError:
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    return FamevilError(f"{url}: member {member} is not readable ({detail}); {REBUILD_SHARDS}")


def _decode(sample: dict[str, Any]) -> dict[str, Any]:
    """DECODE, a member that does not decode (a corrupt JSON or image) one line naming it."""
    try:
        return DECODE(sample)
    except DecodingError as error:
        if isinstance(error.__cause__, FamevilError):  # a decoder's own one line
            raise error.__cause__ from None
        raise _unreadable_member(error.url, f"{error.key}.{error.k}", error.__cause__ or error) from None


def _tar_members(stream: HashingReader, url: str) -> Iterator[dict[str, Any]]:
    """A tar's regular files in order, streamed in one pass; a damaged tar (cut short, say) is one line."""
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # closes the archive, not the stream
            for member in archive:
                if member.isreg():
                    yield {"fname": member.name, "data": archive.extractfile(member).read(), "__url__": url}
                archive.members = []  # streamed: keep no index of what was read
    except tarfile.TarError as error:
        raise FamevilError(f"{url}: not a whole tar file ({error}); {REBUILD_SHARDS}") from None


def _shard_members(sources: Iterable[dict[str, Any]], listed: Mapping[str, ListedFile]) -> Iterator[dict[str, Any]]:
    """The members of each shard a shard list names ({"url": path}), as webdataset's group_by_keys takes
    them, with its end-of-shard marker ({}) after each. The bytes are hashed as they are read: a shard read
    to its end must be the file its manifest lists (a shard swapped for another of the same size is not)."""
    for source in sources:
        with HashingReader(listed[source["url"]]) as stream:
            yield from _tar_members(stream, source["url"])
            stream.finish()
        yield {}


def _shard_samples(sources: Iterable[dict[str, Any]], listed: Mapping[str, ListedFile]) -> Iterator[dict[str, Any]]:
    """Samples (a key's members together, undecoded) of the shards a shard list names."""
    return wds.tariterators.group_by_keys(_shard_members(sources, listed))


def _listed(files: Iterable[ListedFile]) -> dict[str, ListedFile]:
    return {str(file.path): file for file in files}


def training_batches(
    shards: Shards,
    subset: str,
    make_batch: Callable[[list[dict[str, Any]], Callable, Callable], dict[str, Any]],
    batch_size: int,
    transform: Callable,
    tokenize: Callable,
    seed: int,
    epoch: int,
    batches_per_epoch: int,
    shuffle_buffer: int = 1000,
) -> wds.DataPipeline:
    """One epoch of training batches from a subset's shards, without a sample list; make_batch(samples,
    transform, tokenize) turns samples into a task's tensors.

    Shards are drawn with replacement, each process and data-loader worker with its own generator
    (webdataset seeds it from the rank and the worker id), then samples are shuffled in a buffer.
    Every generator is also seeded by (seed, epoch): the same seed and epoch give the same batches
    again, so a resumed run can rebuild the epoch it stopped in and skip what it had consumed.
    Random augmentation draws from a generator seeded by the batch's keys, not from torch's global
    one, so skipping batches leaves the training generator (dropout) where a resumed run needs it.
    The epoch is `batches_per_epoch` batches per worker, whatever the shard sizes.
    """
    listed = _listed(shards.listed_files(subset))
    stream_seed = seed * 100_003 + epoch  # a different, reproducible draw every epoch

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(" ".join(sample["__key__"] for sample in batch).encode()) + stream_seed)
            return make_batch(batch, transform, tokenize)

    return wds.DataPipeline(
        wds.ResampledShards(list(listed), seed=stream_seed, deterministic=True),
        partial(_shard_samples, listed=listed),
        wds.detshuffle(shuffle_buffer, initial=min(shuffle_buffer, 100), seed=stream_seed),
        wds.map(_checked_key),
        wds.map(_decode),
        wds.batched(batch_size, collation_fn=collate, partial=False),
    ).with_epoch(batches_per_epoch)


def samples(shards: Shards, subset: str) -> Iterator[dict[str, Any]]:
    """Every sample of a subset in shard order, images decoded to PIL, all in this one process (also
    under a multi-process launch, where only the main process evaluates). Each shard must hold the
    samples sizes.json lists, and be the file its manifest lists."""
    for path, count in shards.listed(subset):
        yield from shard_samples([shards.listed_file(path)], expected=count)


def shard_samples(files: list[ListedFile], expected: int | None = None) -> Iterator[dict[str, Any]]:
    """Every sample of these shard files, in order, images decoded to PIL, each file checked against its
    listed sha256 once read; with `expected`, exactly that many samples or an error naming the shards."""
    count = 0
    listed = _listed(files)
    for sample in _shard_samples(({"url": url} for url in listed), listed):
        count += 1
        yield _decode(_checked_key(sample))
    if expected is not None and count != expected:
        where = ", ".join(listed)
        raise FamevilError(f"{where}: {count} samples where sizes.json lists {expected}; {REBUILD_SHARDS}")


def records(shards: Shards, subset: str) -> Iterator[dict[str, Any]]:
    """Every sample's JSON record of a subset, in shard order, without decoding its images (the shards
    are still read whole, to check them against their manifest)."""
    listed = _listed(shards.listed_files(subset))
    for member in _shard_members(({"url": url} for url in listed), listed):
        if member.get("fname", "").endswith(".json"):
            try:
                yield json.loads(member["data"])
            except json.JSONDecodeError as error:
                raise _unreadable_member(member["__url__"], member["fname"], error) from None


def find_samples(shards: Shards, subsets: list[str], wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The samples with these keys, looked for in the subsets in order until all are found, their
    members as stored (bytes; JSON decoded), by key. Only the wanted members are read: a report's
    handful of pictures costs a pass over the tar headers, not a decode of every image."""
    found: dict[str, dict[str, Any]] = {}
    for subset in subsets:
        for path in shards.paths(subset):
            if wanted <= found.keys():
                return found
            with tarfile.open(path) as archive:
                for member in archive:
                    key, extension = sample_key(member.name), member.name.partition(".")[2]
                    if member.isfile() and key in wanted:
                        data = archive.extractfile(member).read()
                        found.setdefault(key, {"__key__": key})[extension] = json.loads(data) if extension == "json" else data
    return found


def batched(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
