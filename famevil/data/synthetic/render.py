"""Procedural product photos of garments: a FashionGen-style shot on a plain, light background.

Each garment is first described as a `Sketch` in normalised canvas coordinates (0..1, y down):
fabric panels drawn in painter's order, then small details (buttons, zips, stitching) on top. The
sketch is rasterised at twice the target size through one affine `Pose` (view, jitter, zoom), so the
pattern, the seams and the details all move together, and downsampled for antialiasing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from famevil.data.synthetic.taxonomy import COLOURS, LENGTHS, VIEWS, Garment

Point = tuple[float, float]
RGB = tuple[int, int, int]

FRONT, BACK, CLOSE_UP = VIEWS
SUPERSAMPLE = 2
CLOSE_UP_ZOOM = 1.6

# Hem (or bag scale) per length value, in canvas units; shortest first like LENGTHS.
HEMS: dict[str, tuple[float, ...]] = {
    "top": (0.56, 0.72, 0.86),
    "jacket": (0.64, 0.74, 0.84),
    "coat": (0.70, 0.81, 0.93),
    "dress": (0.55, 0.69, 0.81, 0.94),
    "skirt": (0.42, 0.64, 0.84),
    "pants": (0.72, 0.93),
    "shorts": (0.50, 0.66),
    "bag": (0.72, 0.86, 1.0),
}

# Sleeve angle below the horizontal (degrees) and length; a long sleeve hangs beside the body.
SLEEVE_CUT: dict[str, tuple[float, float]] = {
    "short": (34.0, 0.13),
    "three-quarter": (61.0, 0.29),
    "long": (67.0, 0.43),
}


# ---------------------------------------------------------------------------------------------
# Sketch: what to draw, independent of pixels


@dataclass
class Sketch:
    """Panels are outlined fabric pieces (tone "fabric" carries the pattern); details go on top."""

    panels: list[tuple[list[Point], str]] = field(default_factory=list)
    lines: list[tuple[list[Point], str, float]] = field(default_factory=list)
    fills: list[tuple[list[Point], str]] = field(default_factory=list)
    dots: list[tuple[Point, float, str]] = field(default_factory=list)

    def panel(self, points: Sequence[Point], tone: str = "fabric") -> None:
        self.panels.append((list(points), tone))

    def line(self, points: Sequence[Point], tone: str = "ink", width: float = 0.005) -> None:
        self.lines.append((list(points), tone, width))

    def fill(self, points: Sequence[Point], tone: str) -> None:
        self.fills.append((list(points), tone))

    def dot(self, centre: Point, radius: float, tone: str = "hardware") -> None:
        self.dots.append((centre, radius, tone))

    def bbox(self) -> tuple[float, float, float, float]:
        pts = np.array([p for poly, _ in self.panels for p in poly])
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def scale(self, factor: float, centre: Point = (0.5, 0.5)) -> None:
        """Bags come in sizes: scale everything drawn so far about `centre`."""
        cx, cy = centre

        def s(p: Point) -> Point:
            return cx + factor * (p[0] - cx), cy + factor * (p[1] - cy)

        self.panels = [([s(p) for p in poly], t) for poly, t in self.panels]
        self.lines = [([s(p) for p in poly], t, w * factor) for poly, t, w in self.lines]
        self.fills = [([s(p) for p in poly], t) for poly, t in self.fills]
        self.dots = [(s(c), r * factor, t) for c, r, t in self.dots]


def mirror(points: Sequence[Point]) -> list[Point]:
    return [(1.0 - x, y) for x, y in points]


def symmetric(half: Sequence[Point]) -> list[Point]:
    """Whole outline from its left half, given from the top centre down to the bottom centre."""
    return list(half) + mirror(reversed(half))


def bezier(p0: Point, p1: Point, p2: Point, n: int = 8) -> list[Point]:
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(p1) + t**2 * np.array(p2)
    return [(float(x), float(y)) for x, y in pts]


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 12) -> list[Point]:
    """Points of an elliptic arc, angles in degrees, 0 = right, 90 = down."""
    a = np.radians(np.linspace(a0, a1, n))
    return [(float(cx + rx * math.cos(t)), float(cy + ry * math.sin(t))) for t in a]


def rect(cx: float, cy: float, w: float, h: float) -> list[Point]:
    return [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]


def band(path: Sequence[Point], width: float) -> list[Point]:
    """A strap or handle: the polyline thickened into a polygon."""
    p = np.asarray(path, dtype=float)
    tangent = np.gradient(p, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal *= width / 2 / np.linalg.norm(normal, axis=1, keepdims=True)
    return [tuple(q) for q in np.concatenate([p + normal, (p - normal)[::-1]]).tolist()]


# ---------------------------------------------------------------------------------------------
# Shared garment parts


def pockets(sk: Sketch, kind: str, spots: Sequence[tuple[float, float, float, float]]) -> None:
    """Pockets of `kind` centred at each (cx, cy, w, h)."""
    for cx, cy, w, h in spots:
        if kind in ("patch", "flap"):
            sk.panel(rect(cx, cy, w, h))
            hem = cy - h / 2 + 0.012
            sk.line([(cx - w / 2 + 0.008, hem), (cx + w / 2 - 0.008, hem)], "fold", 0.003)
        if kind == "flap":
            top = cy - h / 2 - 0.006
            sk.panel(
                [
                    (cx - w / 2 - 0.006, top),
                    (cx + w / 2 + 0.006, top),
                    (cx + w / 2 + 0.006, top + 0.4 * h),
                    (cx, top + 0.52 * h),
                    (cx - w / 2 - 0.006, top + 0.4 * h),
                ]
            )
            sk.dot((cx, top + 0.4 * h), 0.006)
        elif kind == "welt":
            sk.fill(rect(cx, cy, w, 0.011), "lining")
            sk.line([(cx - w / 2, cy + 0.007), (cx + w / 2, cy + 0.007)], "ink", 0.003)
        elif kind == "kangaroo":
            sk.panel([(cx - w / 2, cy + h / 2), (cx + w / 2, cy + h / 2), (cx + w / 2 - 0.05, cy - h / 2), (cx - w / 2 + 0.05, cy - h / 2)])
            for side in (-1, 1):
                sk.line([(cx + side * (w / 2 - 0.05), cy - h / 2), (cx + side * w / 2, cy + h / 4)], "ink", 0.006)


def closure(sk: Sketch, g: Garment, y0: float, y1: float, style: str = "double", radius: float = 0.0095) -> None:
    """Front fastening from y0 down to y1: a placket with `g.buttons` buttons, or a zip."""
    if g.closure == "buttons":
        if style == "double":
            for x in (0.487, 0.513):
                sk.line([(x, y0), (x, y1)], "ink", 0.003)
        else:  # the overlapping front edge of a jacket or cardigan
            sk.line([(0.515, y0), (0.515, y1)], "ink", 0.005)
        n = max(g.buttons, 0)
        for i in range(n):
            y = y0 + (i + 0.5) * (y1 - y0) / n
            sk.dot((0.5, y), radius)
    elif g.closure == "zip":
        sk.line([(0.5, y0), (0.5, y1)], "hardware", 0.007)
        sk.fill(rect(0.5, y0 + 0.022, 0.014, 0.03), "hardware")


def neck_curve(kind: str, top: float, half: float, depth: float) -> list[Point]:
    """The front neck edge from left to right."""
    if kind == "v-neck":
        return [(0.5 - half, top), (0.5, top + depth), (0.5 + half, top)]
    return arc(0.5, top, half, depth, 180, 0, 11)


def back_neck(top: float, half: float) -> list[Point]:
    """The (higher) back neck edge from left to right: also the top edge of every body panel."""
    return [(0.5 - half, top), (0.5 - 0.55 * half, top + 0.012), (0.5, top + 0.02), (0.5 + 0.55 * half, top + 0.012), (0.5 + half, top)]


@dataclass(frozen=True)
class Top:
    """Proportions of anything worn on the upper body, dresses included (canvas units)."""

    top: float  # y of the neck points
    hem: float
    neck: float = 0.07  # half-widths from here on
    shoulder: float = 0.2
    chest: float = 0.2
    hem_width: float = 0.2
    drop: float = 0.035  # shoulder slope
    armpit: float = 0.21  # depth of the armpit below `top`
    waist: tuple[tuple[float, float], ...] = ()  # (depth below top, half-width) between armpit and hem
    hem_curve: float = 0.0  # shirt tail: how much higher the side seams end than the centre
    arm: float = 1.0  # sleeve length multiplier
    cuff: float = 0.08  # width of the sleeve opening
    band: str = ""  # tone of rib cuffs and hem band; "" for a plain stitched hem
    strap: float = 0.05  # shoulder width left when sleeveless
    v_depth: float = 0.12
    collar: float = 1.0  # size of collars and lapels


def torso(f: Top, sleeveless: bool) -> list[Point]:
    half = back_neck(f.top, f.neck)[2::-1]
    if sleeveless:
        sx = 0.5 - f.neck - f.strap
        pit = f.top + f.armpit
        half += bezier((sx, f.top + 0.004), (sx, pit), (0.5 - f.chest, pit))
    else:
        half += [(0.5 - f.shoulder, f.top + f.drop), (0.5 - f.chest, f.top + f.armpit)]
    half += [(0.5 - w, f.top + d) for d, w in f.waist]
    half += bezier((0.5 - f.hem_width, f.hem - f.hem_curve), (0.5 - f.hem_width / 2, f.hem), (0.5, f.hem))
    return symmetric(half)


def sleeve(sk: Sketch, f: Top, cut: str) -> None:
    """Both sleeves with their cuffs, drawn before the body so the armhole seam shows."""
    angle, length = SLEEVE_CUT[cut]
    a = math.radians(angle)
    d = np.array([-math.cos(a), math.sin(a)])
    n = np.array([math.sin(a), math.cos(a)])  # across the sleeve, towards its underside
    s = np.array([0.5 - f.shoulder, f.top + f.drop])
    pit = np.array([0.5 - f.chest, f.top + f.armpit])
    end_top = s + d * length * f.arm
    end_bottom = end_top + n * f.cuff
    inner = [tuple(p) for p in (s + (0.05, 0.01), s, end_top, end_bottom, pit, pit + (0.05, 0.0))]
    along = (pit - end_bottom) / np.linalg.norm(pit - end_bottom)
    cuff_depth = 0.035 if f.band else 0.018
    cuff = [tuple(end_top), tuple(end_bottom), tuple(end_bottom + along * cuff_depth), tuple(end_top - d * cuff_depth)]
    elbow = [tuple(end_top - d * length * 0.45 + n * 0.015), tuple(end_top - d * length * 0.5 + n * f.cuff * 0.8)]
    for side in (lambda pts: pts, mirror):
        sk.panel(side(inner))
        if f.band:
            sk.panel(side(cuff), f.band)
        else:
            sk.line(side(cuff[2:]), "fold", 0.003)
        if cut == "long":
            sk.line(side(elbow), "fold", 0.004)


def neckline(sk: Sketch, f: Top, kind: str, back: bool) -> None:
    """Neck opening (showing the inside) and its finish: rib band, turtleneck, collar, lapel, hood."""
    top, n = f.top, f.neck
    if kind == "turtleneck":
        sk.panel(rect(0.5, top - 0.03, 2 * n + 0.01, 0.1))
        sk.fill(arc(0.5, top - 0.08, n + 0.005, 0.012, 0, 360, 16), "lining")
        sk.line([(0.5 - n - 0.005, top - 0.035), (0.5 + n + 0.005, top - 0.035)], "ink", 0.004)
        for x in (-0.6, -0.2, 0.2, 0.6):
            sk.line([(0.5 + x * n, top - 0.03), (0.5 + x * n, top + 0.015)], "fold", 0.003)
    elif kind in ("collar", "lapel"):
        collar_piece(sk, f, kind, back)
    elif kind == "hood":
        hood(sk, f, back)
    elif kind == "strappy":
        return
    elif back:
        sk.panel(band(back_neck(top, n), 0.018), neckband(f))
    else:
        half = n * 1.3 if kind == "scoop" else n
        depth = {"v-neck": f.v_depth, "scoop": 0.1}.get(kind, 0.65 * n)
        front = neck_curve(kind, top, half, depth)
        sk.panel(back_neck(top, half) + front[::-1], "lining")
        sk.panel(front + neck_curve(kind, top, half + 0.016, depth + 0.02)[::-1], neckband(f))


def neckband(f: Top) -> str:
    return "trim" if f.band == "trim" else "rib"


def collar_piece(sk: Sketch, f: Top, kind: str, back: bool) -> None:
    c, top, n = f.collar, f.top, f.neck
    if back:  # the collar folded over the back of the neck
        sk.panel(symmetric([(0.5, top - 0.02), (0.5 - n - 0.01 * c, top - 0.02), (0.5 - n - 0.035 * c, top + 0.035 * c), (0.5, top + 0.045 * c)]))
        return
    sk.panel(rect(0.5, top - 0.008, 2 * n + 0.02, 0.03))  # collar stand behind the neck
    if kind == "collar":
        sk.panel(back_neck(top, n) + neck_curve("scoop", top, n, 0.06)[::-1], "lining")
        leaf = [(0.5 - n - 0.012, top - 0.022), (0.5 - 0.004, top + 0.05), (0.5 - 0.04 * c, top + 0.055 + 0.05 * c), (0.5 - n - 0.03 * c, top + 0.03)]
    else:
        depth = f.v_depth
        sk.panel(back_neck(top, n) + [(0.5, top + depth)], "lining")
        leaf = [
            (0.5 - n - 0.005, top - 0.02),
            (0.5 - n - 0.04 * c, top + 0.04 * c),
            (0.5 - n - 0.025 * c, top + 0.065 * c),  # the notch between collar and lapel
            (0.5 - n - 0.075 * c, top + 0.085 * c),
            (0.5 - 0.004, top + depth),
            (0.5 - n + 0.004, top + 0.01),
        ]
    sk.panel(leaf)
    sk.panel(mirror(leaf))


def hood(sk: Sketch, f: Top, back: bool) -> None:
    top, n = f.top, f.neck
    if back:  # lying flat down the back, with its centre seam
        half = arc(0.5, top + 0.02, n + 0.06, 0.05, 270, 180, 6)
        half += bezier(half[-1], (0.5 - n - 0.05, top + 0.2), (0.5, top + 0.24))[1:]
        sk.panel(symmetric(half))
        sk.line([(0.5, top - 0.03), (0.5, top + 0.235)], "ink", 0.004)
        return
    shell = arc(0.5, top - 0.02, n + 0.07, 0.15, 160, 380, 18)
    sk.panels.insert(0, (shell, "fabric"))  # behind the shoulders
    sk.panel(arc(0.5, top - 0.01, n + 0.02, 0.1, 0, 360, 20), "lining")
    sk.line(arc(0.5, top - 0.01, n + 0.028, 0.108, 180, 360, 14), "ink", 0.005)
    for x in (-0.035, 0.035):
        sk.line([(0.5 + x, top + 0.08), (0.5 + x * 1.1, top + 0.2)], "trim", 0.006)
        sk.dot((0.5 + x * 1.1, top + 0.205), 0.007, "trim")


def upper(sk: Sketch, g: Garment, f: Top, back: bool) -> None:
    """Sleeves, body, hem band and neckline of anything worn on the upper body."""
    sleeveless = g.sleeve in (None, "sleeveless")
    if not sleeveless:
        sleeve(sk, f, g.sleeve)
    sk.panel(torso(f, sleeveless))
    if f.band:
        w = f.waist[-1][1] if f.waist else f.chest
        sk.panel([(0.5 - w, f.hem - 0.045), (0.5 + w, f.hem - 0.045), (0.5 + w, f.hem), (0.5 - w, f.hem)], f.band)
    else:
        side = f.hem - f.hem_curve - 0.018
        sk.line(bezier((0.5 - f.hem_width, side), (0.5, f.hem - 0.018), (0.5 + f.hem_width, side)), "fold", 0.003)
    if g.neckline:
        neckline(sk, f, g.neckline, back)
    # drape folds under the arms: cheap shading that reads as cloth
    for side in (lambda p: p, mirror):
        x, y = 0.5 - f.chest, f.top + f.armpit
        sk.line(side([(x + 0.015, y + 0.02), (x + 0.05, y + 0.1)]), "fold", 0.004)


# ---------------------------------------------------------------------------------------------
# Silhouettes: each adds one garment, front or back, to a sketch


def length_value(g: Garment) -> float:
    family = g.spec.length_family
    return HEMS[family][LENGTHS[family].index(g.length)]


def tee(sk: Sketch, g: Garment, back: bool) -> None:
    upper(sk, g, Top(0.13, length_value(g)), back)


def tank(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(0.1, length_value(g), neck=0.085, chest=0.18, hem_width=0.19, armpit=0.27, strap=0.035, v_depth=0.16)
    upper(sk, g, f, back)


def polo(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(0.13, length_value(g) + 0.02, neck=0.06, cuff=0.075, band="rib")
    upper(sk, g, f, back)
    for x in (0.5 - f.hem_width + 0.004, 0.5 + f.hem_width - 0.004):  # side vents
        sk.line([(x, f.hem - 0.045), (x, f.hem)], "lining", 0.008)
    if not back:
        closure(sk, g, f.top + 0.05, f.top + 0.17)
        pockets(sk, g.pockets, [(0.6, f.top + 0.17, 0.075, 0.085)])


def shirt(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(
        0.12,
        length_value(g) + 0.03,
        neck=0.055,
        shoulder=0.21,
        chest=0.21,
        hem_width=0.21,
        armpit=0.22,
        hem_curve=0.05,
        cuff=0.07,
        band="fabric" if g.sleeve == "long" else "",
    )
    upper(sk, g, f, back)
    if back:
        yoke = f.top + 0.08
        x = f.shoulder - 0.01
        sk.line(bezier((0.5 - x, yoke), (0.5, yoke + 0.02), (0.5 + x, yoke)), "ink", 0.004)
        return
    closure(sk, g, f.top + 0.06, f.hem - 0.03)
    pockets(sk, g.pockets, [(0.6, f.top + 0.17, 0.08, 0.09)])


def blouse(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(0.13, length_value(g), neck=0.075, shoulder=0.185, chest=0.185, waist=((0.36, 0.19),), hem_width=0.25, cuff=0.12, strap=0.05, hem_curve=-0.02)
    upper(sk, g, f, back)
    for x in (-0.08, -0.045, 0.045, 0.08):  # soft gathers falling from the yoke
        sk.line([(0.5 + x, f.top + 0.07), (0.5 + x * 1.4, f.top + 0.25)], "fold", 0.004)


def sweater(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(0.13, length_value(g), neck=0.065, shoulder=0.215, chest=0.21, hem_width=0.21, armpit=0.22, waist=((0.4, 0.205),), cuff=0.07, band="rib")
    upper(sk, g, f, back)
    ribs(sk, f)


def ribs(sk: Sketch, f: Top) -> None:
    """Knit texture on the hem band."""
    for x in np.arange(-0.18, 0.19, 0.03):
        sk.line([(0.5 + x, f.hem - 0.04), (0.5 + x, f.hem - 0.005)], "fold", 0.003)


def cardigan(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(
        0.12,
        length_value(g) + 0.03,
        neck=0.065,
        shoulder=0.225,
        chest=0.22,
        hem_width=0.225,
        armpit=0.23,
        drop=0.045,
        waist=((0.4, 0.215),),
        cuff=0.075,
        band="rib",
        v_depth=0.2,
    )
    upper(sk, g, f, back)
    ribs(sk, f)
    if back:
        return
    start = f.top + (f.v_depth if g.neckline == "v-neck" else 0.045)
    sk.panel([(0.485, start), (0.515, start), (0.515, f.hem), (0.485, f.hem)], "rib")
    # the fronts part below the last button
    sk.fill([(0.5, f.hem - 0.04), (0.53, f.hem + 0.002), (0.47, f.hem + 0.002)], "lining")
    closure(sk, g, start + 0.01, f.hem - 0.07, style="edge")
    pockets(sk, g.pockets, [(0.5 - 0.12, f.hem - 0.12, 0.1, 0.1), (0.5 + 0.12, f.hem - 0.12, 0.1, 0.1)])


def hoodie(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(
        0.17, length_value(g) + 0.02, neck=0.065, shoulder=0.22, chest=0.22, hem_width=0.21, armpit=0.22, waist=((0.4, 0.215),), cuff=0.07, band="rib", arm=0.95
    )
    upper(sk, g, f, back)
    if not back:
        pockets(sk, g.pockets, [(0.5, f.hem - 0.13, 0.3, 0.13)])
        closure(sk, g, f.top + 0.09, f.hem)


def jacket(sk: Sketch, g: Garment, back: bool, f: Top, pocket_y: float, buttons_to: float) -> None:
    upper(sk, g, f, back)
    if back:
        sk.line([(0.5, f.top + 0.3), (0.5, f.hem)], "ink", 0.003)  # centre back seam
        return
    start = f.top + (f.v_depth if g.neckline in ("lapel", "v-neck") else 0.06)
    closure(sk, g, start, buttons_to, style="edge", radius=0.011)
    pockets(sk, g.pockets, [(0.5 - 0.12, pocket_y, 0.11, 0.09), (0.5 + 0.12, pocket_y, 0.11, 0.09)])


def blazer(sk: Sketch, g: Garment, back: bool) -> None:
    hem = length_value(g)
    f = Top(0.1, hem, neck=0.065, shoulder=0.22, chest=0.2, drop=0.02, waist=((0.36, 0.185),), hem_width=0.2, cuff=0.075, v_depth=0.24)
    jacket(sk, g, back, f, min(f.top + 0.47, hem - 0.09), min(f.top + 0.42, hem - 0.1))


def coat(sk: Sketch, g: Garment, back: bool) -> None:
    hem = length_value(g)
    f = Top(0.08, hem, neck=0.07, shoulder=0.23, chest=0.215, drop=0.03, waist=((0.36, 0.205),), hem_width=0.225, arm=1.1, cuff=0.085, v_depth=0.18, collar=1.5)
    jacket(sk, g, back, f, f.top + 0.5, min(hem - 0.08, f.top + 0.6))


def bomber(sk: Sketch, g: Garment, back: bool) -> None:
    hem = length_value(g)
    f = Top(
        0.13,
        hem,
        neck=0.065,
        shoulder=0.235,
        chest=0.235,
        hem_width=0.21,
        armpit=0.23,
        waist=((hem - 0.2, 0.24), (hem - 0.11, 0.2)),
        cuff=0.085,
        band="trim",
        arm=0.95,
    )
    jacket(sk, g, back, f, min(f.top + 0.38, hem - 0.12), f.hem)


def vest(sk: Sketch, g: Garment, back: bool) -> None:
    f = Top(0.12, length_value(g), neck=0.06, chest=0.19, hem_width=0.19, armpit=0.26, strap=0.05, hem_curve=-0.035, v_depth=0.22)
    jacket(sk, g, back, f, f.top + 0.4, f.hem - 0.02)


def dress(g: Garment, flare: float, neck: float = 0.06) -> Top:
    top, hem = 0.06, length_value(g)
    waist = (0.23, 0.12)
    return Top(
        top,
        hem,
        neck=neck,
        shoulder=0.15,
        chest=0.15,
        armpit=0.16,
        drop=0.03,
        arm=0.8,
        cuff=0.065,
        strap=0.04,
        waist=(waist, (0.34, 0.15 + flare * 0.1)),
        hem_width=0.15 + flare * (hem - top - 0.23),
    )


def sheath(sk: Sketch, g: Garment, back: bool) -> None:
    f = dress(g, flare=-0.02)
    upper(sk, g, f, back)
    sk.line([(0.5, f.hem - 0.06), (0.5, f.hem)], "ink", 0.004)  # centre vent


def aline_dress(sk: Sketch, g: Garment, back: bool) -> None:
    f = dress(g, flare=0.32)
    upper(sk, g, f, back)
    sk.line(bezier((0.38, f.top + 0.23), (0.5, f.top + 0.24), (0.62, f.top + 0.23)), "ink", 0.004)  # waist seam
    for x in (-0.09, 0.09):
        sk.line([(0.5 + x * 0.8, f.top + 0.3), (0.5 + x * 2.2, f.hem - 0.03)], "fold", 0.004)


def slip(sk: Sketch, g: Garment, back: bool) -> None:
    top, hem = 0.07, length_value(g)
    bodice = top + 0.1
    dip = 0.05 if g.neckline == "v-neck" and not back else 0.008
    half = [
        (0.5, bodice + dip),
        (0.44, bodice + dip * 0.3),
        (0.37, bodice - 0.005),
        (0.365, bodice + 0.06),
        (0.38, bodice + 0.17),
        (0.5 - 0.15 - 0.12 * (hem - top - 0.3), hem),
        (0.5, hem + 0.01),
    ]
    for x in (0.39, 0.61):
        sk.line([(x, bodice + 0.004), (x + (0.012 if x < 0.5 else -0.012), top)], "ink", 0.007)
    sk.panel(symmetric(half))
    sk.line(bezier((0.38, bodice + 0.17), (0.5, bodice + 0.185), (0.62, bodice + 0.17)), "fold", 0.004)


def shirt_dress(sk: Sketch, g: Garment, back: bool) -> None:
    f = dress(g, flare=0.05, neck=0.05)
    upper(sk, g, f, back)
    belt = f.top + 0.23
    sk.panel(rect(0.5, belt, 0.26, 0.03))
    if back:
        return
    sk.panel([(0.49, belt), (0.51, belt), (0.47, belt + 0.11), (0.45, belt + 0.1)])
    sk.panel([(0.49, belt), (0.51, belt), (0.55, belt + 0.1), (0.53, belt + 0.11)])
    closure(sk, g, f.top + 0.06, f.hem - 0.03)
    pockets(sk, g.pockets, [(0.58, f.top + 0.13, 0.055, 0.06)])


def skirt(sk: Sketch, g: Garment, back: bool, hem_half: float, pleats: int = 0) -> None:
    waist, hem = 0.1, length_value(g)
    hip = (0.5 - 0.175, waist + 0.12)
    if pleats:  # each pleat its own panel so the seams between them draw the pleat lines
        xs_top = np.linspace(hip[0], 1 - hip[0], pleats + 1)
        xs_hem = np.linspace(0.5 - hem_half, 0.5 + hem_half, pleats + 1)
        sk.panel([(0.35, waist), (0.65, waist), (1 - hip[0], hip[1] + 0.002), hip])
        for i in range(pleats):
            lift = 0.01 * (i % 2)  # alternate folds end a little higher: a wavy hem
            top = [(xs_top[i], hip[1]), (xs_top[i + 1], hip[1])]
            sk.panel(top + [(xs_hem[i + 1], hem - lift), (xs_hem[i], hem - 0.01 + lift)])
    else:
        sk.panel(symmetric([(0.5, waist), (0.35, waist), hip, (0.5 - hem_half, hem), (0.5, hem + 0.01)]))
    sk.panel(rect(0.5, waist + 0.015, 0.31, 0.035))
    if back:
        sk.line([(0.5, waist + 0.035), (0.5, waist + 0.17)], "hardware", 0.005)  # invisible zip's pull line
        return
    if g.closure != "pullover":
        closure(sk, g, waist + 0.035, hem - 0.02)
    pockets(sk, g.pockets, [(0.39, waist + 0.12, 0.08, 0.08), (0.61, waist + 0.12, 0.08, 0.08)])


def pencil_skirt(sk: Sketch, g: Garment, back: bool) -> None:
    skirt(sk, g, back, hem_half=0.16)
    length = length_value(g)
    sk.line([(0.5, length - 0.07), (0.5, length)], "ink", 0.004)  # vent


def aline_skirt(sk: Sketch, g: Garment, back: bool) -> None:
    skirt(sk, g, back, hem_half=0.19 + 0.35 * (length_value(g) - 0.3))


def pleated_skirt(sk: Sketch, g: Garment, back: bool) -> None:
    skirt(sk, g, back, hem_half=0.2 + 0.35 * (length_value(g) - 0.3), pleats=10)


def pants(sk: Sketch, g: Garment, back: bool, waist: float, hem: float, outer: float, inner: float, rise: float = 0.27) -> None:
    """Two legs joined at the crotch; `outer` and `inner` are the hem's x offsets from the centre."""
    hip = (0.5 - 0.2, waist + 0.13)
    half = [(0.5, waist), (0.31, waist), hip, (0.5 - outer, hem), (0.5 - inner, hem + 0.005), (0.5, waist + rise)]
    sk.panel(half + mirror(half[::-1])[1:-1])
    sk.panel(rect(0.5, waist + 0.018, 0.38, 0.036))
    for side in (lambda p: p, mirror):  # crease down each leg
        sk.line(side([(0.5 - 0.1, waist + 0.05), (0.5 - (outer + inner) / 2, hem - 0.02)]), "fold", 0.004)
    if not back:
        sk.line([(0.5, waist + 0.036), (0.5, waist + rise - 0.04)], "ink", 0.004)


def pants_pockets(sk: Sketch, g: Garment, waist: float, thigh: float) -> None:
    if g.pockets == "welt":
        for side in (lambda p: p, mirror):
            slit = [(0.33, waist + 0.05), (0.36, waist + 0.05), (0.32, waist + 0.12), (0.31, waist + 0.115)]
            sk.fill(side(slit), "lining")
    else:
        pockets(sk, g.pockets, [(0.38, thigh, 0.1, 0.1), (0.62, thigh, 0.1, 0.1)])


def trousers(sk: Sketch, g: Garment, back: bool) -> None:
    pants(sk, g, back, 0.07, length_value(g), outer=0.165, inner=0.035)
    if not back:
        pants_pockets(sk, g, 0.07, 0.5)


def wide_leg(sk: Sketch, g: Garment, back: bool) -> None:
    pants(sk, g, back, 0.07, length_value(g), outer=0.27, inner=0.012)
    if not back:
        pants_pockets(sk, g, 0.07, 0.5)


def joggers(sk: Sketch, g: Garment, back: bool) -> None:
    hem = length_value(g)
    pants(sk, g, back, 0.07, hem, outer=0.13, inner=0.055)
    for side in (lambda p: p, mirror):  # elastic ankle cuff
        sk.panel(side(rect(0.5 - 0.0925, hem - 0.0225, 0.075, 0.045)), "rib")
    for x in np.arange(0.32, 0.69, 0.03):  # gathered elastic waist
        sk.line([(x, 0.075), (x, 0.1)], "fold", 0.003)
    if not back:
        for x in (0.48, 0.52):
            sk.line([(x, 0.09), (x + (x - 0.5) * 1.5, 0.2)], "trim", 0.005)
        pants_pockets(sk, g, 0.07, 0.42)


def shorts(sk: Sketch, g: Garment, back: bool) -> None:
    hem = length_value(g)
    pants(sk, g, back, 0.2, hem, outer=0.23, inner=0.02, rise=0.25)
    for side in (lambda p: p, mirror):  # turned-up hem
        sk.line(side([(0.5 - 0.228, hem - 0.03), (0.5 - 0.022, hem - 0.027)]), "ink", 0.004)
    if not back:
        pants_pockets(sk, g, 0.2, 0.38)


def tote(sk: Sketch, g: Garment, back: bool) -> None:
    for dx, dy in ((0.0, 0.0), (0.03, -0.025)) if not back else ((0.0, 0.0),):
        sk.panels.insert(0, (band(arc(0.5 + dx, 0.4 + dy, 0.13, 0.25, 180, 360, 14), 0.025), "solid"))
    sk.panel([(0.25, 0.38), (0.75, 0.38), (0.7, 0.86), (0.3, 0.86)])
    sk.line([(0.252, 0.41), (0.748, 0.41)], "fold", 0.003)
    if not back:
        pockets(sk, g.pockets, [(0.5, 0.62, 0.24, 0.15)])
    sk.scale(length_value(g))


def rounded_bottom(x0: float, x1: float, bottom: float, r: float = 0.06) -> list[Point]:
    """The lower corners of a bag, right to left, down to `bottom`."""
    return arc(x1 - r, bottom, r, r, 0, 90, 5) + arc(x0 + r, bottom, r, r, 90, 180, 5)


def shoulder_bag(sk: Sketch, g: Garment, back: bool) -> None:
    sk.panel(band(bezier((0.29, 0.46), (0.5, -0.25), (0.71, 0.46), 16), 0.018), "solid")
    body = [(0.28, 0.44), (0.72, 0.44)] + rounded_bottom(0.28, 0.72, 0.76)
    sk.panel(body)
    if back:
        sk.line([(0.3, 0.56), (0.7, 0.56)], "fold", 0.003)
    else:
        sk.panel([(0.275, 0.43), (0.725, 0.43), (0.725, 0.54)] + arc(0.5, 0.54, 0.225, 0.06, 0, 180, 12))
        if g.closure == "buttons":
            for i in range(g.buttons):
                sk.dot((0.5 + (i - (g.buttons - 1) / 2) * 0.035, 0.58), 0.011)
        else:
            sk.line([(0.32, 0.635), (0.68, 0.635)], "hardware", 0.006)
            sk.fill(rect(0.66, 0.65, 0.012, 0.035), "hardware")
        pockets(sk, g.pockets, [(0.5, 0.715, 0.2, 0.1)])
    sk.scale(length_value(g))


def backpack(sk: Sketch, g: Garment, back: bool) -> None:
    body = arc(0.5, 0.4, 0.2, 0.2, 180, 360, 16) + rounded_bottom(0.3, 0.7, 0.8)
    sk.panel(band(arc(0.5, 0.2, 0.05, 0.05, 180, 360, 9), 0.02), "solid")  # grab handle
    strap = band([(0.42, 0.28), (0.4, 0.5), (0.37, 0.86)], 0.05)
    straps = [strap, mirror(strap)]
    if back:
        sk.panel(body)
        sk.panel(rect(0.5, 0.5, 0.3, 0.34), "solid")  # padded back panel
        for s in straps:
            sk.panel(s, "solid")
    else:
        for s in ([(0.36, 0.3), (0.27, 0.55), (0.3, 0.8)], [(0.64, 0.3), (0.73, 0.55), (0.7, 0.8)]):
            sk.panel(band(s, 0.04), "solid")  # shoulder straps peeking out from behind
        sk.panel(body)
        sk.line(arc(0.5, 0.43, 0.165, 0.18, 180, 360, 16), "hardware", 0.006)
        sk.fill(rect(0.35, 0.45, 0.014, 0.04), "hardware")
        pockets(sk, g.pockets, [(0.5, 0.7, 0.28, 0.2)])
    sk.scale(length_value(g))


SILHOUETTES: dict[str, Callable[[Sketch, Garment, bool], None]] = {
    "tee": tee,
    "tank": tank,
    "polo": polo,
    "shirt": shirt,
    "blouse": blouse,
    "sweater": sweater,
    "cardigan": cardigan,
    "hoodie": hoodie,
    "blazer": blazer,
    "coat": coat,
    "bomber": bomber,
    "vest": vest,
    "sheath": sheath,
    "aline_dress": aline_dress,
    "slip": slip,
    "shirt_dress": shirt_dress,
    "pencil_skirt": pencil_skirt,
    "aline_skirt": aline_skirt,
    "pleated_skirt": pleated_skirt,
    "trousers": trousers,
    "wide_leg": wide_leg,
    "joggers": joggers,
    "shorts": shorts,
    "tote": tote,
    "shoulder_bag": shoulder_bag,
    "backpack": backpack,
}


# ---------------------------------------------------------------------------------------------
# Rasterising


@dataclass(frozen=True)
class Jitter:
    """The per-photo variation; drawn from the rng in one fixed-size call so attributes never shift it."""

    shift: tuple[float, float]
    scale: float
    angle: float  # degrees
    brightness: float
    background: RGB

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Jitter:
        u = rng.random(8)
        grey = 235 + 15 * u[5]
        return cls(
            shift=(0.06 * u[0] - 0.03, 0.06 * u[1] - 0.03),
            scale=0.95 + 0.1 * u[2],
            angle=6 * u[3] - 3,
            brightness=0.95 + 0.1 * u[4],
            background=(round(grey + 3 * u[6] - 1.5), round(grey), round(grey + 3 * u[7] - 1.5)),
        )


@dataclass(frozen=True)
class Pose:
    """Affine map from canvas units to pixels of the supersampled image."""

    matrix: np.ndarray
    offset: np.ndarray
    px: float  # pixels per canvas unit

    @classmethod
    def make(cls, pixels: int, jitter: Jitter, zoom: float, focus: Point) -> Pose:
        a = math.radians(jitter.angle)
        px = pixels * jitter.scale * zoom
        matrix = px * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        centre = pixels * (np.array([0.5, 0.5]) + jitter.shift)
        return cls(matrix, centre - matrix @ np.array(focus), px)

    def xy(self, points: Sequence[Point]) -> list[float]:
        return (np.asarray(points, dtype=float) @ self.matrix.T + self.offset).ravel().tolist()


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def luminance(c: RGB) -> float:
    return 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]


# Panel tones: index 0 is the background. Only "fabric" carries the pattern.
PANEL_TONES = ("background", "fabric", "solid", "rib", "lining", "trim")
PATTERN_LEVELS = 3  # none, half (where gingham bands cross the ground), full accent


def palette(g: Garment, brightness: float) -> dict[str, RGB]:
    base = COLOURS[g.colour]
    dark = luminance(base) < 70
    # on dark cloth seams read as highlights, on light cloth as shadows
    ink = mix(base, (255, 255, 255), 0.3) if dark else mix(base, (0, 0, 0), 0.45)
    fold = mix(base, (255, 255, 255), 0.1) if dark else mix(base, (0, 0, 0), 0.13)
    hardware = (226, 222, 210) if luminance(base) < 110 else (44, 40, 38)
    tones = {
        "fabric": base,
        "solid": base,
        "rib": fold,
        "lining": mix(base, (0, 0, 0), 0.5),
        "ink": ink,
        "fold": fold,
        "trim": COLOURS[g.accent],
        "hardware": hardware,
    }
    return {k: mix(v, (0, 0, 0), 1 - brightness) if brightness < 1 else mix(v, (255, 255, 255), brightness - 1) for k, v in tones.items()}


def colour_table(tones: dict[str, RGB], background: RGB) -> list[int]:
    """RGB for every (panel tone, pattern level, on-a-seam) code, as a flat "P" mode palette."""
    seam_lighter = sum(tones["ink"]) > sum(tones["fabric"])
    table: list[int] = []
    for name in PANEL_TONES:
        colour = background if name == "background" else tones[name]
        for level in range(PATTERN_LEVELS):
            c = mix(colour, tones["trim"], level / 2) if name == "fabric" else colour
            seam = mix(c, (255, 255, 255), 0.28) if seam_lighter else mix(c, (0, 0, 0), 0.4)
            table += [*c, *seam]
    return table


def draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, pose: Pose, box: tuple[float, float, float, float]) -> None:
    """Pattern level (1 half, 2 full accent) over `box`, on a grid anchored at the origin."""
    x0, y0, x1, y1 = box
    if pattern == "striped":
        for y in np.arange(math.floor(y0 / 0.06) * 0.06, y1, 0.06):
            draw.polygon(pose.xy([(x0, y), (x1, y), (x1, y + 0.028), (x0, y + 0.028)]), fill=2)
    elif pattern == "pinstriped":
        for x in np.arange(math.floor(x0 / 0.035) * 0.035, x1, 0.035):
            draw.polygon(pose.xy([(x, y0), (x + 0.005, y0), (x + 0.005, y1), (x, y1)]), fill=2)
    elif pattern == "polka-dot":
        r = 0.011 * pose.px
        for row, y in enumerate(np.arange(math.floor(y0 / 0.05) * 0.05, y1 + 0.05, 0.05)):
            xs = np.arange(math.floor(x0 / 0.05) * 0.05 + 0.025 * (row % 2), x1 + 0.05, 0.05)
            for cx, cy in np.asarray(pose.xy([(x, y) for x in xs])).reshape(-1, 2):
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=2)
    elif pattern == "checked":  # gingham: half accent where one band crosses the ground, full where two do
        ys = np.arange(math.floor(y0 / 0.06) * 0.06, y1, 0.06)
        xs = np.arange(math.floor(x0 / 0.06) * 0.06, x1, 0.06)
        for y in ys:
            draw.polygon(pose.xy([(x0, y), (x1, y), (x1, y + 0.03), (x0, y + 0.03)]), fill=1)
        for x in xs:
            draw.polygon(pose.xy([(x, y0), (x + 0.03, y0), (x + 0.03, y1), (x, y1)]), fill=1)
        for y in ys:
            for x in xs:
                draw.polygon(pose.xy([(x, y), (x + 0.03, y), (x + 0.03, y + 0.03), (x, y + 0.03)]), fill=2)


def seams(ids: np.ndarray) -> np.ndarray:
    """1 on either side of a boundary between two panels (or a panel and the background)."""
    e = np.zeros(ids.shape, dtype=np.uint8)
    d = ids[1:] != ids[:-1]
    e[1:] |= d
    e[:-1] |= d
    d = ids[:, 1:] != ids[:, :-1]
    e[:, 1:] |= d
    e[:, :-1] |= d
    return e


def rasterise(sk: Sketch, g: Garment, pose: Pose, pixels: int, jitter: Jitter) -> tuple[Image.Image, np.ndarray]:
    """The supersampled RGB picture and the garment's coverage (bool)."""
    # Panels are drawn as labels, and every pixel's colour is then looked up from (tone, pattern, seam):
    # much cheaper than pasting colours through masks, and seams fall exactly where panels meet.
    tones = palette(g, jitter.brightness)
    labels = Image.new("L", (pixels, pixels), 0)
    label = ImageDraw.Draw(labels)
    tone_of = [0] * 256
    for i, (poly, tone) in enumerate(sk.panels, start=1):
        label.polygon(pose.xy(poly), fill=i)
        tone_of[i] = PANEL_TONES.index(tone)
    ids = np.asarray(labels)
    code = np.array(labels.point([t * 2 * PATTERN_LEVELS for t in tone_of]))
    if g.pattern != "solid":
        levels = Image.new("L", (pixels, pixels), 0)
        draw_pattern(ImageDraw.Draw(levels), g.pattern, pose, sk.bbox())
        fabric = labels.point([2 if t == PANEL_TONES.index("fabric") else 0 for t in tone_of])
        code += np.asarray(levels) * np.asarray(fabric)
    code += seams(ids)
    indexed = Image.fromarray(code, "L")
    indexed.putpalette(colour_table(tones, jitter.background))
    rgb = indexed.convert("RGB")
    draw_details(ImageDraw.Draw(rgb), sk, pose, tones)
    return rgb, ids > 0


def draw_details(paint: ImageDraw.ImageDraw, sk: Sketch, pose: Pose, tones: dict[str, RGB]) -> None:
    for poly, tone in sk.fills:
        paint.polygon(pose.xy(poly), fill=tones[tone])
    for poly, tone, width in sk.lines:
        paint.line(pose.xy(poly), fill=tones[tone], width=max(1, round(width * pose.px)), joint="curve")
    for (cx, cy), r, tone in sk.dots:
        (x, y), rr = pose.xy([(cx, cy)]), r * pose.px
        rim = max(1, round(rr / 4))
        paint.ellipse((x - rr, y - rr, x + rr, y + rr), fill=tones[tone], outline=tones["ink"], width=rim)


@functools.lru_cache(maxsize=8)
def falloff(n: int) -> np.ndarray:
    """How much a soft key light from the top left fades across the frame, in 1/256ths."""
    ramp = np.linspace(0, 1, n)
    return np.round(256 * (0.07 * ramp[None, :] + 0.09 * ramp[:, None])).astype(np.uint16)


def light(rgb: Image.Image, garment: np.ndarray) -> np.ndarray:
    """Shade the garment (not the backdrop) with the key light's falloff."""
    gain = 256 - falloff(rgb.size[0]) * garment
    return ((np.asarray(rgb, dtype=np.uint16) * gain[:, :, None]) >> 8).astype(np.uint8)


def render_garment(garment: Garment, view: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 RGB image of the garment seen from `view`."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    jitter = Jitter.draw(rng)
    sk = Sketch()
    SILHOUETTES[garment.spec.silhouette](sk, garment, view == BACK)
    if view == CLOSE_UP:
        x0, y0, x1, y1 = sk.bbox()
        zoom, focus = CLOSE_UP_ZOOM, (0.5, y0 + 0.25 * (y1 - y0))
    else:
        zoom, focus = 1.0, (0.5, 0.5)
    pixels = size * SUPERSAMPLE
    pose = Pose.make(pixels, jitter, zoom, focus)
    rgb, covered = rasterise(sk, garment, pose, pixels, jitter)
    return light(rgb.reduce(SUPERSAMPLE), covered[::SUPERSAMPLE, ::SUPERSAMPLE])


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str], columns: int = 8) -> Image.Image:
    """A grid of images with a small text label under each (PIL's default font), for a person to look at."""
    if len(images) != len(labels):
        raise ValueError("need one label per image")
    cell = max((im.shape[0] for im in images), default=32)
    font = ImageFont.load_default()
    label_h = 14
    rows = max(1, math.ceil(len(images) / columns))
    sheet = Image.new("RGB", (columns * cell, rows * (cell + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (im, text) in enumerate(zip(images, labels, strict=True)):
        x, y = (i % columns) * cell, (i // columns) * (cell + label_h)
        sheet.paste(Image.fromarray(im), (x, y))
        while text and draw.textlength(text, font=font) > cell - 2:
            text = text[:-1]
        draw.text((x + 1, y + cell + 1), text, fill=(0, 0, 0), font=font)
    return sheet
