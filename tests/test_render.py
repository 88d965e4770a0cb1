"""The procedural renderer: shapes, determinism, and that every attribute changes the picture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from famevil.data.synthetic.render import contact_sheet, render_garment
from famevil.data.synthetic.taxonomy import LENGTHS, SUBCATEGORIES, VIEWS, Garment

FRONT, BACK, CLOSE_UP = VIEWS
SIZE = 96


def plain(subcategory: str) -> Garment:
    """A solid grey example of the subcategory, with its first allowed value of every attribute."""
    spec = next(s for s in SUBCATEGORIES if s.name == subcategory)
    closure = spec.closures[0]
    return Garment(
        subcategory=spec.name,
        colour="grey",
        accent="white",
        pattern="solid",
        length=LENGTHS[spec.length_family][-1],
        sleeve=spec.sleeves[0] if spec.sleeves else None,
        neckline=spec.necklines[0] if spec.necklines else None,
        closure=closure,
        buttons=4 if closure == "buttons" else 0,
        pockets=spec.pockets[0],
    )


def render(g: Garment, view: str = FRONT, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return render_garment(g, view, size, np.random.default_rng(seed))


def changed(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def foreground(image: np.ndarray) -> np.ndarray:
    """Pixels clearly darker than the light backdrop."""
    return image.astype(np.int16).min(axis=2) < 200


@pytest.mark.parametrize("size", [32, 97, 128, 256])
@pytest.mark.parametrize("view", VIEWS)
def test_shape_and_dtype(size: int, view: str) -> None:
    image = render(plain("T-SHIRTS"), view, size)
    assert image.shape == (size, size, 3)
    assert image.dtype == np.uint8


def test_background_is_off_white_and_garment_is_centred() -> None:
    image = render(plain("CREWNECKS"), size=128)
    corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.min() >= 225 and corners.max() <= 255
    mask = foreground(image)
    ys, xs = np.nonzero(mask)
    assert 0.2 < mask.mean() < 0.8
    assert abs(xs.mean() - 64) < 12


@pytest.mark.parametrize("view", VIEWS)
def test_same_seed_same_pixels(view: str) -> None:
    g = plain("BLAZERS")
    assert np.array_equal(render(g, view, seed=7), render(g, view, seed=7))


def test_other_seed_other_pixels() -> None:
    assert not np.array_equal(render(plain("BLAZERS"), seed=7), render(plain("BLAZERS"), seed=8))


def test_every_subcategory_looks_different() -> None:
    # Same colour, seed and (first allowed) attributes: only the garment itself differs.
    images = {s.name: render(plain(s.name)) for s in SUBCATEGORIES}
    names = list(images)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert changed(images[a], images[b]) > 1.5, (a, b)


@pytest.mark.parametrize(
    "subcategory, change",
    [
        ("SHIRTS", {"pockets": "patch"}),
        ("BLAZERS", {"pockets": "welt"}),
        ("HOODIES", {"pockets": "none"}),
        ("CARDIGANS", {"buttons": 6}),
        ("POLOS", {"buttons": 2}),
        ("T-SHIRTS", {"sleeve": "long"}),
        ("BLOUSES", {"sleeve": "three-quarter"}),
        ("A-LINE DRESSES", {"length": "mini"}),
        ("TROUSERS", {"length": "cropped"}),
        ("TOTE BAGS", {"length": "small"}),
        ("SHEATH DRESSES", {"colour": "navy"}),
        ("CREWNECKS", {"neckline": "v-neck"}),
        ("HOODIES", {"closure": "zip"}),
        ("PENCIL SKIRTS", {"pattern": "checked"}),
        ("SHORTS", {"pattern": "pinstriped"}),
    ],
)
def test_each_attribute_changes_the_front(subcategory: str, change: dict[str, object]) -> None:
    g = plain(subcategory)
    assert changed(render(g), render(dataclasses.replace(g, **change))) > 0.05


def test_back_view_hides_buttons_but_not_the_garment() -> None:
    g = plain("SHIRTS")
    more = dataclasses.replace(g, buttons=7)
    assert changed(render(g, FRONT), render(more, FRONT)) > 0.05
    assert np.array_equal(render(g, BACK), render(more, BACK))
    assert changed(render(g, BACK), render(dataclasses.replace(g, colour="red"), BACK)) > 5


def test_close_up_magnifies_the_upper_part() -> None:
    g = plain("A-LINE DRESSES")
    assert foreground(render(g, CLOSE_UP)).mean() > foreground(render(g, FRONT)).mean()


def test_contact_sheet_grid() -> None:
    images = [render(plain(s.name), size=48) for s in SUBCATEGORIES[:5]]
    sheet = contact_sheet(images, [s.name for s in SUBCATEGORIES[:5]], columns=3)
    assert sheet.size[0] == 3 * 48 and sheet.size[1] > 2 * 48
