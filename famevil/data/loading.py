"""From shards to model inputs: training batches and evaluation samples (the image transforms are famevil.data.transforms)."""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import webdataset as wds

from data_specs.errors import FamevilError
from data_specs.shards import Shards, sample_key

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
    urls = [str(path) for path in shards.paths(subset)]
    stream_seed = seed * 100_003 + epoch  # a different, reproducible draw every epoch

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(" ".join(sample["__key__"] for sample in batch).encode()) + stream_seed)
            return make_batch(batch, transform, tokenize)

    return wds.DataPipeline(
        wds.ResampledShards(urls, seed=stream_seed, deterministic=True),
        wds.tarfile_to_samples(),
        wds.detshuffle(shuffle_buffer, initial=min(shuffle_buffer, 100), seed=stream_seed),
        wds.map(_checked_key),
        wds.map(DECODE),
        wds.batched(batch_size, collation_fn=collate, partial=False),
    ).with_epoch(batches_per_epoch)


def _every_shard(urls: Iterator[dict]) -> Iterator[dict]:
    return urls


def samples(shards: Shards, subset: str) -> Iterator[dict[str, Any]]:
    """Every sample of a subset in shard order, images decoded to PIL, all in this one process (also
    under a multi-process launch, where only the main process evaluates). Each shard must hold the
    samples sizes.json lists."""
    for path, count in shards.listed(subset):
        yield from shard_samples([path], expected=count)


def shard_samples(shards: list[Path], expected: int | None = None) -> Iterator[dict[str, Any]]:
    """Every sample of these shard files, in order, images decoded to PIL; with `expected`, exactly
    that many or an error naming the shards."""
    count = 0
    dataset = wds.WebDataset([str(path) for path in shards], shardshuffle=False, empty_check=False, nodesplitter=_every_shard)
    for sample in dataset.map(_checked_key).map(DECODE):
        count += 1
        yield sample
    if expected is not None and count != expected:
        where = ", ".join(str(path) for path in shards)
        raise FamevilError(f"{where}: {count} samples where sizes.json lists {expected}; rebuild the shards with famevil prepare")


def records(shards: Shards, subset: str) -> Iterator[dict[str, Any]]:
    """Every sample's JSON record of a subset, in shard order, without reading its images."""
    for path in shards.paths(subset):
        with tarfile.open(path) as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".json"):
                    yield json.load(archive.extractfile(member))


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
