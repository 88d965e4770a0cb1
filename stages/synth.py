"""famevil synth: a procedural fashion data set, written in the public FashionGen and FashionIQ layouts."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from data_specs.errors import FamevilError
from data_specs.manifest import Manifest, write_manifest
from data_specs.staging import check_destination, check_file_destination, staging, write_file
from famevil.data.synthetic.products import (
    PRESETS,
    STREAM_RENDER,
    FashionIQSplit,
    Product,
    fashiongen_catalogue,
    fashioniq_catalogue,
)
from famevil.data.synthetic.release import fashiongen_path, write_fashiongen_h5, write_fashioniq
from famevil.data.synthetic.render import contact_sheet as draw_contact_sheet
from famevil.data.synthetic.render import render_garment
from famevil.limits import SYNTH_IMAGE
from famevil.progress import progress_bar
from famevil.tasks import TASKS
from famevil.tasks.base import DatasetFacts
from famevil.tasks.product_text import product_text

CONTACT_SHEET_PRODUCTS = 48
MIN_IMAGE_SIZE = 32  # the smallest image a garment's details (buttons, pockets) still show in


@dataclass(frozen=True)
class SynthResult:
    out: Path
    manifest: Manifest
    sizes: dict[str, Any]  # per source and split
    chance: dict[str, dict[str, float]]  # per task, in percent
    contact_sheet: Path | None


def synth(
    out: Path,
    preset: str = "demo",
    seed: int = 0,
    image_size: int | None = None,
    workers: int | None = None,
    contact_sheet: Path | None = None,
    overwrite: bool = False,
) -> SynthResult:
    """Generate a procedural fashion data set in the public FashionGen and FashionIQ layouts.

    Writes OUT/fashiongen/fashiongen_256_256_{train,validation}.h5 and OUT/fashioniq/{captions,
    image_splits,images}/ exactly as the releases are laid out, so `famevil prepare` reads them
    through the same readers as real data. Garments of 27 subcategories are drawn with visible
    colour, pattern, sleeves, length, neckline, buttons and pockets; near-duplicate products,
    copy with omitted details and distractors, and hard-negative galleries keep every task from
    saturating. Prints each task's size and chance level. The seed fixes everything.

    Presets: tiny (seconds, for tests), demo (the README's pipeline), bench (throughput).

    Example (seconds on a laptop CPU; each command's example goes on from here, in the order
    famevil --help lists them, from synth to serve in runs/example):

        famevil synth --out runs/example/raw --preset tiny --seed 0 \\
            --contact-sheet runs/example/raw-sheet.png
    """
    if preset not in PRESETS:
        raise FamevilError(f"--preset {preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    sizes_of = PRESETS[preset]
    if image_size is not None:
        if not MIN_IMAGE_SIZE <= image_size <= SYNTH_IMAGE.most:
            raise FamevilError(f"--image-size {image_size} is out of range; choose {MIN_IMAGE_SIZE} to {SYNTH_IMAGE.most} pixels ({SYNTH_IMAGE.why})")
        sizes_of = replace(sizes_of, image_size=image_size)
    workers = workers or os.cpu_count() or 1
    check_destination(out, overwrite)
    if contact_sheet is not None:
        check_file_destination(contact_sheet, "--contact-sheet", outputs=[out], make_folder=True)
    fashiongen = fashiongen_catalogue(sizes_of, seed)
    fashioniq = fashioniq_catalogue(sizes_of, seed)
    # Generation is quick: a half-made set is never resumed, always made again.
    with staging(out, {"preset": preset, "seed": seed, "image_size": sizes_of.image_size}, resume=False) as stage:
        (stage.partial / "fashiongen").mkdir()
        total_rows = sum(len(p.views) for products in fashiongen.values() for p in products)
        with progress_bar("FashionGen h5", total_rows) as advance:
            for split_index, (split, products) in enumerate(fashiongen.items()):
                write_fashiongen_h5(
                    fashiongen_path(stage.partial / "fashiongen", split),
                    products,
                    image_size=sizes_of.image_size,
                    seed=[seed, STREAM_RENDER, split_index],
                    workers=workers,
                    on_progress=advance,
                )
        present = sum(image.present for part in fashioniq.values() for image in part.images)
        with progress_bar("FashionIQ images", present) as advance:
            write_fashioniq(stage.partial / "fashioniq", fashioniq, image_size=sizes_of.image_size, seed=seed, workers=workers, on_progress=advance)

        sizes = _sizes(fashiongen, fashioniq)
        chance = _chance(fashiongen, fashioniq, seed)
        details = {"preset": preset, "seed": seed, "image_size": sizes_of.image_size, "sizes": sizes, "chance_percent": chance}
        manifest = write_manifest(stage.partial, "raw-dataset", details=details)
        stage.publish()
    if contact_sheet is not None:
        _save_contact_sheet(contact_sheet, fashiongen["train"], sizes_of.image_size, seed)
    return SynthResult(out, manifest, sizes, chance, contact_sheet)


def _sizes(fashiongen: dict[str, list[Product]], fashioniq: dict[tuple[str, str], FashionIQSplit]) -> dict[str, Any]:
    sizes: dict[str, Any] = {"fashiongen": {}, "fashioniq": {}}
    for split, products in fashiongen.items():
        sizes["fashiongen"][split] = {
            "products": len(products),
            "images": sum(len(p.views) for p in products),
            "subcategories": len({p.garment.subcategory for p in products}),
        }
    for (_group, split), part in fashioniq.items():
        entry = sizes["fashioniq"].setdefault(split, {"triplets": 0, "images": 0, "missing_images": 0})
        entry["triplets"] += len(part.triplets)
        entry["images"] += len(part.images)
        entry["missing_images"] += sum(not image.present for image in part.images)
    return sizes


def _chance(fashiongen: dict[str, list[Product]], fashioniq: dict[tuple[str, str], FashionIQSplit], seed: int) -> dict[str, dict[str, float]]:
    """Chance levels on the evaluation splits (FashionGen validation, FashionIQ val)."""
    train_rows = [p for p in fashiongen["train"] for _ in p.views]
    val_rows = [p for p in fashiongen["val"] for _ in p.views]
    facts = DatasetFacts(
        train_subcategories=[p.garment.subcategory for p in train_rows],
        val_subcategories=[p.garment.subcategory for p in val_rows],
        val_product_ids=[p.product_id for p in val_rows],
        train_texts=[product_text({"title": p.title, "description": p.description}) for p in train_rows],
        val_texts=[product_text({"title": p.title, "description": p.description}) for p in val_rows],
        gallery_sizes={group: sum(image.present for image in part.images) for (group, split), part in fashioniq.items() if split == "val"},
        seed=seed,
    )
    return {task.name: chance for task in TASKS.values() if (chance := task.chance(facts)) is not None}


def _save_contact_sheet(path: Path, products: list[Product], image_size: int, seed: int) -> None:
    """Front and back views of the first products, labelled, for a person to look at."""
    shown = products[:CONTACT_SHEET_PRODUCTS]
    images, labels = [], []
    for index, product in enumerate(shown):
        for view in product.views[:2]:
            images.append(render_garment(product.garment, view, max(image_size, 128), np.random.default_rng([seed, index])))
            labels.append(f"{product.garment.subcategory.lower()} / {product.garment.colour}")
    picture = io.BytesIO()
    sheet_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")  # as saving to the path itself would choose
    draw_contact_sheet(images, labels, columns=8).save(picture, format=sheet_format)
    write_file(path, picture.getvalue(), "--contact-sheet")
