"""famevil index: a catalogue's images embedded once, by product, for text, similar-item and composed search."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from data_specs.errors import FamevilError
from data_specs.indexes import (
    COMPOSED_SEARCH,
    COMPOSED_VECTORS,
    IMAGE_VECTORS,
    PRODUCT_VECTORS,
    THUMBNAIL_BYTES,
    THUMBNAIL_OFFSETS,
)
from data_specs.manifest import Manifest, write_manifest
from data_specs.staging import check_destination, size_and_mtime, staging
from famevil import approximate as approximate_files
from famevil.api import FashionModel
from famevil.catalogue_index import (
    IMAGE_SUFFIXES,
    ImageList,
    Listed,
    list_catalogue,
    list_images,
    open_model,
    product_views,
    read_image_and_hash,
    skipped_entry,
    thumbnail_jpeg,
    write_index_files,
)
from famevil.data.images import ImageError
from famevil.progress import progress_bar
from famevil.tasks.product_text import product_text

CHUNKS_DIR = "chunks"  # the staging directory's finished chunks, merged when all are done


@dataclass(frozen=True)
class IndexResult:
    out: Path
    manifest: Manifest
    items: int
    products: int
    skipped: list[dict]  # skipped.jsonl's entries: file, row, path, reason
    resumed_chunks: int
    seconds: float


def _write_chunk(path: Path, model: FashionModel, listed: ImageList, batch: list[Listed], names: tuple[str, ...], thumbnail: int) -> None:
    images, items, skipped, thumbnails = [], [], [], []
    for entry in batch:
        try:
            image, digest = read_image_and_hash(listed.root / entry.path)
        except (OSError, ImageError) as error:
            skipped.append(skipped_entry(listed.listing, entry.row, entry.path, _unreadable_because(error)))
            continue
        images.append(image)
        items.append({"path": entry.path, "sha256": digest} | entry.product)
        thumbnails.append(thumbnail_jpeg(image, thumbnail))
    width = model.network.embed_dim
    vectors = model.catalogue_vectors(images) if images else {name: torch.zeros(0, width) for name in names}
    lengths = torch.tensor([0] + [len(t) for t in thumbnails])
    tensors = {name: v.half().contiguous() for name, v in vectors.items()}
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


def _merge(chunks: list[Path], names: tuple[str, ...], refused: list[dict]) -> tuple[dict[str, torch.Tensor], list[dict], list[dict]]:
    """The chunks' tensors, items and skipped entries as one; `refused`, the listed rows never read, head the skipped."""
    items: list[dict] = []
    skipped: list[dict] = list(refused)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in (*names, THUMBNAIL_BYTES)}
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
        first = skipped[0]
        raise FamevilError(
            f"--images: none of the {len(skipped)} images could be used (the first: {first['path'] or first['file']}, {first['reason']}); nothing to index"
        )
    return {name: torch.cat(values) for name, values in parts.items()} | {THUMBNAIL_OFFSETS: torch.cat(offsets)}, items, skipped


def _product_vectors(model: FashionModel, items: list[dict], image_vectors: torch.Tensor, text_weight: float, batch_size: int) -> torch.Tensor:
    """Per product (in order of first appearance): normalize((1 - w) * the mean of its views' image
    vectors + w * the text vector of its "title. description"), as Marqo's product documents weight them."""
    views = list(product_views(items).values())
    texts = [product_text(items[numbers[0]]) for numbers in views]
    text_vectors = torch.cat([model.encode_texts(texts[start : start + batch_size]) for start in range(0, len(texts), batch_size)])
    image_means = torch.stack([image_vectors[numbers].float().mean(0) for numbers in views])
    return torch.nn.functional.normalize((1 - text_weight) * image_means + text_weight * text_vectors, dim=-1)


def index(
    model: Path | str,
    images: Path,
    out: Path,
    catalogue: Path | None = None,
    text_weight: float = 0.0,
    batch_size: int = 64,
    thumbnail: int = 96,
    approximate: bool = False,
    overwrite: bool = False,
) -> IndexResult:
    """Embed a catalogue's images once, by product, for text, similar-item and composed search.

    Per image, the index keeps the vectors the model can make (fp16): for text and similar-item search
    (cross-modal retrieval's image embedding), and for composed search where the model has composed
    retrieval (the student has; an XMR teacher has not, and its index answers text and similar-item
    search only). Also a thumbnail, the image's path relative to the images root and its SHA-256.
    --catalogue (CSV or JSON Lines, read as prepare --catalogue reads it; its `image` column relative
    to the --images folder): each image a view of its product, with its product_id, title,
    description, category, subcategory and other columns; views of one product come back from search
    as one result. Without it --images is a folder (searched recursively) or a CSV with an `image`
    column of paths relative to its folder, each image its own product. A path that leaves the folder
    (absolute, or through ..) is never read. --text-weight W (with --catalogue): each product's text
    search vector mixes its views' image vectors with its "title. description" text vector, weight W.
    --approximate: also build FAISS's compact index of each kind of vector, which search and serve
    --approximate then read memory-mapped (a million items: under a minute to build, about 40 bytes an
    item; without it they build one in memory at start). Images stand upright as their EXIF orientation says. Skipped rows and unreadable files are counted
    and listed (skipped.jsonl, with file and row). Resumable batch by batch: rerun the same command
    after an interruption. The index works from any folder: it records the images root and the model
    as absolute paths.

    Example (seconds on a laptop CPU, after famevil distill; the FashionIQ images famevil synth made):

        famevil index --model runs/example/student \\
            --images runs/example/raw/fashioniq/images --out runs/example/index
    """
    check_destination(out, overwrite, inputs=tuple(path for path in (model, images, catalogue) if path is not None))
    if not 0 <= text_weight <= 1:
        raise FamevilError(f"--text-weight {text_weight}: give a weight from 0 (image vectors only) to 1 (text only)")
    if text_weight and catalogue is None:
        raise FamevilError("--text-weight needs --catalogue: a product vector weights in its title and description, which only a catalogue gives")
    loaded, model_input = open_model(model)
    searches = loaded.require_search()
    names = (IMAGE_VECTORS, COMPOSED_VECTORS) if COMPOSED_SEARCH in searches else (IMAGE_VECTORS,)
    listed = list_images(images) if catalogue is None else list_catalogue(catalogue, images)
    if not listed.items and not listed.refused:
        raise FamevilError(f"--images {images}: no image files found ({', '.join(IMAGE_SUFFIXES)})")
    # A changed, added or removed file or row makes earlier chunks stale: the plan holds every row and every file's size and mtime.
    rows = [[asdict(entry), *size_and_mtime(listed.root / entry.path)] for entry in listed.items]
    fingerprint = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    plan = {"model": model_input.id, "images": fingerprint, "batch_size": batch_size, "thumbnail": thumbnail, "text_weight": text_weight}
    if approximate:
        approximate_files.faiss_module()  # one line now, not after the images are embedded, when FAISS is missing
    started = time.perf_counter()
    resumed = 0
    with staging(out, plan) as stage:
        chunk_dir = stage.partial / CHUNKS_DIR
        chunk_dir.mkdir(exist_ok=True)
        chunks = []
        with progress_bar("index", len(listed.items), unit="images") as advance:
            for number, start in enumerate(range(0, len(listed.items), batch_size)):
                chunk, batch = chunk_dir / f"{number:06d}.safetensors", listed.items[start : start + batch_size]
                chunks.append(chunk)
                if chunk.is_file():
                    resumed += 1
                else:
                    _write_chunk(chunk, loaded, listed, batch, names, thumbnail)
                advance(len(batch))
        tensors, items, skipped = _merge(chunks, names, listed.refused)
        if text_weight:
            tensors[PRODUCT_VECTORS] = _product_vectors(loaded, items, tensors[IMAGE_VECTORS], text_weight, batch_size).half()
        write_index_files(stage.partial, tensors, items, skipped)
        if approximate:
            for name in (*names, PRODUCT_VECTORS) if text_weight else names:
                approximate_files.write(stage.partial, name, approximate_files.build(tensors[name]))
        for chunk in chunks:
            chunk.unlink()
        chunk_dir.rmdir()
        details = {
            "images": str(listed.root),
            "catalogue": None if catalogue is None else str(catalogue.absolute()),
            "searches": list(searches),
            "text_weight": text_weight,
            "items": len(items),
            "products": len(product_views(items)),
            "skipped": len(skipped),
            "dim": loaded.network.embed_dim,
            "thumbnail": thumbnail,
            "approximate": approximate,
        }
        manifest = write_manifest(stage.partial, "index", inputs=[model_input], details=details)
        stage.publish()
    return IndexResult(out, manifest, details["items"], details["products"], skipped, resumed, time.perf_counter() - started)
