"""famevil index: a catalogue's images embedded once, by product, for text, similar-item and composed search."""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import PartialState
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
from data_specs.manifest import InputRef, Manifest, write_manifest
from data_specs.staging import Staging, check_destination, size_and_mtime, staging
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
from famevil.processes import launched, on_main, threads_of_one_process
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
    tensors = {name: v.half().cpu().contiguous() for name, v in vectors.items()}
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


def _product_vectors(
    model: FashionModel, items: list[dict], views: list[list[int]], image_vectors: torch.Tensor, text_weight: float, batch_size: int
) -> torch.Tensor:
    """Per product (views: each product's items, in order of first appearance): normalize((1 - w) * the mean
    of its views' image vectors + w * the text vector of its "title. description"), as Marqo's product documents weight them."""
    texts = [product_text(items[numbers[0]]) for numbers in views]
    text_vectors = torch.cat([model.encode_texts(texts[start : start + batch_size]).cpu() for start in range(0, len(texts), batch_size)])
    image_means = torch.stack([image_vectors[numbers].float().mean(0) for numbers in views])
    return torch.nn.functional.normalize((1 - text_weight) * image_means + text_weight * text_vectors, dim=-1)


@dataclass(frozen=True)
class _Run:
    """The run the main process planned, as every process sees it: the images, and in the staging folder a
    chunk file per batch of batch_size images (the last one maybe fewer), whatever the process count."""

    stage: Staging
    listed: ImageList
    searches: tuple[str, ...]
    batch_size: int
    thumbnail: int
    chunks: list[Path]
    resumed: int  # chunks an interrupted run had finished

    @property
    def names(self) -> tuple[str, ...]:
        """The vectors each image gets."""
        return (IMAGE_VECTORS, COMPOSED_VECTORS) if COMPOSED_SEARCH in self.searches else (IMAGE_VECTORS,)

    def batch(self, number: int) -> list[Listed]:
        return self.listed.items[number * self.batch_size : (number + 1) * self.batch_size]


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
) -> IndexResult | None:
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
    --approximate then read memory-mapped (without it they build one in memory at start; docs/benchmarks.md
    has its size and speed at a million items). Images stand upright as their EXIF orientation says. Skipped rows and unreadable files are counted
    and listed (skipped.jsonl, with file and row). Resumable batch by batch: rerun the same command
    after an interruption. The index works from any folder: it records the images root and the model
    as absolute paths. Several processes (GPUs, or CPU processes where there are none) share the batches
    and write the index one process writes: `accelerate launch --multi_gpu --num_processes 2 -m
    famevil_cli index ...` (docs/shop.md).

    Example (seconds on a laptop CPU, after famevil distill; the FashionIQ images famevil synth made):

        famevil index --model runs/example/student \\
            --images runs/example/raw/fashioniq/images --out runs/example/index
    """
    processes = launched()
    threads_of_one_process(processes)  # a batch's vectors, byte for byte, whatever the process count
    on_main(processes, lambda: _check_options(model, images, out, catalogue, text_weight, approximate, overwrite))
    loaded, model_input = open_model(model, processes.device)
    plan = {"model": model_input.id, "batch_size": batch_size, "thumbnail": thumbnail, "text_weight": text_weight}
    searches = loaded.require_search()
    started = time.perf_counter()
    with ExitStack() as stack:
        run = on_main(processes, lambda: _stage(stack, out, _listing(images, catalogue), plan, searches))
        _embed(processes, loaded, run)
        processes.wait_for_everyone()  # every chunk is written
        result = on_main(processes, lambda: _publish(run, loaded, model_input, catalogue, text_weight, approximate, started))
    return result if processes.is_main_process else None


def _check_options(model: Path | str, images: Path, out: Path, catalogue: Path | None, text_weight: float, approximate: bool, overwrite: bool) -> None:
    check_destination(out, overwrite, inputs=tuple(path for path in (model, images, catalogue) if path is not None))
    if approximate:
        approximate_files.faiss_module()  # one line now, not after the images are embedded, when FAISS is missing
    if not 0 <= text_weight <= 1:
        raise FamevilError(f"--text-weight {text_weight}: give a weight from 0 (image vectors only) to 1 (text only)")
    if text_weight and catalogue is None:
        raise FamevilError("--text-weight needs --catalogue: a product vector weights in its title and description, which only a catalogue gives")


def _listing(images: Path, catalogue: Path | None) -> ImageList:
    listed = list_images(images) if catalogue is None else list_catalogue(catalogue, images)
    if not listed.items and not listed.refused:
        raise FamevilError(f"--images {images}: no image files found ({', '.join(IMAGE_SUFFIXES)})")
    return listed


def _stage(stack: ExitStack, out: Path, listed: ImageList, plan: dict, searches: tuple[str, ...]) -> _Run:
    """Open the staging folder (on the main process, holding it until `stack` closes) with its chunk folder,
    which keeps the chunks of an interrupted run of the same plan."""
    # A changed, added or removed file or row makes earlier chunks stale: the plan holds every row and every file's size and mtime.
    rows = [[asdict(entry), *size_and_mtime(listed.root / entry.path)] for entry in listed.items]
    fingerprint = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    stage = stack.enter_context(staging(out, plan | {"images": fingerprint}))
    chunk_dir = stage.partial / CHUNKS_DIR
    chunk_dir.mkdir(exist_ok=True)
    batch_size = plan["batch_size"]
    chunks = [chunk_dir / f"{number:06d}.safetensors" for number in range(-(-len(listed.items) // batch_size))]
    return _Run(stage, listed, searches, batch_size, plan["thumbnail"], chunks, resumed=sum(chunk.is_file() for chunk in chunks))


def _embed(processes: PartialState, model: FashionModel, run: _Run) -> None:
    """Write this process's chunks, those whose number % the process count is its rank, but those an
    interrupted run finished. The progress bar, on the main process only, counts its own chunks' images."""
    mine = range(processes.process_index, len(run.chunks), processes.num_processes)
    with progress_bar("index", sum(len(run.batch(number)) for number in mine), unit="images", enabled=processes.is_main_process) as advance:
        for number in mine:
            if not run.chunks[number].is_file():
                _write_chunk(run.chunks[number], model, run.listed, run.batch(number), run.names, run.thumbnail)
            advance(len(run.batch(number)))


def _publish(
    run: _Run, model: FashionModel, model_input: InputRef, catalogue: Path | None, text_weight: float, approximate: bool, started: float
) -> IndexResult:
    """Merge the chunks into the index, write its manifest and move it into place (main process only)."""
    tensors, items, skipped = _merge(run.chunks, run.names, run.listed.refused)
    views = list(product_views(items).values())
    if text_weight:
        tensors[PRODUCT_VECTORS] = _product_vectors(model, items, views, tensors[IMAGE_VECTORS], text_weight, run.batch_size).half()
    write_index_files(run.stage.partial, tensors, items, skipped, views)
    if approximate:
        for name in (*run.names, PRODUCT_VECTORS) if text_weight else run.names:
            approximate_files.write(run.stage.partial, name, approximate_files.build(tensors[name]))
    for chunk in run.chunks:
        chunk.unlink()
    (run.stage.partial / CHUNKS_DIR).rmdir()
    details = {
        "images": str(run.listed.root),
        "catalogue": None if catalogue is None else str(catalogue.absolute()),
        "searches": list(run.searches),
        "text_weight": text_weight,
        "items": len(items),
        "products": len(views),
        "skipped": len(skipped),
        "dim": model.network.embed_dim,
        "thumbnail": run.thumbnail,
        "approximate": approximate,
    }
    manifest = write_manifest(run.stage.partial, "index", inputs=[model_input], details=details)
    run.stage.publish()
    return IndexResult(run.stage.destination, manifest, details["items"], details["products"], skipped, run.resumed, time.perf_counter() - started)
