"""famevil index: a catalogue's images embedded once for text and composed search."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from data_specs.errors import FamevilError
from data_specs.indexes import ITEMS_FILE, SKIPPED_FILE, THUMBNAIL_BYTES, THUMBNAIL_OFFSETS, VECTORS_FILE
from data_specs.manifest import InputRef, Manifest, write_manifest
from data_specs.staging import check_destination, staging
from famevil.api import COMPOSED_SEARCH, TEXT_SEARCH, FashionModel
from famevil.catalogue_index import (
    IMAGE_SUFFIXES,
    list_images,
    read_image_and_hash,
    thumbnail_jpeg,
)
from famevil.checkpoint import load_checkpoint, require_checkpoint
from famevil.data.images import ImageError
from famevil.progress import progress_bar

CHUNKS_DIR = "chunks"  # the staging directory's finished chunks, merged when all are done


@dataclass(frozen=True)
class IndexResult:
    out: Path
    manifest: Manifest
    items: int
    skipped: list[dict[str, str]]  # {"path", "reason"} of each image that could not be read
    resumed_chunks: int
    seconds: float


def _write_chunk(path: Path, model: FashionModel, files: list[Path], thumbnail: int) -> None:
    images, items, skipped, thumbnails = [], [], [], []
    for file in files:
        name = str(file)  # the image as the index lists it
        try:
            image, digest = read_image_and_hash(file)
        except (OSError, ImageError) as error:
            skipped.append({"path": name, "reason": _unreadable_because(error)})
            continue
        images.append(image)
        items.append({"path": name, "sha256": digest})
        thumbnails.append(thumbnail_jpeg(image, thumbnail))
    width = model.network.embed_dim
    vectors = model.catalogue_vectors(images) if images else {kind: torch.zeros(0, width) for kind in (TEXT_SEARCH, COMPOSED_SEARCH)}
    lengths = torch.tensor([0] + [len(t) for t in thumbnails])
    tensors = {kind: v.half().contiguous() for kind, v in vectors.items()}
    tensors[THUMBNAIL_BYTES] = torch.frombuffer(bytearray(b"".join(thumbnails)), dtype=torch.uint8) if thumbnails else torch.zeros(0, dtype=torch.uint8)
    tensors[THUMBNAIL_OFFSETS] = lengths.cumsum(0)
    partial = path.with_name(path.name + ".tmp")
    save_file(tensors, partial, metadata={"items": json.dumps(items), "skipped": json.dumps(skipped)})
    partial.replace(path)


def _unreadable_because(error: OSError | ImageError) -> str:
    """skipped.jsonl's reason: what is wrong with the image, or why its file could not be read."""
    if isinstance(error, ImageError):
        return error.reason
    return "missing" if isinstance(error, FileNotFoundError) else f"unreadable ({error.strerror or error})"


def _merge(chunks: list[Path], out: Path, refused: list[dict[str, str]]) -> tuple[int, list[dict[str, str]]]:
    """The chunks as the index's files; `refused`, the listed paths never read, head skipped.jsonl."""
    items: list[dict] = []
    skipped: list[dict[str, str]] = list(refused)
    parts: dict[str, list[torch.Tensor]] = {TEXT_SEARCH: [], COMPOSED_SEARCH: [], THUMBNAIL_BYTES: []}
    offsets = [torch.zeros(1, dtype=torch.int64)]
    for chunk in chunks:
        with safe_open(chunk, framework="pt") as tensors:
            metadata = tensors.metadata()
            for name in parts:
                parts[name].append(tensors.get_tensor(name))
            offsets.append(tensors.get_tensor(THUMBNAIL_OFFSETS)[1:] + offsets[-1][-1])
        items += json.loads(metadata["items"])
        skipped += json.loads(metadata["skipped"])
    if not items:
        raise FamevilError(
            f"--images: none of the {len(skipped)} images could be read (the first: {skipped[0]['path']}, {skipped[0]['reason']}); nothing to index"
        )
    merged = {name: torch.cat(values) for name, values in parts.items()} | {THUMBNAIL_OFFSETS: torch.cat(offsets)}
    save_file(merged, out / VECTORS_FILE)
    with open(out / ITEMS_FILE, "w", encoding="utf-8") as lines:
        lines.writelines(json.dumps(item | {"id": i}, ensure_ascii=False) + "\n" for i, item in enumerate(items))
    with open(out / SKIPPED_FILE, "w", encoding="utf-8") as lines:
        lines.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in skipped)
    return len(items), skipped


def index(model: Path, images: Path, out: Path, batch_size: int = 64, thumbnail: int = 96, overwrite: bool = False) -> IndexResult:
    """Embed a catalogue's images once for text search and composed search.

    Per image, the index keeps a vector for text search and one for composed search (fp16), a
    thumbnail, the image's path and its SHA-256. The model needs both retrieval tasks (the student
    has them). --images is a folder (searched recursively) or a CSV with an
    `image` column of paths relative to its folder; a path that leaves the folder (absolute, or through
    ..) is never read. Images stand upright as their EXIF orientation says. Unreadable files and paths
    outside are skipped, counted and listed (skipped.jsonl). Resumable batch by batch: rerun the same
    command after an interruption.

    Example (seconds on a laptop CPU, after famevil distill; the FashionIQ images famevil synth made):

        famevil index --model runs/example/student \\
            --images runs/example/raw/fashioniq/images --out runs/example/index
    """
    check_destination(out, overwrite, inputs=(model, images))
    model_manifest = require_checkpoint(model)
    loaded = FashionModel(load_checkpoint(model, model_manifest), model)
    loaded.require_search()
    listed = list_images(images)
    files = listed.files
    if not files and not listed.refused:
        raise FamevilError(f"--images {images}: no image files found ({', '.join(IMAGE_SUFFIXES)})")
    # A changed, added or removed file makes earlier chunks stale: the plan holds every file's size and mtime.
    fingerprint = hashlib.sha256(json.dumps([[str(file), *_stat(file)] for file in files]).encode()).hexdigest()
    inputs = [InputRef("model", model_manifest.kind, model_manifest.content_id, str(model))]
    plan = {"model": model_manifest.content_id, "images": fingerprint, "batch_size": batch_size, "thumbnail": thumbnail}
    started = time.perf_counter()
    resumed = 0
    with staging(out, plan) as stage:
        chunk_dir = stage.partial / CHUNKS_DIR
        chunk_dir.mkdir(exist_ok=True)
        chunks = []
        with progress_bar("index", len(files), unit="images") as advance:
            for number, start in enumerate(range(0, len(files), batch_size)):
                chunk, batch = chunk_dir / f"{number:06d}.safetensors", files[start : start + batch_size]
                chunks.append(chunk)
                if chunk.is_file():
                    resumed += 1
                else:
                    _write_chunk(chunk, loaded, batch, thumbnail)
                advance(len(batch))
        count, skipped = _merge(chunks, stage.partial, listed.refused)
        for chunk in chunks:
            chunk.unlink()
        chunk_dir.rmdir()
        details = {"images": str(images), "items": count, "skipped": len(skipped), "dim": loaded.network.embed_dim, "thumbnail": thumbnail}
        manifest = write_manifest(stage.partial, "index", inputs=inputs, details=details)
        stage.publish()
    return IndexResult(out, manifest, count, skipped, resumed, time.perf_counter() - started)


def _stat(file: Path) -> tuple[int, int]:
    try:
        stat = file.stat()
    except OSError:
        return (-1, -1)  # missing: skipped when read, and a change once it appears
    return (stat.st_size, stat.st_mtime_ns)
