"""What each raw source holds, read once and checked before any shard is written: the FashionGen h5
files, a FashionIQ folder, and a shop's own catalogue (and pairs) with its images. `famevil prepare`
scans its sources, then writes what the scans found into shards."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError
from data_specs.manifest import MANIFEST_FILE, InputRef, file_sha256, listing_id, read_manifest
from data_specs.shards import FASHIONGEN_SPLITS, FASHIONIQ_GROUPS, FASHIONIQ_SPLITS, SKIPPED_FILE, gallery_subset, triplet_subset
from famevil.data.catalogue import CATALOGUE, PAIRS, Pair, Skipped, View, product_numbers, read_catalogue, read_pairs, summary
from famevil.data.fashiongen import RELEASE_FILES, FashionGenFile
from famevil.data.fashioniq import Triplet, caption_file, image_index, image_split_file, read_image_split, read_triplets
from famevil.data.images import ImageCheck, check_image_file
from famevil.data.parallel import worker_map
from famevil.progress import progress_bar

SKIPPED_EXAMPLES = 5  # missing FashionIQ images named in the sizes, per subset


def _refuse_artifact(flag: str, directory: Path, release_folder: str) -> None:
    """A famevil artifact is not a release folder: say which folder was meant."""
    if (directory / MANIFEST_FILE).is_file():
        kind = read_manifest(directory).kind
        hint = f"pass {directory / release_folder}" if kind == "raw-dataset" else f"point it at the raw {release_folder} release folder"
        raise FamevilError(f"{flag} {directory}: is a famevil {kind!r} artifact, not a {release_folder} release folder; {hint}")


# FashionGen ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FashionGenSource:
    split: str
    path: Path
    rows: int
    products: int
    labels: dict[str, frozenset[str]]  # "category" and "subcategory" -> the names this file uses


def scan_fashiongen(directory: Path) -> list[FashionGenSource]:
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


# FashionIQ ----------------------------------------------------------------------------------------


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


def fashioniq_json_files(directory: Path) -> list[Path]:
    return [
        path
        for group in FASHIONIQ_GROUPS
        for split in FASHIONIQ_SPLITS
        for path in (caption_file(directory, group, split), image_split_file(directory, group, split))
        if path.is_file()
    ]


def scan_fashioniq(directory: Path) -> FashionIQSource:
    """Read every caption and split file present and resolve images; skip what has no image."""
    if not directory.is_dir():
        raise FamevilError(f"--fashioniq {directory}: no such directory; point it at the folder holding captions/, image_splits/ and images/")
    _refuse_artifact("--fashioniq", directory, "fashioniq")
    if not fashioniq_json_files(directory):
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


def scan_catalogue(catalogue: Path, images: Path, pairs: Path | None, workers: int) -> CatalogueSource:
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
