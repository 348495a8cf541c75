"""Camera-like photos of Fashion-MNIST test images: the inputs a kiosk really sees, seeded and reproducible.

A test image (bright garment on black, 28x28) is turned into what a camera hands over: the garment dark on a
light (or, for `dark`, bright on a dark) background, sometimes underexposed (`dim`), upscaled to fill 30-90% of the frame's short side, off
centre, slightly rotated, lit unevenly (a gradient and vignetting), with a colour cast, sensor noise, and
saved as a JPEG of quality 70-95, sometimes turned and tagged with an EXIF orientation as phones do.

The garment's darkness is the data set's own: where the background has reflectance `b`, a pixel of value `v`
has reflectance `b * (1 - v / 255)`, so a flat white background gives back exactly the data set's photo form.
Every condition is measured as agreement with the model's prediction on the data set's own image (what
preprocessing can hope to reach) and accuracy against the label.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

FRAME_SIZES = {"qvga": (320, 240), "vga": (640, 480), "1080p": (1920, 1080), "12mp": (4000, 3000)}
LIGHT_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "grey": (0.80, 0.80, 0.80), "beige": (0.95, 0.90, 0.80)}


@dataclass(frozen=True)
class Condition:
    """How one photo is taken; every range is drawn uniformly per photo from the seeded generator."""

    name: str
    description: str
    fill: tuple[float, float] = (0.55, 0.75)  # garment's height / frame's short side
    noise: tuple[float, float] = (0.0, 0.0)  # sensor noise sigma, grey levels per channel
    gradient: tuple[float, float] = (0.0, 0.0)  # light falloff across the frame, fraction (0.05 = +-6 levels)
    vignette: tuple[float, float] = (0.0, 0.0)  # darkening in the corners, fraction
    cast: float = 0.0  # largest per-channel gain away from 1 (colour cast)
    backgrounds: tuple[str, ...] = ("white",)
    dark: bool = False  # bright garment on a dark background (the data set's own polarity)
    rotate: float = 0.0  # largest rotation, degrees
    quality: tuple[int, int] = (90, 95)
    exif: bool = False  # stored turned by 90/180/270 degrees with the EXIF orientation that turns it upright
    offset: float = 0.8  # how far off centre, as a fraction of the free room on each axis
    exposure: tuple[float, float] = (1.0, 1.0)  # the light's level: 0.3 makes a white background mid-grey
    # catalogue images (no camera): "trimmed" to the garment on both axes, the data set's own framing upscaled
    # ("long": touching on the long axis only), or a PNG "cutout" with `under` colours beneath the transparency;
    # their long side is drawn from `long_side` px, whatever frame size is asked for
    catalogue: str = ""
    under: tuple[str, ...] = ()
    long_side: tuple[int, int] = (300, 800)


CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("clean", "flat white background, no noise, centred-ish, JPEG 95", quality=(95, 95), offset=0.3),
    Condition("noise", "sensor noise sigma 2-6 levels, JPEG 70-95", noise=(2, 6), quality=(70, 95)),
    Condition("light", "uneven light: +-4-10% gradient, 5-20% vignetting, noise 2-4",
              noise=(2, 4), gradient=(0.08, 0.2), vignette=(0.05, 0.2)),
    Condition("background", "light grey or beige background, colour cast up to 8%, noise 2-4",
              noise=(2, 4), cast=0.08, backgrounds=("grey", "beige")),
    Condition("size", "garment fills 30-90% of the short side, anywhere in the frame, noise 2-4",
              fill=(0.3, 0.9), noise=(2, 4), offset=1.0),
    Condition("rotated", "rotated up to 8 degrees, noise 2-4", noise=(2, 4), rotate=8.0),
    Condition("exif", "stored turned, with the EXIF orientation a phone writes, noise 2-4", noise=(2, 4), exif=True),
    Condition("dark", "bright garment on a dark background, noise 2-4", noise=(2, 4), dark=True),
    Condition("camera", "all of the above at once (light backgrounds)", fill=(0.3, 0.9), noise=(2, 6),
              gradient=(0.0, 0.15), vignette=(0.0, 0.2), cast=0.08, backgrounds=("white", "grey", "beige"),
              rotate=6.0, quality=(70, 95), exif=True, offset=1.0),
    Condition("dim", "underexposed: a light background shot mid-grey (exposure 25-50%), light falling off to one "
              "side by 10-30%, strong sensor noise 4-10, JPEG 70-95", exposure=(0.25, 0.5), gradient=(0.1, 0.3),
              noise=(4, 10), backgrounds=("white", "grey", "beige"), quality=(70, 95)),
    Condition("trimmed", "catalogue: trimmed to the garment on both axes (it touches all four edges), white or light "
              "grey, clean JPEG 90-95, 300-800 px", catalogue="trimmed", backgrounds=("white", "light grey")),
    Condition("long", "catalogue: the data set's own framing upscaled (touching the long axis, centred on the short), "
              "white or light grey, JPEG 90-95, 300-800 px", catalogue="long", backgrounds=("white", "light grey")),
    Condition("cutout", "catalogue: PNG cut-out trimmed on both axes, black, white or a random colour under the "
              "transparency, 300-800 px", catalogue="cutout", under=("black", "white", "random")),
    Condition("catalogue sizes", "catalogue: trimmed on both axes, white, 64-2,000 px on the long side, JPEG 90-95",
              catalogue="trimmed", long_side=(64, 2000)),
)}
CATALOGUE_BACKGROUNDS = {"white": 1.0, "light grey": 0.85}


@dataclass(frozen=True)
class Photo:
    """One generated photo: its encoded bytes and where it came from."""

    data: bytes
    index: int  # position in the images it was made from
    label: int
    condition: str
    size: tuple[int, int]  # (width, height) as displayed, after EXIF orientation
    meta: dict = field(default_factory=dict, compare=False)


def camera_photo(img: np.ndarray, condition: Condition, size: tuple[int, int], rng: np.random.Generator,
                 fmt: str = "JPEG") -> tuple[bytes, dict]:
    """One dataset-form image (uint8 28x28) -> encoded photo bytes of `size` (W, H), and what was drawn."""
    w, h = size
    u = lambda lo_hi: float(rng.uniform(*lo_hi)) if lo_hi[1] > lo_hi[0] else float(lo_hi[0])  # noqa: E731
    fill = u(condition.fill)
    side = max(8, int(round(fill * min(w, h))))
    angle = float(rng.uniform(-condition.rotate, condition.rotate)) if condition.rotate else 0.0
    # the garment's "darkness" v/255 at frame resolution: bicubic upscale is what a lens and demosaic give
    v = Image.fromarray(img).resize((side, side), Image.Resampling.BICUBIC)
    if angle:
        v = v.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    gw, gh = v.size
    room_x, room_y = max(0, w - gw), max(0, h - gh)
    cx = room_x / 2 + rng.uniform(-1, 1) * condition.offset * room_x / 2
    cy = room_y / 2 + rng.uniform(-1, 1) * condition.offset * room_y / 2
    x0, y0 = int(round(cx)), int(round(cy))
    dark = np.zeros((h, w), np.float32)
    vv = np.asarray(v, np.float32) / 255.0
    dark[y0 : y0 + gh, x0 : x0 + gw] = vv[: h - y0, : w - x0]

    bg_name = condition.backgrounds[int(rng.integers(len(condition.backgrounds)))]
    if condition.dark:
        base = float(rng.uniform(0.05, 0.15))
        refl = base + (0.9 - base) * dark  # bright garment on a dark cloth
        refl = np.repeat(refl[:, :, None], 3, axis=2)
    else:
        bg = np.asarray(LIGHT_BACKGROUNDS[bg_name], np.float32) * float(rng.uniform(0.94, 1.0))
        refl = (1.0 - dark)[:, :, None] * bg  # (H, W, 3)

    exposure = u(condition.exposure)
    light = np.full((h, w), exposure, np.float32)
    g = u(condition.gradient)
    if g:
        theta = rng.uniform(0, 2 * math.pi)
        xs = (np.arange(w, dtype=np.float32) / max(1, w - 1) - 0.5)[None, :]
        ys = (np.arange(h, dtype=np.float32) / max(1, h - 1) - 0.5)[:, None]
        light = light * (1.0 + g * (math.cos(theta) * xs + math.sin(theta) * ys))
    vig = u(condition.vignette)
    if vig:
        xs = (np.arange(w, dtype=np.float32) / max(1, w - 1) * 2 - 1)[None, :]
        ys = (np.arange(h, dtype=np.float32) / max(1, h - 1) * 2 - 1)[:, None]
        light = light * (1.0 - vig * (xs * xs + ys * ys) / 2.0)
    gains = np.ones(3, np.float32)
    if condition.cast:
        gains = (1.0 + rng.uniform(-condition.cast, condition.cast, 3)).astype(np.float32)
        gains /= gains.max() if gains.max() > 1.0 else 1.0

    rgb = refl * (light[:, :, None] * gains * 255.0)
    sigma = u(condition.noise)
    if sigma:
        rgb += rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    pixels = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")

    orientation = 1
    if condition.exif:
        orientation = int(rng.choice([1, 3, 6, 8]))
        # store the picture so that turning it by its orientation tag shows it upright
        stored = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
        if stored[orientation] is not None:
            pixels = pixels.transpose(stored[orientation])
    quality = int(rng.integers(condition.quality[0], condition.quality[1] + 1))
    buf = io.BytesIO()
    kw = {"quality": quality} if fmt == "JPEG" else {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    pixels.save(buf, format=fmt, **kw)
    meta = {"fill": round(fill, 3), "angle": round(angle, 2), "background": "dark" if condition.dark else bg_name,
            "noise": round(sigma, 2), "exposure": round(exposure, 3), "gradient": round(g, 3), "vignette": round(vig, 3),
            "quality": quality, "orientation": orientation, "offset": (x0, y0)}
    return buf.getvalue(), meta


def catalogue_image(img: np.ndarray, condition: Condition, rng: np.random.Generator) -> tuple[bytes, dict, tuple[int, int]]:
    """One dataset-form image (uint8 28x28) -> a catalogue image's encoded bytes, what was drawn, and its (W, H).

    The garment is the data set's own, dark on a light background (reflectance 1 - v/255 times the background's),
    upscaled bicubically so that its long side is drawn from `condition.long_side`."""
    v = img.astype(np.float32) / 255.0
    if condition.catalogue in ("trimmed", "cutout"):
        rows, cols = np.flatnonzero(img.max(axis=1) > 0), np.flatnonzero(img.max(axis=0) > 0)
        if len(rows):
            v = v[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    long_side = int(rng.integers(condition.long_side[0], condition.long_side[1] + 1))
    h0, w0 = v.shape
    f = long_side / max(h0, w0)
    w, h = max(1, int(round(w0 * f))), max(1, int(round(h0 * f)))
    up = np.clip(np.asarray(Image.fromarray(v).resize((w, h), Image.Resampling.BICUBIC), np.float32), 0.0, 1.0)
    meta = {"catalogue": condition.catalogue, "long_side": long_side}
    buf = io.BytesIO()
    if condition.catalogue == "cutout":
        under = condition.under[int(rng.integers(len(condition.under)))]
        colour = {"black": (0, 0, 0), "white": (255, 255, 255)}.get(under) or tuple(int(c) for c in rng.integers(0, 256, 3))
        gray = np.rint(255.0 * (1.0 - up)).astype(np.uint8)
        alpha = np.rint(255.0 * np.clip(up * 16.0, 0.0, 1.0)).astype(np.uint8)  # opaque from a data-set value of 16
        rgba = np.empty((h, w, 4), np.uint8)
        rgba[:, :, :3] = np.where(alpha[:, :, None] > 0, gray[:, :, None], np.asarray(colour, np.uint8))
        rgba[:, :, 3] = alpha
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
        meta["under"] = under
    else:
        name = condition.backgrounds[int(rng.integers(len(condition.backgrounds)))]
        level = CATALOGUE_BACKGROUNDS.get(name, 1.0)
        quality = int(rng.integers(condition.quality[0], condition.quality[1] + 1))
        rgb = np.rint(255.0 * level * (1.0 - up)).astype(np.uint8)
        Image.fromarray(np.repeat(rgb[:, :, None], 3, axis=2), "RGB").save(buf, format="JPEG", quality=quality)
        meta.update(background=name, quality=quality)
    return buf.getvalue(), meta, (w, h)


def make_photos(images: np.ndarray, labels: np.ndarray, conditions=tuple(CONDITIONS), sizes=("vga",),
                seed: int = 0) -> list[Photo]:
    """Photos of every image under every condition at every frame size (a catalogue condition draws its own size);
    the same seed gives the same bytes."""
    out = []
    for ci, cname in enumerate(conditions):
        cond = CONDITIONS[cname] if isinstance(cname, str) else cname
        for si, sname in enumerate(sizes):
            size = FRAME_SIZES[sname] if isinstance(sname, str) else tuple(sname)
            rng = np.random.default_rng([seed, ci, si])
            for i, (img, label) in enumerate(zip(images, labels, strict=True)):
                if cond.catalogue:
                    data, meta, shape = catalogue_image(img, cond, rng)
                else:
                    (data, meta), shape = camera_photo(img, cond, size, rng), size
                out.append(Photo(data, i, int(label), cond.name, shape, meta))
    return out


def agreement(classifier, images: np.ndarray, labels: np.ndarray, photos: list[Photo]) -> dict:
    """Per condition: agreement of the photo's prediction with the dataset image's, and accuracy vs the label."""
    reference = classifier.predict_proba(images).argmax(1)
    predicted = classifier.predict_proba([p.data for p in photos]).argmax(1)
    rows: dict[str, dict] = {}
    for p, got in zip(photos, predicted, strict=True):
        r = rows.setdefault(p.condition, {"n": 0, "agree": 0, "correct": 0, "dataset_correct": 0})
        r["n"] += 1
        r["agree"] += int(got == reference[p.index])
        r["correct"] += int(got == p.label)
        r["dataset_correct"] += int(reference[p.index] == p.label)
    return {name: {"n": r["n"], "agreement": r["agree"] / r["n"], "accuracy": r["correct"] / r["n"],
                   "dataset_accuracy": r["dataset_correct"] / r["n"], "description": CONDITIONS[name].description
                   if name in CONDITIONS else ""} for name, r in rows.items()}


def with_condition(name: str, **changes) -> Condition:
    """A registered condition with some fields changed (for experiments and tests)."""
    return replace(CONDITIONS[name], **changes)
