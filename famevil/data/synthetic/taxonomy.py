"""What the procedural fashion catalogue is made of: subcategories, attributes and their values.

Everything the renderer draws and the copywriter describes is declared here once, so the image
and the text of a product always agree. Attribute values are ordered where order means something
(sleeves and lengths from shortest to longest) because FashionIQ-style captions compare them.
"""

from __future__ import annotations

from dataclasses import dataclass

# name -> RGB. Close pairs (navy/black, burgundy/brown, beige/white, blue/light blue) are deliberate:
# they are easy for a person at full size and hard for a tiny model at low resolution.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 32),
    "white": (238, 238, 232),
    "grey": (132, 132, 136),
    "navy": (30, 40, 84),
    "blue": (44, 92, 190),
    "light blue": (152, 192, 230),
    "red": (192, 32, 42),
    "burgundy": (112, 22, 44),
    "pink": (236, 152, 178),
    "orange": (234, 122, 40),
    "yellow": (238, 204, 62),
    "green": (42, 132, 72),
    "olive": (112, 116, 52),
    "beige": (214, 194, 160),
    "brown": (116, 76, 46),
    "purple": (112, 62, 142),
}

PATTERNS = ("solid", "striped", "pinstriped", "polka-dot", "checked")

SLEEVES = ("sleeveless", "short", "three-quarter", "long")  # shortest first
NECKLINES = ("crew", "v-neck", "scoop", "turtleneck", "collar", "lapel", "hood", "strappy")
CLOSURES = ("pullover", "buttons", "zip")
POCKETS = ("none", "patch", "flap", "kangaroo", "welt")

# Lengths are per family, shortest first; a product's length is one value of its family.
LENGTHS: dict[str, tuple[str, ...]] = {
    "top": ("cropped", "regular", "longline"),
    "jacket": ("cropped", "hip-length", "thigh-length"),
    "coat": ("hip-length", "thigh-length", "knee-length"),
    "dress": ("mini", "knee-length", "midi", "maxi"),
    "skirt": ("mini", "knee-length", "midi"),
    "pants": ("cropped", "full-length"),
    "shorts": ("short", "bermuda"),
    "bag": ("small", "medium", "large"),
}


@dataclass(frozen=True)
class Subcategory:
    """One subcategory: its FashionGen-style names and the attribute values it may take."""

    name: str  # FashionGen style, upper case plural: "CARDIGANS"
    category: str  # FashionGen style: "SWEATERS", "JACKETS & COATS"
    noun: str  # the specific lower case singular noun: "cardigan"
    silhouette: str  # the renderer's drawing routine
    length_family: str  # key of LENGTHS
    sleeves: tuple[str, ...] = ()  # empty: the garment has no sleeves attribute (skirts, bags)
    necklines: tuple[str, ...] = ()
    closures: tuple[str, ...] = ("pullover",)
    pockets: tuple[str, ...] = ("none",)
    genders: tuple[str, ...] = ("MEN", "WOMEN")
    fashioniq_group: str | None = None  # dress, shirt or toptee: may appear in FashionIQ
    validation_only: bool = False  # mirrors the release: a subcategory never seen in training
    generic: str = ""  # the category-level noun copy uses most of the time: "sweater"


# A table, one subcategory a row: kept out of the formatter.
# fmt: off
SUBCATEGORIES: tuple[Subcategory, ...] = (
    Subcategory("T-SHIRTS", "TOPS", "t-shirt", "tee", "top", ("short", "long"), ("crew", "v-neck", "scoop"), fashioniq_group="toptee", generic="top"),
    Subcategory("TANK TOPS", "TOPS", "tank top", "tank", "top", ("sleeveless",), ("crew", "scoop", "v-neck"), fashioniq_group="toptee", generic="top"),
    Subcategory("POLOS", "TOPS", "polo", "polo", "top", ("short", "long"), ("collar",), ("buttons",), ("none", "patch"), fashioniq_group="shirt", generic="shirt"),
    Subcategory("SHIRTS", "SHIRTS", "shirt", "shirt", "top", ("short", "long"), ("collar",), ("buttons",), ("none", "patch", "flap"), fashioniq_group="shirt", generic="shirt"),
    Subcategory("BLOUSES", "SHIRTS", "blouse", "blouse", "top", ("sleeveless", "short", "three-quarter", "long"), ("v-neck", "scoop"), genders=("WOMEN",), fashioniq_group="toptee", generic="top"),
    Subcategory("CREWNECKS", "SWEATERS", "crewneck sweater", "sweater", "top", ("long", "three-quarter"), ("crew", "v-neck"), generic="sweater"),
    Subcategory("TURTLENECKS", "SWEATERS", "turtleneck", "sweater", "top", ("long", "three-quarter"), ("turtleneck",), generic="sweater"),
    Subcategory("CARDIGANS", "SWEATERS", "cardigan", "cardigan", "top", ("long", "three-quarter"), ("v-neck", "crew"), ("buttons",), ("none", "patch"), generic="sweater"),
    Subcategory("HOODIES", "SWEATERS", "hoodie", "hoodie", "top", ("long",), ("hood",), ("pullover", "zip"), ("kangaroo", "none"), generic="sweatshirt"),
    Subcategory("BLAZERS", "JACKETS & COATS", "blazer", "blazer", "jacket", ("long",), ("lapel",), ("buttons",), ("flap", "welt", "patch"), generic="jacket"),
    Subcategory("COATS", "JACKETS & COATS", "coat", "coat", "coat", ("long",), ("lapel", "collar"), ("buttons",), ("flap", "welt", "none"), generic="coat"),
    Subcategory("BOMBERS", "JACKETS & COATS", "bomber jacket", "bomber", "jacket", ("long",), ("collar", "crew"), ("zip",), ("welt", "flap"), generic="jacket"),
    Subcategory("VESTS", "JACKETS & COATS", "vest", "vest", "jacket", ("sleeveless",), ("v-neck",), ("buttons", "zip"), ("welt", "none"), validation_only=True, generic="jacket"),
    Subcategory("SHEATH DRESSES", "DRESSES", "sheath dress", "sheath", "dress", ("sleeveless", "short", "three-quarter", "long"), ("crew", "v-neck", "scoop"), genders=("WOMEN",), fashioniq_group="dress", generic="dress"),
    Subcategory("A-LINE DRESSES", "DRESSES", "a-line dress", "aline_dress", "dress", ("sleeveless", "short", "three-quarter", "long"), ("crew", "v-neck", "scoop"), genders=("WOMEN",), fashioniq_group="dress", generic="dress"),
    Subcategory("SLIP DRESSES", "DRESSES", "slip dress", "slip", "dress", ("sleeveless",), ("strappy", "v-neck"), genders=("WOMEN",), fashioniq_group="dress", generic="dress"),
    Subcategory("SHIRT DRESSES", "DRESSES", "shirt dress", "shirt_dress", "dress", ("short", "long"), ("collar",), ("buttons",), ("none", "patch"), genders=("WOMEN",), fashioniq_group="dress", generic="dress"),
    Subcategory("PENCIL SKIRTS", "SKIRTS", "pencil skirt", "pencil_skirt", "skirt", genders=("WOMEN",), generic="skirt"),
    Subcategory("A-LINE SKIRTS", "SKIRTS", "a-line skirt", "aline_skirt", "skirt", closures=("pullover", "buttons"), pockets=("none", "patch"), genders=("WOMEN",), generic="skirt"),
    Subcategory("PLEATED SKIRTS", "SKIRTS", "pleated skirt", "pleated_skirt", "skirt", genders=("WOMEN",), generic="skirt"),
    Subcategory("TROUSERS", "PANTS", "trousers", "trousers", "pants", pockets=("welt", "none"), generic="pants"),
    Subcategory("WIDE-LEG PANTS", "PANTS", "wide-leg pants", "wide_leg", "pants", pockets=("welt", "none"), generic="pants"),
    Subcategory("JOGGERS", "PANTS", "joggers", "joggers", "pants", pockets=("none", "patch"), generic="pants"),
    Subcategory("SHORTS", "SHORTS", "shorts", "shorts", "shorts", pockets=("none", "welt", "patch"), generic="shorts"),
    Subcategory("TOTE BAGS", "BAGS", "tote bag", "tote", "bag", pockets=("none", "patch"), generic="bag"),
    Subcategory("SHOULDER BAGS", "BAGS", "shoulder bag", "shoulder_bag", "bag", closures=("zip", "buttons"), pockets=("none", "flap"), generic="bag"),
    Subcategory("BACKPACKS", "BAGS", "backpack", "backpack", "bag", closures=("zip",), pockets=("patch", "none"), generic="bag"),
)
# fmt: on

SUBCATEGORY_BY_NAME: dict[str, Subcategory] = {s.name: s for s in SUBCATEGORIES}
FASHIONIQ_GROUPS = ("dress", "shirt", "toptee")

# FashionGen's input_pose values; a product has one to three of these views.
VIEWS = ("id_gridfs_1", "id_gridfs_2", "id_gridfs_3")  # front, back, close-up of the upper part


@dataclass(frozen=True)
class Garment:
    """Everything visible about one product. The renderer draws it; the copywriter describes it."""

    subcategory: str  # key of SUBCATEGORY_BY_NAME
    colour: str  # key of COLOURS
    accent: str  # key of COLOURS, != colour: stripes, dots, checks and contrast trim
    pattern: str  # one of PATTERNS
    length: str  # one of LENGTHS[subcategory.length_family]
    sleeve: str | None  # one of SLEEVES, None where the subcategory has no sleeves attribute
    neckline: str | None  # one of NECKLINES, None where it has none (skirts, pants, bags)
    closure: str  # one of CLOSURES
    buttons: int  # visible front buttons; 0 unless closure == "buttons"
    pockets: str  # one of POCKETS

    @property
    def spec(self) -> Subcategory:
        return SUBCATEGORY_BY_NAME[self.subcategory]
