"""famevil prepare: the public FashionGen and FashionIQ releases (or `famevil synth` output), or a shop's own
catalogue and pairs, to versioned webdataset shards."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_specs.errors import FamevilError
from data_specs.manifest import MANIFEST_FILE, InputRef, Manifest, file_sha256, listing_id, read_manifest, release_fingerprint, write_manifest
from data_specs.shards import (
    FASHIONGEN_SPLITS,
    FASHIONIQ_GROUPS,
    FASHIONIQ_SPLITS,
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
from famevil.data.catalogue import CATALOGUE, PAIRS, SPLIT_COLUMN, Pair, Skipped, View, product_numbers, read_catalogue, read_pairs, summary
from famevil.data.fashiongen import RELEASE_FILES, FashionGenFile
from famevil.data.fashioniq import Triplet, caption_file, image_index, image_split_file, read_image_split, read_triplets
from famevil.data.images import ImageCheck, check_image_file, image_file_as_jpeg, read_rgb
from famevil.data.parallel import worker_map
from famevil.data.shards import Sample, ShardRecord, fashiongen_sample, gallery_sample, triplet_sample, write_shard
from stages.progress import progress_bar

READ_BLOCK = 64  # h5 rows read at once by a worker: about 12 MB of 256x256 images
DONE_FILE = ".done.jsonl"  # finished shards of an interrupted run, one ShardRecord per line
SKIPPED_EXAMPLES = 5


@dataclass(frozen=True)
class FashionGenSource:
    split: str
    path: Path
    rows: int
    products: int
    labels: dict[str, frozenset[str]]  # "category" and "subcategory" -> the names this file uses


@dataclass(frozen=True)
class GalleryItem:
    key: str
    group: str
    asin: str
    image: Path


@dataclass(frozen=True)
class TripletItem:
    key: str
    triplet: Triplet
    reference: Path
    target: Path | None


@dataclass
class FashionIQSource:
    triplets: dict[str, list[TripletItem]] = field(default_factory=dict)  # split -> usable triplets
    galleries: dict[str, list[GalleryItem]] = field(default_factory=dict)  # split -> images present
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)  # subset -> counts and examples


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
        sources = _open_fashiongen(fashiongen)
        vocab = _vocabularies({source.split: source.labels for source in sources})
        inputs += _input_refs("fashiongen", "fashiongen-h5", fashiongen, [s.path for s in sources])
        tasks += _fashiongen_tasks(sources, vocab, shard_size, seed)
        for source in sources:
            sizes["subsets"][fashiongen_subset(source.split)] = {"samples": source.rows, "products": source.products}
    if fashioniq is not None:
        iq = _scan_fashioniq(fashioniq)
        listed = sorted(path for path in (fashioniq / "images").iterdir() if path.is_file())
        inputs += _input_refs("fashioniq", "fashioniq-json", fashioniq, _fashioniq_json_files(fashioniq), listed=listed)
        tasks += _fashioniq_tasks(iq, shard_size, seed)
        _add_fashioniq_sizes(sizes, iq)
    if catalogue is not None:
        own = _scan_catalogue(catalogue, images, pairs, workers)
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
        done, resumed = _write_shards(stage.partial, tasks, workers, resume=stage.resumed)
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


def _refuse_artifact(flag: str, directory: Path, release_folder: str) -> None:
    """A famevil artifact is not a release folder: say which folder was meant."""
    if (directory / MANIFEST_FILE).is_file():
        kind = read_manifest(directory).kind
        hint = f"pass {directory / release_folder}" if kind == "raw-dataset" else f"point it at the raw {release_folder} release folder"
        raise FamevilError(f"{flag} {directory}: is a famevil {kind!r} artifact, not a {release_folder} release folder; {hint}")


def _open_fashiongen(directory: Path) -> list[FashionGenSource]:
    if not directory.is_dir():
        raise FamevilError(f"--fashiongen {directory}: no such directory; point it at the folder holding the FashionGen h5 files")
    _refuse_artifact("--fashiongen", directory, "fashiongen")
    sources = []
    for split in FASHIONGEN_SPLITS:
        path = directory / RELEASE_FILES[split]
        if path.exists():
            with FashionGenFile(path) as release:
                pairs = set(release.labels())
                labels = {"category": frozenset(c for c, _ in pairs), "subcategory": frozenset(s for _, s in pairs)}
                sources.append(FashionGenSource(split, path, len(release), len(set(release.product_ids())), labels))
    if not sources:
        expected = " or ".join(RELEASE_FILES.values())
        raise FamevilError(f"--fashiongen {directory}: holds neither {expected}; point it at the FashionGen release folder")
    return sources


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
        rows = _training_order(list(range(source.rows)), source.split, seed)
        for index, chunk in _chunks(rows, shard_size):
            # Each shard reads its rows in file order (h5 reads run forwards); which rows it holds is what mixes the stream.
            tasks.append(
                ShardTask(shard_name(fashiongen_subset(source.split), index), "fashiongen", source.split, source=source.path, items=tuple(sorted(chunk)), **ids)
            )
    return tasks


def _fashiongen_samples(task: ShardTask) -> Iterator[Sample]:
    with FashionGenFile(task.source) as release:
        for index, row in zip(task.items, release.rows(task.items, image_block=READ_BLOCK), strict=True):
            yield fashiongen_sample(f"{task.split}-{index:08d}", row, task.category_ids, task.subcategory_ids)


# FashionIQ ----------------------------------------------------------------------------------------


def _fashioniq_json_files(directory: Path) -> list[Path]:
    return [
        path
        for group in FASHIONIQ_GROUPS
        for split in FASHIONIQ_SPLITS
        for path in (caption_file(directory, group, split), image_split_file(directory, group, split))
        if path.is_file()
    ]


def _scan_fashioniq(directory: Path) -> FashionIQSource:
    """Read every caption and split file present and resolve images; skip what has no image."""
    if not directory.is_dir():
        raise FamevilError(f"--fashioniq {directory}: no such directory; point it at the folder holding captions/, image_splits/ and images/")
    _refuse_artifact("--fashioniq", directory, "fashioniq")
    if not _fashioniq_json_files(directory):
        raise FamevilError(f"--fashioniq {directory}: no captions/cap.GROUP.SPLIT.json or image_splits/split.GROUP.SPLIT.json files found")
    images = image_index(directory)
    source = FashionIQSource()
    for split in FASHIONIQ_SPLITS:
        usable: list[TripletItem] = []
        missing: set[str] = set()
        skipped = 0
        gallery: list[GalleryItem] = []
        missing_gallery = 0
        for group in FASHIONIQ_GROUPS:
            if caption_file(directory, group, split).is_file():
                for index, triplet in enumerate(read_triplets(directory, group, split)):
                    lost = [a for a in (triplet.candidate, triplet.target) if a is not None and a not in images]
                    if lost:
                        missing.update(lost)
                        skipped += 1
                        continue
                    target = images[triplet.target] if triplet.target else None
                    usable.append(TripletItem(f"{split}-{group}-{index:06d}", triplet, images[triplet.candidate], target))
            if image_split_file(directory, group, split).is_file():
                for asin in read_image_split(directory, group, split):
                    if asin in images:
                        gallery.append(GalleryItem(f"{split}-{group}-{asin}", group, asin, images[asin]))
                    else:
                        missing_gallery += 1
        if usable:
            source.triplets[split] = usable
        if gallery:
            source.galleries[split] = gallery
        if skipped:
            source.skipped[triplet_subset(split)] = {"samples": skipped, "missing_images": len(missing), "examples": sorted(missing)[:SKIPPED_EXAMPLES]}
        if missing_gallery:
            source.skipped[gallery_subset(split)] = {"samples": missing_gallery, "missing_images": missing_gallery}
    if not source.triplets and not source.galleries:
        raise FamevilError(f"--fashioniq {directory}: no usable sample (every triplet and gallery image lacks its image file in images/)")
    return source


def _fashioniq_tasks(source: FashionIQSource, shard_size: int, seed: int) -> list[ShardTask]:
    tasks = []
    for split, items in source.triplets.items():
        ordered = _training_order(items, split, seed)
        tasks += [ShardTask(shard_name(triplet_subset(split), index), "triplets", split, items=chunk) for index, chunk in _chunks(ordered, shard_size)]
    for split, items in source.galleries.items():
        tasks += [ShardTask(shard_name(gallery_subset(split), index), "gallery", split, items=chunk) for index, chunk in _chunks(items, shard_size)]
    return tasks


def _add_fashioniq_sizes(sizes: dict[str, Any], source: FashionIQSource) -> None:
    sizes["skipped"] |= source.skipped
    for split, items in source.triplets.items():
        sizes["subsets"][triplet_subset(split)] = {"samples": len(items), "groups": dict(Counter(i.triplet.group for i in items))}
    for split, gallery in source.galleries.items():
        sizes["subsets"][gallery_subset(split)] = {"samples": len(gallery), "groups": dict(Counter(i.group for i in gallery))}


def _fashioniq_samples(task: ShardTask) -> Iterator[Sample]:
    for item in task.items:
        if task.kind == "gallery":
            yield gallery_sample(item.key, item.group, item.asin, image_file_as_jpeg(item.image))
        else:
            target = image_file_as_jpeg(item.target) if item.target else None
            yield triplet_sample(item.key, item.triplet, image_file_as_jpeg(item.reference), target)


# A shop's own catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueItem:
    key: str
    view: View
    image: Path
    product_id: int


@dataclass(frozen=True)
class CatalogueSource:
    views: dict[str, list[CatalogueItem]]  # split -> usable views, each product's views together
    pairs: FashionIQSource  # the pairs as FashionIQ triplets and galleries (empty without a pairs file)
    skipped: list[Skipped]  # every unusable row, catalogue first, in line order
    inputs: list[InputRef]
    details: dict[str, Any]  # for the manifest: how views were split, products per split, skipped rows by reason


def _scan_catalogue(catalogue: Path, images: Path, pairs: Path | None, workers: int) -> CatalogueSource:
    """Read the catalogue (and pairs) file, check every image, and keep what is usable."""
    for flag, path in (("--catalogue", catalogue), ("--pairs", pairs)):
        if path is not None and not path.is_file():
            raise FamevilError(f"{flag} {path}: no such file")
    if not images.is_dir():
        raise FamevilError(f"--images {images}: no such directory; point it at the folder the catalogue's image paths are relative to")
    table = read_catalogue(catalogue)
    checks = _check_images([images / view.image for view in table.views], workers)
    usable = [(view, check) for view, check in zip(table.views, checks, strict=True) if check.problem is None]
    skipped = table.skipped + [
        Skipped(CATALOGUE, view.line, check.problem, f"{view.image}: {check.detail}" if check.detail else view.image)
        for view, check in zip(table.views, checks, strict=True)
        if check.problem is not None
    ]
    skipped.sort(key=lambda row: row.line)
    if not usable:
        raise FamevilError(f"--catalogue {catalogue}: no usable row; {_all_skipped(skipped)}")
    views = [view for view, _ in usable]
    inputs = [
        InputRef(CATALOGUE, f"catalogue-{catalogue.suffix.lower().lstrip('.')}", "sha256:" + file_sha256(catalogue), str(catalogue)),
        InputRef("images", "image-folder", listing_id({view.image: {"sha256": check.sha256} for view, check in usable}), str(images)),
    ]
    pair_source = FashionIQSource()
    if pairs is not None:
        chosen, bad = read_pairs(pairs, views)
        if not chosen:
            raise FamevilError(f"--pairs {pairs}: no usable pair; {_all_skipped(bad)}; reference and target name images as the catalogue's image column does")
        skipped += sorted(bad, key=lambda row: row.line)
        pair_source = _pair_source(chosen, images)
        inputs.append(InputRef(PAIRS, f"pairs-{pairs.suffix.lower().lstrip('.')}", "sha256:" + file_sha256(pairs), str(pairs)))
    by_split = _catalogue_items(views, images)
    details: dict[str, Any] = {"split": table.split, "products": {split: len({item.product_id for item in items}) for split, items in by_split.items()}}
    if skipped:
        reasons = {file: dict(Counter(row.reason for row in skipped if row.file == file)) for file in (CATALOGUE, PAIRS)}
        details["skipped"] = {"listed_in": SKIPPED_FILE} | {file: counts for file, counts in reasons.items() if counts}
    return CatalogueSource(by_split, pair_source, skipped, inputs, details)


def _check_images(paths: list[Path], workers: int) -> list[ImageCheck]:
    """Each image read, hashed and decoded in worker processes, so that an unreadable one is a skipped row
    found now, not a failed shard later."""
    checks = []
    with progress_bar("check images", len(paths)) as advance:
        for check in worker_map(check_image_file, paths, workers):
            checks.append(check)
            advance(1)
    return checks


def _all_skipped(skipped: list[Skipped]) -> str:
    if not skipped:
        return "the file holds no rows"
    first = skipped[0]
    which = "its one row was" if len(skipped) == 1 else f"all {len(skipped)} rows were"
    return f"{which} skipped ({summary(skipped)}), e.g. line {first.line}: {first.reason} {first.detail}".rstrip()


def _catalogue_items(views: list[View], images: Path) -> dict[str, list[CatalogueItem]]:
    """Each split's views, each product's together as in the FashionGen release, keyed by their place in the split."""
    numbers = product_numbers(views)
    by_split = {}
    for split in FASHIONGEN_SPLITS:
        ordered = sorted((view for view in views if view.split == split), key=lambda view: numbers[view.product])
        if ordered:
            by_split[split] = [CatalogueItem(f"{split}-{index:08d}", view, images / view.image, numbers[view.product]) for index, view in enumerate(ordered)]
    return by_split


def _pair_source(pairs: list[Pair], images: Path) -> FashionIQSource:
    """The pairs as FashionIQ triplets and, per split, a gallery of every image its pairs of a group name,
    as FashionIQ's image splits list the images of a group."""
    source = FashionIQSource()
    for split in FASHIONGEN_SPLITS:
        chosen = [pair for pair in pairs if pair.split == split]
        if not chosen:
            continue
        source.triplets[split] = [
            TripletItem(
                f"{split}-pair-{index:06d}",
                Triplet(p.group, p.reference.image, p.target.image, p.captions),
                images / p.reference.image,
                images / p.target.image,
            )
            for index, p in enumerate(chosen)
        ]
        named = dict.fromkeys((pair.group, view) for pair in chosen for view in (pair.reference, pair.target))
        source.galleries[split] = [
            GalleryItem(f"{split}-image-{index:06d}", group, view.image, images / view.image) for index, (group, view) in enumerate(named)
        ]
    return source


def _labels(items: list[CatalogueItem]) -> dict[str, frozenset[str]]:
    return {"category": frozenset(i.view.category for i in items), "subcategory": frozenset(i.view.subcategory for i in items)}


def _catalogue_tasks(views: dict[str, list[CatalogueItem]], vocab: dict[str, Vocabulary], shard_size: int, seed: int) -> list[ShardTask]:
    ids = {"category_ids": vocab["category"].index(), "subcategory_ids": vocab["subcategory"].index()}
    return [
        ShardTask(shard_name(fashiongen_subset(split), index), "catalogue", split, items=chunk, **ids)
        for split, items in views.items()
        for index, chunk in _chunks(_training_order(items, split, seed), shard_size)
    ]


def _catalogue_samples(task: ShardTask) -> Iterator[Sample]:
    for item in task.items:
        yield fashiongen_sample(item.key, item.view.row(item.product_id, np.asarray(read_rgb(item.image))), task.category_ids, task.subcategory_ids)


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


# Shards -------------------------------------------------------------------------------------------


def _training_order(items: list, split: str, seed: int) -> list:
    """A training split's samples in a seeded random order, any other split's as the source lists them.

    Training streams its shards through a shuffle buffer about one shard long, so the order written
    here is the order a batch is drawn from: in the source's order a batch would come from one or two
    stretches of the file (a product's views side by side, and whatever the release is sorted by);
    shuffled, each batch draws from the whole split, as the authors' random permutation does."""
    if split != "train":
        return items
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def _chunks(items: list, size: int) -> Iterator[tuple[int, tuple]]:
    """(shard index, items) of each shard of `size` items."""
    for index, start in enumerate(range(0, len(items), size)):
        yield index, tuple(items[start : start + size])


def _write_task(job: tuple[Path, ShardTask]) -> ShardRecord:
    """Runs in a worker process: read, encode and write one whole shard under root."""
    root, task = job
    samples = {"fashiongen": _fashiongen_samples, "catalogue": _catalogue_samples}.get(task.kind, _fashioniq_samples)(task)
    return write_shard(root, task.relative, samples)


def _write_shards(partial: Path, tasks: list[ShardTask], workers: int, resume: bool) -> tuple[dict[str, ShardRecord], int]:
    """Every shard's record, writing those an interrupted run did not finish; and how many it had.

    Each finished shard is journaled at once, so a run killed at any point loses only the shards
    its workers were writing."""
    done = _finished_shards(partial) if resume else {}
    todo = [task for task in tasks if task.relative not in done]
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
