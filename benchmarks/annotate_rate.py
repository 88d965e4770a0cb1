"""`famevil annotate`'s products/s against the model's raw caption + classify + zero-shot rate on the same images.

Raw: the model's own calls (famevil.load) on each batch of images, decoded once: caption; classify
with each product's text; zero-shot of the subcategories (the model's SCR vocabulary) and of each
attribute, their labels encoded once beforehand and the images once for all of them; nothing written. annotate: the stage on a catalogue
CSV of the same images and texts (read, annotate, write annotations.jsonl, .csv and the manifest),
its own seconds (after loading the model, as raw's). The target is at least 80% of raw. Also where
raw's time goes, call by call.

Half the products have text (SCR) and half none (zero-shot subcategories), as a shop's catalogue
with missing copy would; raw classifies and zero-shots the same halves.

    python benchmarks/annotate_rate.py --model runs/demo/seed-0/student --images runs/demo/raw/fashioniq/images
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import famevil
from famevil.api import read_image
from famevil.catalogue_index import list_images
from stages.annotate import annotate

ATTRIBUTES = {
    "colour": ["black", "white", "grey", "navy", "blue", "red", "pink", "green", "beige", "brown"],
    "pattern": ["solid", "striped", "polka-dot", "checked"],
    "sleeve": {"labels": ["sleeveless", "short", "long"], "template": "a photo of a garment with {} sleeves"},
}


def product_text(number: int) -> str:
    """Every other product has copy, as a catalogue with gaps does."""
    return f"Item {number}. A garment from the catalogue." if number % 2 == 0 else ""


def raw_rate(model: famevil.FashionModel, images: list[Path], batch_size: int, top: int, max_new_tokens: int | None) -> tuple[float, dict[str, float]]:
    subcategories = model.label_set(model.network.config.vocabularies["subcategory"])
    attributes = {
        name: model.label_set(spec["labels"], [spec["template"]]) if isinstance(spec, dict) else model.label_set(spec, ["a photo of a {} garment"])
        for name, spec in ATTRIBUTES.items()
    }
    spent: dict[str, float] = defaultdict(float)

    def timed(part: str, call, *args, **kwargs):
        began = time.perf_counter()
        result = call(*args, **kwargs)
        spent[part] += time.perf_counter() - began
        return result

    began = time.perf_counter()
    for start in range(0, len(images), batch_size):
        numbers = range(start, min(start + batch_size, len(images)))
        pictures = timed("read", list, map(read_image, images[start : start + batch_size]))
        texts = [product_text(n) for n in numbers]
        with_text = [i for i, text in enumerate(texts) if text]
        without = [i for i, text in enumerate(texts) if not text]
        timed("caption", model.caption, pictures, max_new_tokens=max_new_tokens)
        if with_text:  # classify takes no empty batch
            timed("classify", model.classify, [pictures[i] for i in with_text], [texts[i] for i in with_text], top=top)
        vectors = timed("zero-shot image embeddings", model.encode_images, pictures, batch_size=batch_size)  # once for every label set
        timed("zero-shot subcategories", model.score_labels, vectors[without], subcategories, top=top)
        for labels in attributes.values():
            timed("zero-shot attributes", model.score_labels, vectors, labels, top=1)
    return len(images) / (time.perf_counter() - began), spent


def write_catalogue(images: list[Path], work: Path) -> tuple[Path, Path, Path]:
    folder = work / "images"
    folder.mkdir()
    for image in images:
        (folder / image.name).symlink_to(image.resolve())
    catalogue = work / "products.csv"
    with open(catalogue, "w", newline="", encoding="utf-8") as file:
        rows = [[image.name, *(product_text(n).split(". ", 1) if product_text(n) else ["", ""])] for n, image in enumerate(images)]
        csv.writer(file).writerows([["image", "title", "description"], *rows])
    attributes = work / "attributes.json"
    attributes.write_text(json.dumps(ATTRIBUTES), encoding="utf-8")
    return folder, catalogue, attributes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint with captioning, SCR and cross-modal retrieval (the student)")
    parser.add_argument("--images", type=Path, required=True, help="a folder of images")
    parser.add_argument("--count", type=int, default=256, help="products (images) to annotate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="caption length limit (default: the text context, as annotate's)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, interleaved; the best of each counts (a shared machine's noise)")
    args = parser.parse_args()
    torch.manual_seed(0)
    listed = list_images(args.images)
    images = [listed.root / item.path for item in listed.items][: args.count]
    model = famevil.load(args.model)
    model.caption(images[:2], max_new_tokens=2)  # warm up
    raws, stages = [], []
    with tempfile.TemporaryDirectory() as scratch:
        folder, catalogue, attributes = write_catalogue(images, Path(scratch))
        for repeat in range(args.repeats):
            rate, spent = raw_rate(model, images, args.batch_size, args.top, args.max_new_tokens)
            raws.append(rate)
            out = Path(scratch) / f"annotations-{repeat}"
            result = annotate(
                args.model,
                folder,
                out,
                catalogue=catalogue,
                attributes=attributes,
                top=args.top,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
            )
            stages.append(result.products / result.seconds)
            parts = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in spent.items())
            print(f"run {repeat + 1}: raw {rate:.2f} products/s ({parts}); famevil annotate {stages[-1]:.2f} products/s")
    raw, stage = max(raws), max(stages)
    print(
        f"{len(images)} products, batch {args.batch_size}: raw {raw:.2f} products/s, famevil annotate {stage:.2f} products/s ({100 * stage / raw:.0f}% of raw)"
    )


if __name__ == "__main__":
    main()
