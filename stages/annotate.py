"""famevil annotate: a catalogue enriched with a caption, subcategories and attributes per product."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from data_specs.annotations import ANNOTATIONS_FILE, CSV_COLUMNS, SKIPPED_FILE, SUBCATEGORY_TEMPLATE, TABLE_FILE, LabelChoice, read_attributes
from data_specs.errors import FamevilError, FamevilWarning
from data_specs.manifest import InputRef, Manifest, file_sha256, write_manifest
from data_specs.staging import check_destination, size_and_mtime, staging
from famevil.api import FashionModel, LabelSet, Prediction
from famevil.catalogue_index import IMAGE_SUFFIXES, list_images
from famevil.checkpoint import load_checkpoint, require_checkpoint
from famevil.data.catalogue import CATALOGUE, UnusableRow, read_table, record_text, row_image
from famevil.data.fashiongen import clean_text
from famevil.data.images import ImageError, decode_image
from famevil.progress import progress_bar
from famevil.tasks import find_task
from famevil.tasks.base import Task
from famevil.tasks.fic import Captioning
from famevil.tasks.product_text import product_text
from famevil.tasks.scr import SubcategoryRecognition
from famevil.tasks.xmr import CrossModalRetrieval
from famevil.text.captions import degenerate_warning

CHUNKS_DIR = "chunks"  # the staging directory's finished batches, merged when all are done
ZERO_SHOT = "zero-shot"  # subcategories_by for labels scored against the image alone


@dataclass(frozen=True)
class CatalogueProduct:
    """A product to annotate: its first catalogue row that names an image."""

    line: int | None  # its row in the catalogue; None for an image of a folder read without one
    product_id: str  # its product_id, or its image when it has none
    image: str  # as the catalogue names it, relative to --images
    text: str  # "title. description" as SCR reads it; "" when the row has neither


@dataclass(frozen=True)
class Annotator:
    """What this model annotates: each capability decided once, before any image is read."""

    model: FashionModel
    captions: bool
    recognition: Task | None  # the model's SCR task: subcategories of products with text
    zero_shot_subcategories: LabelSet | None  # encoded once, for products SCR cannot take (no text, or no SCR)
    zero_shot_from: str  # where those labels come from: SCR's vocabulary, --labels or the catalogue
    attributes: dict[str, LabelSet]  # each encoded once
    top: int
    max_new_tokens: int | None  # a caption's length limit; None: the text context


@dataclass(frozen=True)
class AnnotateResult:
    out: Path
    manifest: Manifest
    products: int
    skipped: list[dict[str, Any]]  # {"file", "line", "reason", "detail"} of each row not annotated
    resumed_chunks: int
    seconds: float


def annotate(
    model: Path,
    images: Path,
    out: Path,
    catalogue: Path | None = None,
    attributes: Path | None = None,
    labels: list[str] | None = None,
    top: int = 3,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    overwrite: bool = False,
) -> AnnotateResult:
    """Enrich a catalogue: per product a caption, its top subcategories and each attribute's label.

    --catalogue FILE is read as `famevil prepare --catalogue` reads it (CSV or JSON Lines, column names in
    any case; only `image` is required here, a path relative to --images that stays inside it). Rows sharing
    a product_id are views of one product, annotated once from its first row that names an image (without a
    product_id, each row is a product). Without --catalogue, each image file under --images is a product
    without text.

    Subcategories: SCR from the image and "title. description" when the model has SCR and the row has
    text; otherwise zero-shot from the image against the model's SCR vocabulary, or when it has none against
    --labels, else the catalogue's own subcategory values (zero-shot needs cross-modal retrieval).
    --attributes FILE holds label sets, such as {"colour": ["black", "white"], "sleeve": {"labels": ["short",
    "long"], "template": "a photo of a garment with {} sleeves"}}: each attribute's most likely label, with
    its probability (zero-shot). A model annotates what it was trained for (no captioning: no caption); the
    manifest says what was done.

    Writes annotations.jsonl and annotations.csv. Rows without an image, and products whose image is
    missing or cannot be decoded, are skipped and listed with their line and reason (skipped.jsonl).
    Resumable batch by batch: rerun the same command.

    Example (seconds on a laptop CPU, after famevil distill; the FashionIQ images famevil synth made, each
    a product; with your own catalogue add --catalogue products.csv):

        famevil annotate --model runs/example/student \\
            --images runs/example/raw/fashioniq/images \\
            --out runs/example/annotations
    """
    check_destination(out, overwrite, inputs=(model, catalogue, images, attributes))
    if catalogue is not None and not catalogue.is_file():
        raise FamevilError(f"--catalogue {catalogue}: no such file")
    if not images.is_dir():
        raise FamevilError(f"--images {images}: no such directory; point it at the folder the catalogue's image paths are relative to")
    choices = read_attributes(attributes) if attributes is not None else {}
    products, skipped_rows, catalogue_labels = _read_products(catalogue) if catalogue is not None else (_folder_products(images), [], [])
    model_manifest = require_checkpoint(model)
    loaded = FashionModel(load_checkpoint(model, model_manifest), model)
    annotator = _annotator(loaded, choices, attributes, labels, catalogue_labels, top, max_new_tokens)
    inputs = _inputs(model, model_manifest, images, products, catalogue, attributes)
    # As the staging plan reads back from JSON (tuples as lists), so that an unchanged rerun resumes.
    plan = json.loads(json.dumps({"inputs": [ref.id for ref in inputs], "settings": _settings(annotator), "batch_size": batch_size}))
    started = time.perf_counter()
    with staging(out, plan) as stage:
        chunk_dir = stage.partial / CHUNKS_DIR
        chunk_dir.mkdir(exist_ok=True)
        chunks, resumed = _annotate_in_chunks(chunk_dir, annotator, catalogue, images, products, batch_size)
        annotated, skipped = _merge(chunks, stage.partial, annotator, skipped_rows)
        _warn_of_degenerate_captions(annotated, model)
        for chunk in chunks:
            chunk.unlink()
        chunk_dir.rmdir()
        manifest = write_manifest(stage.partial, "annotations", inputs=inputs, details=_details(annotator, annotated, skipped))
        stage.publish()
    return AnnotateResult(out, manifest, len(annotated), skipped, resumed, time.perf_counter() - started)


def _inputs(
    model: Path, model_manifest: Manifest, images: Path, products: list[CatalogueProduct], catalogue: Path | None, attributes: Path | None
) -> list[InputRef]:
    """What the annotations were made from. A changed, added or removed image makes earlier batches
    stale: the images' id holds every annotated file's size and mtime."""
    files = [images / product.image for product in products]
    fingerprint = hashlib.sha256(json.dumps([[str(file), *size_and_mtime(file)] for file in files]).encode()).hexdigest()
    inputs = [InputRef("model", model_manifest.kind, model_manifest.content_id, str(model))]
    if catalogue is not None:
        inputs.append(InputRef(CATALOGUE, f"catalogue-{catalogue.suffix.lower().lstrip('.')}", "sha256:" + file_sha256(catalogue), str(catalogue)))
    inputs.append(InputRef("images", "image-folder", "fingerprint:" + fingerprint, str(images)))
    if attributes is not None:
        inputs.append(InputRef("attributes", "attributes-json", "sha256:" + file_sha256(attributes), str(attributes)))
    return inputs


def _annotate_in_chunks(
    chunk_dir: Path, annotator: Annotator, catalogue: Path | None, images: Path, products: list[CatalogueProduct], batch_size: int
) -> tuple[list[Path], int]:
    """Each batch's chunk, written unless an earlier run of the same plan finished it; and how many it had."""
    chunks, resumed = [], 0
    with progress_bar("annotate", len(products), unit="products") as advance:
        for number, start in enumerate(range(0, len(products), batch_size)):
            chunk, batch = chunk_dir / f"{number:06d}.json", products[start : start + batch_size]
            chunks.append(chunk)
            if chunk.is_file():
                resumed += 1
            else:
                _write_chunk(chunk, annotator, catalogue, images, batch)
            advance(len(batch))
    return chunks, resumed


# The catalogue -------------------------------------------------------------------------------------


def _read_products(catalogue: Path) -> tuple[list[CatalogueProduct], list[dict[str, Any]], list[str]]:
    """Each product's first usable row, the rows skipped, and the catalogue's own subcategory values."""
    records, unreadable, columns = read_table(catalogue, CATALOGUE)
    if "image" not in columns:
        raise FamevilError(f"{catalogue}: no column image (found: {', '.join(sorted(columns)) or 'none'}); a catalogue names each row's image path in 'image'")
    skipped = [_skipped(catalogue, row.line, row.reason, row.detail) for row in unreadable]
    products: dict[str, CatalogueProduct] = {}
    subcategories: dict[str, str] = {}  # by lower case: "Dress" and "dress" are one label
    for line, record in records:
        try:
            product = _product(line, record)
            subcategory = clean_text(record_text(record, "subcategory"))
        except UnusableRow as bad:
            skipped.append(_skipped(catalogue, line, bad.reason, bad.detail))
            continue
        products.setdefault(product.product_id, product)
        if subcategory:
            subcategories.setdefault(subcategory.lower(), subcategory)
    skipped.sort(key=lambda row: row["line"])
    if not products:
        raise FamevilError(f"--catalogue {catalogue}: no row names an image ({_first_skipped(skipped)})" if skipped else f"--catalogue {catalogue}: no rows")
    return list(products.values()), skipped, list(subcategories.values())


def _folder_products(images: Path) -> list[CatalogueProduct]:
    """Without a catalogue, each image file under the folder is a product of its own, without text."""
    names = [listed.path for listed in list_images(images).items]  # relative to the folder
    if not names:
        raise FamevilError(f"--images {images}: no image files found ({', '.join(IMAGE_SUFFIXES)}); give --catalogue FILE to name them")
    return [CatalogueProduct(None, name, name, "") for name in names]


def _product(line: int, record: dict[str, Any]) -> CatalogueProduct:
    image = row_image(record)
    title, description = clean_text(record_text(record, "title")), clean_text(record_text(record, "description"))
    text = product_text({"title": title, "description": description}) if title or description else ""
    return CatalogueProduct(line, record_text(record, "product_id") or image, image, text)


def _skipped(file: Path, line: int | None, reason: str, detail: str = "") -> dict[str, Any]:
    """skipped.jsonl's entry: the catalogue and its row, or without a catalogue the image file."""
    return {"file": str(file), "line": line, "reason": reason, "detail": detail}


def _first_skipped(skipped: list[dict[str, Any]]) -> str:
    first = skipped[0]
    where = f"{first['file']}, line {first['line']}" if first["line"] else first["file"]
    return f"{len(skipped)} skipped, the first: {where}: {first['reason']}"


# What the model annotates --------------------------------------------------------------------------


def _task_of(model: FashionModel, kind: type[Task]) -> Task | None:
    return next((task for name in model.tasks if isinstance(task := find_task(name), kind)), None)


def _annotator(
    model: FashionModel,
    attributes: dict[str, LabelChoice],
    attributes_file: Path | None,
    labels: list[str] | None,
    catalogue_labels: list[str],
    top: int,
    max_new_tokens: int | None,
) -> Annotator:
    """What the model can do with this catalogue, refused in one line when it can do nothing asked of it."""
    recognition = _task_of(model, SubcategoryRecognition)
    retrieval = _task_of(model, CrossModalRetrieval) is not None
    if not retrieval and (attributes or labels):
        flag = "--attributes" if attributes else "--labels"
        raise FamevilError(f"{flag}: zero-shot labels need a model trained for cross-modal retrieval; {model.source} has: {', '.join(model.tasks)}")
    if recognition is not None and labels:
        raise FamevilError(f"--labels: {model.source} has its own subcategory vocabulary (SCR), which annotate uses; drop --labels")
    vocabulary = model.network.config.vocabularies.get(recognition.vocabulary) if recognition is not None else None
    names, source = _zero_shot_labels(labels, vocabulary, catalogue_labels)
    # Zero-shot chooses among two labels or more: a catalogue of one subcategory has nothing to choose.
    usable = retrieval and (len(names) > 1 or bool(labels))
    subcategories = _encoded(model, source, LabelChoice(tuple(names), (SUBCATEGORY_TEMPLATE,))) if usable else None
    captions = _task_of(model, Captioning) is not None
    if not (captions or recognition or subcategories or attributes):
        raise FamevilError(
            f"{model.source}: nothing to annotate: it has no captioning, no SCR, and no labels to score; use a student, or give --labels with an XMR model"
        )
    encoded = {name: _encoded(model, f"{attributes_file}: attribute {name!r}", choice) for name, choice in attributes.items()}
    return Annotator(model, captions, recognition, subcategories, source if subcategories else "", encoded, top, max_new_tokens)


def _encoded(model: FashionModel, where: str, choice: LabelChoice) -> LabelSet:
    """Labels encoded once for zero-shot; a problem with them (empty, repeated, a template without its
    {}) is one line naming where they were written."""
    try:
        return model.label_set(choice.labels, choice.templates)
    except FamevilError as error:
        raise FamevilError(f"{where}: {error}") from None


def _zero_shot_labels(labels: list[str] | None, vocabulary: list[str] | None, catalogue_labels: list[str]) -> tuple[list[str], str]:
    """The subcategories zero-shot chooses among, and where they come from."""
    if labels:
        return labels, "--labels"
    if vocabulary:
        return vocabulary, "the model's SCR vocabulary"
    return catalogue_labels, "the catalogue's subcategory column"


def _settings(annotator: Annotator) -> dict[str, Any]:
    """What decides the annotations besides the inputs: a rerun with other settings starts over."""
    zero_shot = annotator.zero_shot_subcategories
    return {
        "captions": annotator.captions,
        "max_new_tokens": annotator.max_new_tokens,
        "recognition": annotator.recognition is not None,
        "zero_shot_subcategories": list(zero_shot.labels) if zero_shot else None,
        "attributes": {name: list(labels.labels) for name, labels in annotator.attributes.items()},
        "top": annotator.top,
    }


# A batch -------------------------------------------------------------------------------------------


def _write_chunk(path: Path, annotator: Annotator, catalogue: Path | None, images: Path, batch: list[CatalogueProduct]) -> None:
    readable, pictures, skipped = [], [], []
    for product in batch:
        try:
            pictures.append(_read_picture(images / product.image))
            readable.append(product)
        except UnusableRow as bad:
            detail = f"{product.image}: {bad.detail}" if bad.detail else product.image
            skipped.append(_skipped(catalogue or images / product.image, product.line, bad.reason, detail))
    annotations = _annotations(annotator, readable, pictures) if readable else []
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps({"annotations": annotations, "skipped": skipped}, ensure_ascii=False), encoding="utf-8")
    partial.replace(path)


def _read_picture(path: Path) -> Image.Image:
    """The image upright and in RGB; its problem in prepare's words (missing or unreadable image)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnusableRow("missing image") from None
    except OSError as error:
        raise UnusableRow("unreadable image", error.strerror or str(error)) from None
    try:
        return decode_image(data, str(path))
    except ImageError as error:
        raise UnusableRow("unreadable image", error.reason) from None


def _annotations(annotator: Annotator, products: list[CatalogueProduct], pictures: list[Image.Image]) -> list[dict[str, Any]]:
    model = annotator.model
    records = [{"product_id": product.product_id, "image": product.image} for product in products]
    if annotator.captions:
        with warnings.catch_warnings():  # degenerate captions are warned of once, for the whole catalogue (_warn_of_degenerate_captions)
            warnings.simplefilter("ignore", FamevilWarning)
            captions = model.caption(pictures, max_new_tokens=annotator.max_new_tokens, batch_size=len(pictures))
        for record, caption in zip(records, captions, strict=True):
            record["caption"] = caption
    # Every zero-shot label set scores the same image embeddings: each picture is encoded once for them all.
    zero_shots = annotator.attributes or annotator.zero_shot_subcategories is not None
    vectors = model.encode_images(pictures, batch_size=len(pictures)) if zero_shots else None
    subcategories = _subcategories(annotator, products, pictures, vectors)
    attributes = {name: model.score_labels(vectors, labels, 1) for name, labels in annotator.attributes.items()}
    for i, record in enumerate(records):
        if i in subcategories:
            decided_by, predictions = subcategories[i]
            record |= {"subcategories_by": decided_by, "subcategories": _listed(predictions)}
        record["attributes"] = {name: _listed(predictions[i])[0] for name, predictions in attributes.items()}
    return records


def _subcategories(
    annotator: Annotator, products: list[CatalogueProduct], pictures: list[Image.Image], vectors: torch.Tensor | None
) -> dict[int, tuple[str, list[Prediction]]]:
    """By the product's place in the batch, how its subcategories were decided and them: SCR for those with
    text when the model has it, zero-shot (on the pictures' embeddings, `vectors`) for the others when it can."""
    model, top = annotator.model, annotator.top
    with_text = [i for i, product in enumerate(products) if product.text] if annotator.recognition else []
    recognised = _classify(model, [pictures[i] for i in with_text], [products[i].text for i in with_text], top)
    decided = {i: (annotator.recognition.name, predictions) for i, predictions in zip(with_text, recognised, strict=True)}
    rest = [i for i in range(len(products)) if i not in decided]
    if annotator.zero_shot_subcategories is not None and rest:
        guessed = model.score_labels(vectors[rest], annotator.zero_shot_subcategories, top)
        decided |= {i: (ZERO_SHOT, predictions) for i, predictions in zip(rest, guessed, strict=True)}
    return decided


def _classify(model: FashionModel, pictures: list[Image.Image], texts: list[str], top: int) -> list[list[Prediction]]:
    return model.classify(pictures, texts, top=top, batch_size=len(pictures)) if pictures else []  # a batch may have no product with text


def _warn_of_degenerate_captions(annotations: list[dict[str, Any]], model: Path) -> None:
    warning = degenerate_warning([record["caption"] for record in annotations if "caption" in record], str(model))
    if warning is not None:
        warnings.warn(warning, FamevilWarning, stacklevel=3)


def _listed(predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    return [{"label": p.label, "probability": round(p.probability, 4)} for p in predictions]


# The artifact --------------------------------------------------------------------------------------


def _merge(chunks: list[Path], out: Path, annotator: Annotator, skipped_rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The batches as the artifact's files; the catalogue rows never read head skipped.jsonl."""
    annotations, skipped = [], list(skipped_rows)
    for chunk in chunks:
        batch = json.loads(chunk.read_text(encoding="utf-8"))
        annotations += batch["annotations"]
        skipped += batch["skipped"]
    skipped.sort(key=lambda row: row["line"] or 0)
    if not annotations:
        raise FamevilError(f"none of the products could be annotated ({_first_skipped(skipped)}); nothing to write")
    _write_lines(out / ANNOTATIONS_FILE, annotations)
    _write_lines(out / SKIPPED_FILE, skipped)
    (out / TABLE_FILE).write_text(_table(annotator, annotations), encoding="utf-8")
    return annotations, skipped


def _write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as lines:
        lines.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _table(annotator: Annotator, annotations: list[dict[str, Any]]) -> str:
    """annotations.csv: one row per product, each subcategory and attribute in its own columns."""
    subcategories = annotator.recognition is not None or annotator.zero_shot_subcategories is not None
    columns = [c for c in CSV_COLUMNS if (c != "caption" or annotator.captions) and (c != "subcategories_by" or subcategories)]
    ranks = range(1, annotator.top + 1) if subcategories else range(0)
    columns += [f"subcategory_{rank}{part}" for rank in ranks for part in ("", "_probability")]
    columns += [f"{name}{part}" for name in annotator.attributes for part in ("", "_probability")]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for record in annotations:
        row = {column: record.get(column, "") for column in CSV_COLUMNS}
        for rank, prediction in enumerate(record.get("subcategories", []), start=1):
            row |= {f"subcategory_{rank}": prediction["label"], f"subcategory_{rank}_probability": prediction["probability"]}
        for name, prediction in record["attributes"].items():
            row |= {name: prediction["label"], f"{name}_probability": prediction["probability"]}
        writer.writerow({column: row.get(column, "") for column in columns})
    return text.getvalue()


def _details(annotator: Annotator, annotations: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> dict[str, Any]:
    zero_shot = annotator.zero_shot_subcategories
    return {
        "products": len(annotations),
        "captions": annotator.captions,
        "subcategories_by": dict(Counter(record["subcategories_by"] for record in annotations if "subcategories_by" in record)),
        "zero_shot_labels": list(zero_shot.labels) if zero_shot else [],
        "zero_shot_labels_from": annotator.zero_shot_from,
        "attributes": {name: list(labels.labels) for name, labels in annotator.attributes.items()},
        "top": annotator.top,
        "skipped": {"listed_in": SKIPPED_FILE, "reasons": dict(Counter(row["reason"] for row in skipped))},
    }
