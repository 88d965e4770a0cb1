"""famevil prepare: the public FashionGen and FashionIQ releases (or `famevil synth` output), or a shop's own
catalogue and pairs, to versioned webdataset shards."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError
from data_specs.manifest import MANIFEST_FILE, InputRef, Manifest, read_manifest, release_fingerprint, write_manifest
from data_specs.shards import (
    FASHIONGEN_SPLITS,
    SIZES_FILE,
    SIZES_SCHEMA_VERSION,
    SKIPPED_FILE,
    Vocabulary,
    fashiongen_subset,
    gallery_subset,
    shard_name,
    triplet_subset,
    write_vocab,
)
from data_specs.staging import check_destination, staging
from famevil.data.catalogue import CATALOGUE, PAIRS, SPLIT_COLUMN, summary
from famevil.data.scan import (
    CatalogueItem,
    CatalogueSource,
    FashionGenSource,
    FashionIQSource,
    fashioniq_json_files,
    scan_catalogue,
    scan_fashiongen,
    scan_fashioniq,
)
from famevil.data.shard_writer import (
    DONE_FILE,
    ShardTask,
    chunks,
    training_order,
    write_shards,
)


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    manifest: Manifest
    sizes: dict[str, Any]
    resumed_shards: int
    seconds: float
    notes: tuple[str, ...] = ()  # what a person should know about the data: how it was split, what was skipped


def prepare(
    out: Path,
    fashiongen: Path | None = None,
    fashioniq: Path | None = None,
    catalogue: Path | None = None,
    images: Path | None = None,
    pairs: Path | None = None,
    shard_size: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> PrepareResult:
    """Turn the raw FashionGen h5 files and FashionIQ json + images, or your own catalogue, into
    versioned webdataset shards.

    FashionGen: one sample per image view (image, title, description, category, subcategory,
    product id, view), for XMR, SCR and FIC. FashionIQ: one sample per triplet (reference image,
    target image, two captions, group) for TGIR, and one per gallery image. Label vocabularies
    (train names first, validation-only names after) and sizes.json are stored once for every later
    stage. Either source may be omitted. Training samples are written in a random order fixed by
    --seed (views of one product and neighbours in the release land in different shards, so a
    training batch draws from the whole split, as the authors' random permutation does); validation
    and test samples keep the release's order.

    Your own catalogue (instead of both releases): --catalogue, a .csv or .jsonl file with columns
    image (a path relative to --images), title, description, category, subcategory, and optionally
    product_id (rows sharing one are views of one product) and split (train or val; without it a
    seeded hash of the product sends about 1 in 10 to val). It gives the FashionGen samples. --pairs
    (.csv or .jsonl; columns reference, target, captions, group) gives the FashionIQ ones: reference
    and target are catalogue images as its image column names them, captions one or more texts
    separated by |, and a pair goes to its reference's split. Unusable rows are skipped and listed
    with their line and reason in OUT/skipped.jsonl. For instance: --catalogue products.csv --images
    photos --pairs pairs.csv --out shop-shards.

    Streams the h5 a block at a time (the real train file is tens of GB), encodes images in
    parallel worker processes, and resumes: an interrupted run picks up its finished shards when
    rerun with the same inputs. OUT appears only when complete. FashionIQ triplets whose images
    are missing are skipped, counted and reported.

    Example (seconds on a laptop CPU, after famevil synth):

        famevil prepare --fashiongen runs/example/raw/fashiongen \\
            --fashioniq runs/example/raw/fashioniq --out runs/example/shards
    """
    started = time.perf_counter()
    _check_sources(fashiongen, fashioniq, catalogue, images, pairs)
    if shard_size < 1:
        raise FamevilError(f"--shard-size {shard_size} must be at least 1 sample")
    workers = workers or os.cpu_count() or 1
    check_destination(out, overwrite, inputs=(fashiongen, fashioniq, catalogue, images, pairs))
    inputs: list[InputRef] = []
    tasks: list[ShardTask] = []
    sizes: dict[str, Any] = {"schema_version": SIZES_SCHEMA_VERSION, "subsets": {}, "skipped": {}}
    vocab: dict[str, Vocabulary] = {}
    own: CatalogueSource | None = None

    if fashiongen is not None:
        sources = scan_fashiongen(fashiongen)
        vocab = _vocabularies({source.split: source.labels for source in sources})
        inputs += _input_refs("fashiongen", "fashiongen-h5", fashiongen, [s.path for s in sources])
        tasks += _fashiongen_tasks(sources, vocab, shard_size, seed)
        for source in sources:
            sizes["subsets"][fashiongen_subset(source.split)] = {"samples": source.rows, "products": source.products}
    if fashioniq is not None:
        iq = scan_fashioniq(fashioniq)
        listed = sorted(path for path in (fashioniq / "images").iterdir() if path.is_file())
        inputs += _input_refs("fashioniq", "fashioniq-json", fashioniq, fashioniq_json_files(fashioniq), listed=listed)
        tasks += _fashioniq_tasks(iq, shard_size, seed)
        _add_fashioniq_sizes(sizes, iq)
    if catalogue is not None:
        own = scan_catalogue(catalogue, images, pairs, workers)
        vocab = _vocabularies({split: _labels(items) for split, items in own.views.items()})
        inputs += own.inputs
        tasks += _catalogue_tasks(own.views, vocab, shard_size, seed) + _fashioniq_tasks(own.pairs, shard_size, seed)
        for split, items in own.views.items():
            sizes["subsets"][fashiongen_subset(split)] = {"samples": len(items), "products": len({item.product_id for item in items})}
        _add_fashioniq_sizes(sizes, own.pairs)

    inputs = list(dict.fromkeys(inputs))  # both sources may come from one `famevil synth` artifact
    # Inputs are compared by id, not path: moved sources still resume.
    plan = {"inputs": [asdict(ref) | {"path": None} for ref in inputs], "shard_size": shard_size, "seed": seed, "sizes_schema": SIZES_SCHEMA_VERSION}
    with staging(out, plan) as stage:
        done, resumed = write_shards(stage.partial, tasks, workers, resume=stage.resumed)
        for subset, entry in sizes["subsets"].items():
            entry["shards"] = [{"path": t.relative, "samples": done[t.relative].samples} for t in tasks if t.relative.startswith(subset + "/")]
        if vocab:
            write_vocab(stage.partial, vocab)
            sizes["vocab"] = {name: {"names": len(v.names), "num_train": v.num_train} for name, v in vocab.items()}
        (stage.partial / SIZES_FILE).write_text(json.dumps(sizes, indent=2) + "\n", encoding="utf-8")
        details = {
            "shard_size": shard_size,
            "train_order_seed": seed,
            "subsets": {k: v["samples"] for k, v in sizes["subsets"].items()},
            "skipped": sizes["skipped"],
        }
        if own is not None:
            if own.skipped:
                with open(stage.partial / SKIPPED_FILE, "w", encoding="utf-8") as listing:
                    listing.writelines(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in own.skipped)
            details["catalogue"] = own.details
        manifest = write_manifest(stage.partial, "shards", inputs=inputs, details=details, known_digests={r.path: r.sha256 for r in done.values()})
        # Only now: a run killed before its manifest was written still resumes every finished shard.
        (stage.partial / DONE_FILE).unlink()
        stage.publish()
    notes = _catalogue_notes(own, out) if own is not None else ()
    return PrepareResult(out, manifest, sizes, resumed, time.perf_counter() - started, notes)


def _check_sources(fashiongen: Path | None, fashioniq: Path | None, catalogue: Path | None, images: Path | None, pairs: Path | None) -> None:
    """The releases or a catalogue, not both: each fills the same FashionGen subsets or FashionIQ ones."""
    if catalogue is None:
        if images is not None or pairs is not None:
            raise FamevilError(f"{'--images' if images is not None else '--pairs'} goes with --catalogue FILE; give the catalogue too")
        if fashiongen is None and fashioniq is None:
            raise FamevilError("nothing to prepare: give --fashiongen DIR, --fashioniq DIR or both, or --catalogue FILE --images DIR")
        return
    if fashiongen is not None or fashioniq is not None:
        raise FamevilError("--catalogue replaces --fashiongen and --fashioniq (it fills the same shards); give the releases or the catalogue")
    if images is None:
        raise FamevilError("--catalogue needs --images DIR, the folder its image paths are relative to")


def _input_refs(role: str, kind: str, directory: Path, files: list[Path], listed: list[Path] = ()) -> list[InputRef]:
    """The release files' fingerprint (with the names, sizes and times of `listed`), plus the `famevil
    synth` artifact they came from, if any."""
    refs = [InputRef(role=role, kind=kind, id=release_fingerprint(files, listed), path=str(directory))]
    parent = directory.resolve().parent
    if (parent / MANIFEST_FILE).is_file():
        made_by = read_manifest(parent)
        if made_by.kind == "raw-dataset":
            refs.append(InputRef(role="origin", kind=made_by.kind, id=made_by.content_id, path=str(parent)))
    return refs


# FashionGen ---------------------------------------------------------------------------------------


def _vocabularies(labels: dict[str, dict[str, frozenset[str]]]) -> dict[str, Vocabulary]:
    """Category and subcategory names to ids, training names first; labels: split -> vocabulary -> names."""
    vocab = {}
    for name in ("category", "subcategory"):
        train = set().union(*(names[name] for split, names in labels.items() if split == "train"))
        other = set().union(*(names[name] for split, names in labels.items() if split != "train"))
        vocab[name] = Vocabulary.from_splits(train, other)
    return vocab


def _fashiongen_tasks(sources: list[FashionGenSource], vocab: dict[str, Vocabulary], shard_size: int, seed: int) -> list[ShardTask]:
    ids = {"category_ids": vocab["category"].index(), "subcategory_ids": vocab["subcategory"].index()}
    tasks = []
    for source in sources:
        rows = training_order(list(range(source.rows)), source.split, seed)
        for index, chunk in chunks(rows, shard_size):
            # Each shard reads its rows in file order (h5 reads run forwards); which rows it holds is what mixes the stream.
            tasks.append(
                ShardTask(shard_name(fashiongen_subset(source.split), index), "fashiongen", source.split, source=source.path, items=tuple(sorted(chunk)), **ids)
            )
    return tasks


# FashionIQ ----------------------------------------------------------------------------------------


def _fashioniq_tasks(source: FashionIQSource, shard_size: int, seed: int) -> list[ShardTask]:
    tasks = []
    for split, items in source.triplets.items():
        ordered = training_order(items, split, seed)
        tasks += [ShardTask(shard_name(triplet_subset(split), index), "triplets", split, items=chunk) for index, chunk in chunks(ordered, shard_size)]
    for split, items in source.galleries.items():
        tasks += [ShardTask(shard_name(gallery_subset(split), index), "gallery", split, items=chunk) for index, chunk in chunks(items, shard_size)]
    return tasks


def _add_fashioniq_sizes(sizes: dict[str, Any], source: FashionIQSource) -> None:
    sizes["skipped"] |= source.skipped
    for split, items in source.triplets.items():
        sizes["subsets"][triplet_subset(split)] = {"samples": len(items), "groups": dict(Counter(i.triplet.group for i in items))}
    for split, gallery in source.galleries.items():
        sizes["subsets"][gallery_subset(split)] = {"samples": len(gallery), "groups": dict(Counter(i.group for i in gallery))}


# A shop's own catalogue ---------------------------------------------------------------------------


def _labels(items: list[CatalogueItem]) -> dict[str, frozenset[str]]:
    return {"category": frozenset(i.view.category for i in items), "subcategory": frozenset(i.view.subcategory for i in items)}


def _catalogue_tasks(views: dict[str, list[CatalogueItem]], vocab: dict[str, Vocabulary], shard_size: int, seed: int) -> list[ShardTask]:
    ids = {"category_ids": vocab["category"].index(), "subcategory_ids": vocab["subcategory"].index()}
    return [
        ShardTask(shard_name(fashiongen_subset(split), index), "catalogue", split, items=chunk, **ids)
        for split, items in views.items()
        for index, chunk in chunks(training_order(items, split, seed), shard_size)
    ]


def _catalogue_notes(source: CatalogueSource, out: Path) -> tuple[str, ...]:
    products = source.details["products"]
    counts = ", ".join(f"{products.get(split, 0)} products {split}" for split in FASHIONGEN_SPLITS)
    split = source.details["split"]
    rule = (
        "the catalogue's split column" if split == SPLIT_COLUMN else f"a seeded hash of each product (seed {split['seed']}, about {split['val_percent']}% val)"
    )
    notes = [f"split by {rule}: {counts}"]
    if not products.get("val"):
        notes.append("no val products: teach and evaluate validate on them; mark a few products val in a split column")
    if not source.pairs.triplets:
        notes.append("no --pairs: these shards hold no text-guided retrieval (TGIR) data; the other tasks train on them")
    if source.skipped:
        nouns = {CATALOGUE: ("catalogue row", "catalogue rows"), PAIRS: ("pair", "pairs")}
        parts = [
            f"{len(rows)} {nouns[file][len(rows) != 1]} ({summary(rows)})"
            for file in (CATALOGUE, PAIRS)
            if (rows := [r for r in source.skipped if r.file == file])
        ]
        notes.append(f"skipped {' and '.join(parts)}; each listed with its line and reason in {out / SKIPPED_FILE}")
    return tuple(notes)
