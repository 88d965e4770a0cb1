"""The procedural catalogue: which products exist, how they look and what their copy says.

Only metadata is made here (cheap, deterministic for a seed); pixels are drawn later, one image at
a time, by the release writers. Difficulty comes from three places: near-duplicate products that
differ in one fine detail (pockets, buttons, neckline, trim colour, closure), copy that omits some
visible details and adds non-visual ones, and FashionIQ galleries that hold hard negatives (the
target with one more attribute changed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from famevil.data.synthetic import copywriter
from famevil.data.synthetic.taxonomy import (
    COLOURS,
    FASHIONIQ_GROUPS,
    LENGTHS,
    PATTERNS,
    SUBCATEGORIES,
    VIEWS,
    Garment,
    Subcategory,
)

# Seed streams, so that adding a new random draw somewhere never shifts the others.
STREAM_FASHIONGEN, STREAM_FASHIONIQ, STREAM_RENDER, STREAM_WEIGHTS = range(4)


@dataclass(frozen=True)
class Preset:
    """Sizes of a generated data set."""

    fashiongen_products: dict[str, int]  # split -> products (each has 1-3 image views)
    fashioniq_triplets: dict[str, int]  # split -> triplets per group
    fashioniq_extra_images: dict[str, int]  # split -> gallery-only images per group
    image_size: int  # pixels; the release is 256
    near_duplicate_rate: float = 0.25  # products that copy an earlier one but for one fine detail
    missing_image_rate: float = 0.01  # FashionIQ images left out, as the release's dead links


PRESETS: dict[str, Preset] = {
    # seconds: for tests
    "tiny": Preset({"train": 48, "val": 16}, {"train": 12, "val": 8, "test": 4}, {"train": 4, "val": 8, "test": 2}, 64),
    # the README's main job: the whole pipeline in about 20 minutes on 2 cores
    "demo": Preset({"train": 1600, "val": 600}, {"train": 400, "val": 120, "test": 40}, {"train": 60, "val": 120, "test": 20}, 128),
    # large enough to measure throughput: about 12k train images, 2.4 GB of h5
    "bench": Preset({"train": 6000, "val": 800}, {"train": 1500, "val": 300, "test": 100}, {"train": 200, "val": 300, "test": 50}, 256),
}


@dataclass(frozen=True)
class Product:
    """One FashionGen product; every view is one row of the h5."""

    product_id: int
    garment: Garment
    views: tuple[str, ...]
    gender: str
    title: str
    description: str
    composition: str
    season: str


@dataclass(frozen=True)
class FashionIQImage:
    asin: str
    garment: Garment
    present: bool  # False: listed in the split but its file is missing, as in the release


@dataclass(frozen=True)
class FashionIQTriplet:
    candidate: str
    target: str
    captions: tuple[str, str]


@dataclass(frozen=True)
class FashionIQSplit:
    images: tuple[FashionIQImage, ...]
    triplets: tuple[FashionIQTriplet, ...]


def _choice(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def _button_count(spec: Subcategory, rng: np.random.Generator) -> int:
    low, high = {"blazer": (1, 3), "polo": (2, 3), "shoulder_bag": (1, 2), "aline_skirt": (3, 5)}.get(spec.silhouette, (4, 7))
    return int(rng.integers(low, high + 1))


def sample_garment(spec: Subcategory, rng: np.random.Generator) -> Garment:
    colour = _choice(rng, tuple(COLOURS))
    accent = _choice(rng, tuple(c for c in COLOURS if c != colour))
    pattern = "solid" if rng.random() < 0.5 else _choice(rng, PATTERNS[1:])
    closure = _choice(rng, spec.closures)
    return Garment(
        subcategory=spec.name,
        colour=colour,
        accent=accent,
        pattern=pattern,
        length=_choice(rng, LENGTHS[spec.length_family]),
        sleeve=_choice(rng, spec.sleeves) if spec.sleeves else None,
        neckline=_choice(rng, spec.necklines) if spec.necklines else None,
        closure=closure,
        buttons=_button_count(spec, rng) if closure == "buttons" else 0,
        pockets=_choice(rng, spec.pockets),
    )


def _alternatives(garment: Garment, attribute: str) -> tuple:
    """The other values an attribute of this garment could take."""
    spec = garment.spec
    values = {
        "colour": tuple(COLOURS),
        "accent": tuple(c for c in COLOURS if c != garment.colour),
        "pattern": PATTERNS,
        "sleeve": spec.sleeves,
        "length": LENGTHS[spec.length_family],
        "neckline": spec.necklines,
        "closure": spec.closures,
        "pockets": spec.pockets,
    }[attribute]
    if attribute == "accent" and garment.pattern == "solid":
        return ()  # the accent colour is invisible on a solid garment
    return tuple(v for v in values if v != getattr(garment, attribute))


def _with(garment: Garment, attribute: str, value, rng: np.random.Generator) -> Garment:
    changed = replace(garment, **{attribute: value})
    if attribute == "closure":
        changed = replace(changed, buttons=_button_count(garment.spec, rng) if value == "buttons" else 0)
    if attribute == "colour" and changed.accent == value:
        changed = replace(changed, accent=garment.colour)
    return changed


_FINE_DETAILS = ("pockets", "neckline", "accent", "closure", "buttons")


def near_duplicate(garment: Garment, rng: np.random.Generator) -> Garment | None:
    """The same product but for one fine detail, or None if this garment has no detail to vary."""
    options = [a for a in _FINE_DETAILS if (garment.buttons > 1 if a == "buttons" else _alternatives(garment, a))]
    if not options:
        return None
    attribute = _choice(rng, options)
    if attribute == "buttons":
        return replace(garment, buttons=garment.buttons + _choice(rng, (-1, 1)))
    return _with(garment, attribute, _choice(rng, _alternatives(garment, attribute)), rng)


_FASHIONIQ_ATTRIBUTES = ("colour", "pattern", "sleeve", "length", "neckline")


def modified(garment: Garment, rng: np.random.Generator, count: int, exclude: tuple[str, ...] = ()) -> tuple[Garment, tuple[str, ...]]:
    """A FashionIQ target: the garment with `count` of colour, pattern, sleeve, length, neckline changed."""
    options = [a for a in _FASHIONIQ_ATTRIBUTES if a not in exclude and _alternatives(garment, a)]
    chosen = tuple(str(a) for a in rng.choice(options, size=min(count, len(options)), replace=False))
    for attribute in chosen:
        garment = _with(garment, attribute, _choice(rng, _alternatives(garment, attribute)), rng)
    return garment, chosen


def subcategory_weights(seed: int) -> dict[str, float]:
    """Uneven subcategory frequencies, as in the release; fixed by the seed."""
    rng = np.random.default_rng([seed, STREAM_WEIGHTS])
    return {spec.name: float(rng.uniform(0.4, 1.6)) for spec in SUBCATEGORIES}


def _composition(rng: np.random.Generator) -> str:
    fibres = ("cotton", "wool", "polyester", "viscose", "linen", "nylon", "elastane", "silk")
    first, second = rng.choice(fibres, size=2, replace=False)
    share = int(rng.integers(5, 20)) * 5
    return f"100% {first}" if share == 100 or rng.random() < 0.4 else f"{share}% {first}, {100 - share}% {second}"


def _garments(count: int, split: str, weights: dict[str, float], near_duplicate_rate: float, rng: np.random.Generator) -> list[Garment]:
    """A split's garments in catalogue order. Outside training, each validation-only subcategory
    appears about once per 50 products (at least once), as the release's unseen subcategory does."""
    regular = [s for s in SUBCATEGORIES if not s.validation_only]
    unseen = [s for s in SUBCATEGORIES if s.validation_only and split != "train"]
    p = np.array([weights[s.name] for s in regular])
    garments = [sample_garment(spec, rng) for spec in unseen for _ in range(max(1, count // 50))][:count]
    while len(garments) < count:
        garment = None
        if garments and rng.random() < near_duplicate_rate:
            garment = near_duplicate(_choice(rng, garments), rng)
        garments.append(garment or sample_garment(regular[rng.choice(len(regular), p=p / p.sum())], rng))
    return [garments[i] for i in rng.permutation(count)]


def fashiongen_catalogue(preset: Preset, seed: int) -> dict[str, list[Product]]:
    """Products per split, product ids increasing in catalogue order as in the release."""
    weights = subcategory_weights(seed)
    catalogue: dict[str, list[Product]] = {}
    next_id = 100_000
    for split_index, (split, count) in enumerate(preset.fashiongen_products.items()):
        rng = np.random.default_rng([seed, STREAM_FASHIONGEN, split_index])
        products: list[Product] = []
        for garment in _garments(count, split, weights, preset.near_duplicate_rate, rng):
            views = VIEWS[: int(rng.choice((1, 2, 3), p=(0.3, 0.4, 0.3)))]
            next_id += int(rng.integers(1, 40))
            title, description = copywriter.product_copy(garment, rng)
            products.append(
                Product(
                    product_id=next_id,
                    garment=garment,
                    views=views,
                    gender=_choice(rng, garment.spec.genders),
                    title=title,
                    description=description,
                    composition=_composition(rng),
                    season=f"{_choice(rng, ('SS', 'FW'))}{int(rng.integers(2014, 2019))}",
                )
            )
        catalogue[split] = products
    return catalogue


def _asin(rng: np.random.Generator, taken: set[str]) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    while True:
        asin = "B0" + "".join(alphabet[i] for i in rng.integers(len(alphabet), size=8))
        if asin not in taken:
            taken.add(asin)
            return asin


def fashioniq_catalogue(preset: Preset, seed: int) -> dict[tuple[str, str], FashionIQSplit]:
    """Images and triplets per (group, split). Targets differ from their reference in one or two
    attributes; four in five have one or two hard negatives in the gallery, each differing from the
    target in one more attribute."""
    taken: set[str] = set()
    catalogue: dict[tuple[str, str], FashionIQSplit] = {}
    for group_index, group in enumerate(FASHIONIQ_GROUPS):
        specs = [s for s in SUBCATEGORIES if s.fashioniq_group == group]
        for split_index, (split, count) in enumerate(preset.fashioniq_triplets.items()):
            rng = np.random.default_rng([seed, STREAM_FASHIONIQ, group_index, split_index])
            images: list[FashionIQImage] = []

            def add(garment: Garment, rng: np.random.Generator = rng, images: list[FashionIQImage] = images) -> str:
                # this iteration's rng and images bound here (B023); add is only called within the iteration
                present = rng.random() >= preset.missing_image_rate
                images.append(FashionIQImage(_asin(rng, taken), garment, present))
                return images[-1].asin

            triplets = []
            for _ in range(count):
                reuse = images and rng.random() < 0.3  # the release reuses images across triplets
                reference_image = _choice(rng, images) if reuse else None
                reference = reference_image.garment if reference_image else sample_garment(_choice(rng, specs), rng)
                candidate = reference_image.asin if reference_image else add(reference)
                target, changed = modified(reference, rng, count=int(rng.integers(1, 3)))
                target_asin = add(target)
                for _ in range(int(rng.choice((0, 1, 2), p=(0.2, 0.5, 0.3)))):
                    add(modified(target, rng, count=1, exclude=changed)[0])
                captions = copywriter.relative_captions(reference, target, changed, rng)
                triplets.append(FashionIQTriplet(candidate, target_asin, (captions[0], captions[1])))
            for _ in range(preset.fashioniq_extra_images[split]):
                add(sample_garment(_choice(rng, specs), rng))
            order = rng.permutation(len(images))
            catalogue[(group, split)] = FashionIQSplit(tuple(images[i] for i in order), tuple(triplets))
    return catalogue
