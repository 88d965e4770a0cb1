"""Product copy for synthetic garments: FashionGen-style titles and descriptions, FashionIQ-style relative captions.

The wording varies (synonyms, sentence order, omitted details) and carries non-visual distractors
(materials, care, origin, supplier colour names), as real product copy does, so that matching text
to image and writing captions is learnable but never exact.
"""

from __future__ import annotations

import numpy as np

from famevil.data.synthetic.taxonomy import COLOURS, LENGTHS, SLEEVES, Garment

_SLEEVE_PHRASES = {
    "sleeveless": ("Sleeveless",),
    "short": ("Short sleeve", "Short-sleeved"),
    "three-quarter": ("Three-quarter sleeve", "Elbow-length sleeve"),
    "long": ("Long sleeve", "Long-sleeved"),
}
_MATERIALS = {
    "TOPS": ("cotton jersey", "organic cotton", "slub jersey", "linen"),
    "SHIRTS": ("cotton poplin", "oxford cloth", "silk", "linen"),
    "SWEATERS": ("wool", "merino wool", "cashmere-blend", "cotton knit"),
    "JACKETS & COATS": ("wool-blend", "nylon", "cotton twill", "virgin wool"),
    "DRESSES": ("crepe", "satin", "jersey", "viscose"),
    "SKIRTS": ("crepe", "wool", "cotton twill", "satin"),
    "PANTS": ("cotton twill", "wool", "French terry", "linen"),
    "SHORTS": ("cotton twill", "linen", "French terry", "denim"),
    "BAGS": ("grained leather", "canvas", "nylon", "calfskin"),
}
_PATTERN_SENTENCES = {
    "striped": ("Horizontal stripes in {accent} throughout.", "Striped pattern in {accent}."),
    "pinstriped": ("Pinstripes in {accent} throughout.", "Fine vertical stripes in {accent}."),
    "polka-dot": ("Polka dots in {accent} throughout.", "Dotted pattern in {accent}."),
    "checked": ("Gingham check in {accent} throughout.", "Checked pattern in {accent}."),
}
_PATTERN_ADJECTIVES = {"striped": "Striped", "pinstriped": "Pinstriped", "polka-dot": "Polka-Dot", "checked": "Gingham"}
_NECKLINE_SENTENCES = {
    "crew": ("Rib knit crewneck collar.", "Crewneck."),
    "v-neck": ("V-neck collar.", "V-neckline."),
    "scoop": ("Scoop neckline.", "Scoop neck."),
    "turtleneck": ("Rolled turtleneck collar.", "Turtleneck collar."),
    "collar": ("Spread collar.", "Point collar."),
    "lapel": ("Notched lapel.", "Notch lapel collar."),
    "hood": ("Drawstring at hood.", "Hooded."),
    "strappy": ("Adjustable spaghetti straps at shoulders.", "Thin shoulder straps."),
}
_POCKET_SENTENCES = {
    "patch": ("Patch pockets at front.", "Two patch pockets."),
    "flap": ("Flap pockets at front.", "Buttoned flap pockets."),
    "kangaroo": ("Kangaroo pocket.", "Pouch pocket at front."),
    "welt": ("Welt pockets.", "Slit pockets at front."),
}
_LENGTH_SENTENCES = {
    ("top", "cropped"): ("Cropped hem.", "Cropped silhouette."),
    ("top", "longline"): ("Longline silhouette.", "Extended hem."),
    ("jacket", "cropped"): ("Cropped length.", "Cropped silhouette."),
    ("jacket", "thigh-length"): ("Thigh-length.", "Longline cut."),
    ("coat", "hip-length"): ("Hip-length.",),
    ("coat", "thigh-length"): ("Hem falls at mid-thigh.", "Thigh-length."),
    ("coat", "knee-length"): ("Knee-length.", "Hem falls at the knee."),
    ("dress", "mini"): ("Mini length.", "Short hem above the knee."),
    ("dress", "knee-length"): ("Hem falls at the knee.", "Knee-length."),
    ("dress", "midi"): ("Midi length.", "Hem falls below the knee."),
    ("dress", "maxi"): ("Maxi length.", "Floor-sweeping hem."),
    ("skirt", "mini"): ("Mini length.", "Short hem."),
    ("skirt", "knee-length"): ("Knee-length.", "Hem falls at the knee."),
    ("skirt", "midi"): ("Midi length.", "Hem falls below the knee."),
    ("pants", "cropped"): ("Cropped leg.", "Ankle-length cropped leg."),
    ("pants", "full-length"): ("Full-length leg.",),
    ("shorts", "short"): ("Short inseam.",),
    ("shorts", "bermuda"): ("Bermuda length.", "Knee-grazing hem."),
    ("bag", "small"): ("Compact size.", "Mini size."),
    ("bag", "large"): ("Oversized.", "Large size."),
}
# Non-visual copy, by kind: a description takes at most one of each kind, so it never contradicts itself.
_DISTRACTORS: dict[str, tuple[str, ...]] = {
    "origin": ("Made in Italy.", "Made in Portugal.", "Made in Côte d'Ivoire.", "Made in Canada."),
    "care": ("Dry clean only.", "Machine wash cold.", "Hand wash."),
    "finish": ("Tonal stitching.", "Logo embroidered at hem.", "Silver-tone hardware.", "Cotton & linen blend lining."),
    "fit": ("Relaxed fit.", "Slim fit.", "Model is 6' 1\" and wears size M."),
}
_SUPPLIER_COLOURS = ("Midnight", "Café au lait", "Bordeaux", "Crème", "Ash", "Moss", "Ink", "Blush", "Rust", "Sand")
_NUMBERS = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight"}
_DETAIL_KEPT = 0.85  # a visible detail is mentioned this often: real copy omits things
# Copy names the exact subcategory ("cardigan") only this often, otherwise the category-level noun
# ("sweater"): were the noun always exact, sub-category recognition with text would be a word lookup.
_SPECIFIC_NOUN = 0.35


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def title(garment: Garment, noun: str, material: str, rng: np.random.Generator) -> str:
    """The product name, as in FashionGen's input_name: 'Navy Striped Cardigan'."""
    noun = noun.title()
    colour = garment.colour.title()
    choices = [f"{colour} {noun}", f"{material.title()} {noun}"]
    if garment.pattern in _PATTERN_ADJECTIVES:
        choices.append(f"{colour} {_PATTERN_ADJECTIVES[garment.pattern]} {noun}")
    return _pick(rng, tuple(choices))


def _closure_sentence(garment: Garment, rng: np.random.Generator) -> str | None:
    if garment.closure == "buttons":
        count = _NUMBERS.get(garment.buttons, str(garment.buttons))
        return _pick(rng, (f"{count}-button closure at front.", "Button closure at front."))
    if garment.closure == "zip":
        return _pick(rng, ("Zip closure at front.", "Two-way zip fastening."))
    return None


def product_copy(garment: Garment, rng: np.random.Generator) -> tuple[str, str]:
    """Title and description, naming the garment and its (invisible) material the same way."""
    spec = garment.spec
    noun = spec.noun if rng.random() < _SPECIFIC_NOUN else spec.generic
    material = _pick(rng, _MATERIALS[spec.category])
    return title(garment, noun, material, rng), description(garment, noun, material, rng)


def description(garment: Garment, noun: str, material: str, rng: np.random.Generator) -> str:
    """FashionGen-style copy: an opening sentence, details in random order, then distractors."""
    spec = garment.spec
    sleeve = _pick(rng, _SLEEVE_PHRASES[garment.sleeve]) + " " if garment.sleeve and rng.random() < 0.8 else ""
    opening = _pick(
        rng,
        (
            f"{sleeve}{material} {noun} in {garment.colour}.",
            f"{sleeve}{noun} in {garment.colour} {material}.",
        ),
    )
    opening = opening[0].upper() + opening[1:]
    accent = garment.accent
    details = [
        _pick(rng, _PATTERN_SENTENCES[garment.pattern]).format(accent=accent) if garment.pattern != "solid" else None,
        _pick(rng, _NECKLINE_SENTENCES[garment.neckline]) if garment.neckline else None,
        _closure_sentence(garment, rng),
        _pick(rng, _POCKET_SENTENCES[garment.pockets]) if garment.pockets != "none" else None,
        _pick(rng, _LENGTH_SENTENCES[(spec.length_family, garment.length)]) if (spec.length_family, garment.length) in _LENGTH_SENTENCES else None,
    ]
    kept = [d for d in details if d is not None and rng.random() < _DETAIL_KEPT]
    rng.shuffle(kept)
    kinds = [kind for kind in _DISTRACTORS if kind != "fit" or spec.category != "BAGS"]
    distractors = [_pick(rng, _DISTRACTORS[str(kind)]) for kind in rng.choice(kinds, size=int(rng.integers(1, 4)), replace=False)]
    if rng.random() < 0.4:
        distractors.append(f"Supplier color: {_pick(rng, _SUPPLIER_COLOURS)}.")
    return " ".join([opening, *kept, *distractors])


def _luminance(colour: str) -> float:
    r, g, b = COLOURS[colour]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _change_phrases(reference: Garment, target: Garment, attribute: str) -> tuple[str, ...]:
    """Ways an annotator could say how target differs from reference in one attribute."""
    if attribute == "colour":
        darker = _luminance(target.colour) < _luminance(reference.colour) - 40
        lighter = _luminance(target.colour) > _luminance(reference.colour) + 40
        phrases = [f"is {target.colour}", f"is {target.colour} instead of {reference.colour}", f"has a {target.colour} color"]
        phrases += ["is darker"] if darker else ["is lighter"] if lighter else []
        return tuple(phrases)
    if attribute == "pattern":
        if target.pattern == "solid":
            return (f"is solid {target.colour}", "has no pattern", "is plain")
        named = {"striped": "stripes", "pinstriped": "pinstripes", "polka-dot": "polka dots", "checked": "checks"}
        return (f"has {named[target.pattern]}", f"is {target.pattern}", f"has {target.accent} {named[target.pattern]}")
    if attribute == "sleeve":
        longer = SLEEVES.index(target.sleeve) > SLEEVES.index(reference.sleeve)
        exact = "is sleeveless" if target.sleeve == "sleeveless" else f"has {target.sleeve} sleeves"
        return (exact, "has longer sleeves" if longer else "has shorter sleeves")
    if attribute == "length":
        order = LENGTHS[target.spec.length_family]
        longer = order.index(target.length) > order.index(reference.length)
        return (f"is {target.length}", "is longer" if longer else "is shorter")
    if attribute == "neckline":
        named = {"crew": "a crew neck", "v-neck": "a v-neck", "scoop": "a scoop neck", "collar": "a collar", "strappy": "thin straps"}
        return (f"has {named.get(target.neckline, target.neckline)}",)
    raise ValueError(f"no caption phrases for attribute {attribute!r}")


_VAGUE = ("is more casual", "looks more fashionable", "is more elegant", "is prettier")


def relative_captions(reference: Garment, target: Garment, changed: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """Two FashionIQ-style captions, as two annotators would write them: short, lower case, no full stop.

    Each annotator mentions some of the changes (at least one), sometimes adds a vague remark.
    """
    captions = []
    for _ in range(2):
        count = int(rng.integers(1, len(changed) + 1))
        mentioned = list(rng.choice(changed, size=count, replace=False))
        parts = [_pick(rng, _change_phrases(reference, target, attribute)) for attribute in mentioned]
        if rng.random() < 0.15:
            parts.append(_pick(rng, _VAGUE))
        captions.append(" and ".join(parts))
    return captions
