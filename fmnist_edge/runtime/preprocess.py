"""Fashion-MNIST preprocessing: a photo of a garment becomes a 28x28 dataset-form image the way the data set was made.

Xiao, Rasul and Vollgraf (2017) made Fashion-MNIST from product photos on a light background by: trimming
the edges close to the corner colour (within 5% of the maximum intensity), resizing the longest edge to 28
by subsampling, sharpening (Gaussian, radius and sigma 1.0), extending the short edge to 28 with the image
centred, negating, and converting to 8-bit grayscale (the data set's darkest garment pixel is 254-255 in
99% of its images, so that step also stretched the contrast). `to_dataset_form` keeps those steps and makes
them hold for camera frames, which the paper's studio photos never were:

- **Gray first, small first.** Every step works on 8-bit gray (it commutes with the paper's steps up to
  rounding). The frame is decoded small (short side 120-240 px: a JPEG straight at 1/2..1/8 scale from its
  DCT, see `decode.Source`); the garment is found on a copy of that reduced again to 60-120 px, and its box
  made exact on the decoded frame. The 28-px image is averaged (box filter, not the paper's point
  subsampling, so sensor noise does not alias) from the coarsest scale that still leaves 40 px on the
  garment's long side. A 12 MP JPEG is never decoded at full size.
- **Background from the frame's border, not its corners.** A quadratic light surface is fitted robustly to
  a band around the border (outliers such as a garment touching the edge are refitted away), so a gradient
  and vignetting are modelled instead of being read as garment; dividing by it (flat-field correction) makes
  a grey, beige or colour-cast background white, as the paper's was.
- **A threshold from the background's own statistics.** A pixel is garment when it is darker than the
  background by more than the paper's 5% or four times the border's noise, whichever is larger: single
  noisy pixels no longer reach the threshold.
- **The largest connected object.** The trim box is that of the largest 8-connected object (parts a pixel
  apart count as one), so a speck of noise or dirt elsewhere in the frame does not widen it to the frame.
- **Contrast.** After the flat-field correction the garment's darkness is stretched so that its darkest
  pixel is 255, as in the data set, so exposure and a dark-on-light versus light-on-dark shot matter less.

Polarity comes from the object, not from how bright the frame is: a frame whose object stands out from the
fitted background more by being lighter than by being darker (summed over the pixels past each threshold) has the
data set's polarity and is negated, so the rest works on a dark garment on a light background. A dim, mid-grey
background with a darker garment is a photo like any other. Dataset form -- a single-channel 28x28 input --
passes through unchanged. Dataset form becomes the model input (pixel / 255) in one place, `data.normalize`,
which the Classifier writes straight into its infer requests; `to_model_input` is its checked front for the
converter's checks and the benchmarks.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter

from .. import data
from ..contract import IMAGE_SIZE as SIZE
from ..contract import POLARITIES
from ..errors import ConfigError, ImageShapeError, ImageTypeError, ImageValueError
from .decode import Source

TRIM = 0.05  # "within 5% of the maximum possible intensity", as a fraction of the background's brightness
NOISE_SIGMAS = 4.0  # the garment threshold is at least this many noise sigmas of the border
DECODE_SIDE = 120  # the frame is decoded at the coarsest scale that leaves this on its short side: 120..239 px
DETECT_SIDE = 60  # ... the garment found on a copy of it reduced to 60..119 px, its box then made exact on the frame
DETECT_PIXELS = 2**20  # ... and at most this many pixels: a thin panorama is reduced further (memory, time)
BAND_OBJECT = 0.25  # an object on more than this fraction of the border band: the border is not the background
OTHER_SIDE = 0.02  # ... or when this fraction of the frame stands out from it the other way as well,
OTHER_STEP = 0.15  # by more than this of the background's level (a background lighter than the band's light)
LIGHT_SPREAD = 0.5  # ... or when the light fitted to the band varies by more than this over the frame
BAND_NOISE = 8.0  # ... or when its pixels scatter about the fitted light by more than this (grey levels, sigma)
EXACT_AREA = 2**18  # a box found on the reduced copy is made exact on the frame up to this many pixels
GARMENT_SIDE = 40  # the 28-px image is averaged from at least this many pixels on the garment's long side
# A frame needs no more than this on its short side: a garment filling 30% of it still has GARMENT_SIDE px, and
# the frame is decoded at DECODE_SIDE..2*DECODE_SIDE px. The kiosk page scales frames down to it before upload.
FRAME_SHORT_SIDE = 240
BORDER = 0.05  # width of the border band the background is fitted to, as a fraction of the short side
_SHARPEN = ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0)


def to_dataset_form(image, polarity: str = "auto") -> np.ndarray:
    """Any accepted image -> dataset form: uint8 (28, 28), bright garment on black.

    polarity: "auto" (negate when the object is darker than its background), "photo" (always negate: dark garment on light
    background) or "dataset" (never negate: bright garment on dark background). Dataset form -- a
    single-channel 28x28 input -- is returned unchanged whatever the polarity (float input as uint8).
    """
    a = prepare(image, polarity)
    return a if a.dtype == np.uint8 else np.rint(a * 255.0).astype(np.uint8)


def prepare(image, polarity: str = "auto") -> np.ndarray:
    """Like `to_dataset_form`, but float dataset-form input stays float32 in [0, 1] (no 8-bit rounding)."""
    if isinstance(image, np.ndarray) and image.shape == (SIZE, SIZE) and image.dtype == np.uint8:
        return image  # the hot path: dataset form
    if polarity not in POLARITIES:
        raise ConfigError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
    src = Source(image)
    if src.dataset_form is not None:
        return src.dataset_form
    return from_source(src, polarity)


def photo_to_dataset(a: np.ndarray, polarity: str = "auto") -> np.ndarray:
    """The pipeline on a validated uint8/float32 (H, W) or (H, W, 3) array -> uint8 (28, 28), even for 28x28 input."""
    if polarity not in POLARITIES:
        raise ConfigError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
    src = Source(a)
    return from_source(src, polarity)


def from_source(src: Source, polarity: str = "auto") -> np.ndarray:
    """A decoded-on-demand image (`decode.Source`) -> uint8 (28, 28) dataset form."""
    # 1. find the garment on a small copy
    scale = src.scale_for(DECODE_SIDE)
    small = src.gray(scale)
    # a cut-out: the garment is where it is opaque (composited onto white); else it is looked for
    g = _opaque(src.alpha, small.size) if src.alpha is not None else _find(small, polarity)
    coef, invert = g.coef, g.invert
    x0, x1, y0, y1 = g.c0 / g.w, g.c1 / g.w, g.r0 / g.h, g.r1 / g.h  # the trim box as fractions of the frame

    # 2. crop at the coarsest scale that leaves GARMENT_SIDE px on the garment, resize its longest edge to 28
    W, H = src.size
    long_side = max((x1 - x0) * W, (y1 - y0) * H)
    fine = next((s for s in Source.SCALES if s <= scale and long_side / s >= GARMENT_SIDE), 1)
    im = src.gray(fine)
    iw, ih = im.size
    box_px = (int(x0 * iw), int(y0 * ih), max(int(x0 * iw) + 1, -int(-x1 * iw)), max(int(y0 * ih) + 1, -int(-y1 * ih)))
    crop = im.crop(box_px)
    cw, ch = crop.size
    f = SIZE / max(cw, ch)
    size = (max(1, round(cw * f)), max(1, round(ch * f)))
    a = np.asarray(crop.resize(size, Image.Resampling.BOX) if size != (cw, ch) else crop, np.float32)
    if invert:
        a = 255.0 - a

    # 3. flat-field: divide by the background's light where each output pixel's box sits; stretch the contrast
    px = (box_px[0] + (np.arange(size[0], dtype=np.float32) + 0.5) * (cw / size[0])) / iw
    py = (box_px[1] + (np.arange(size[1], dtype=np.float32) + 0.5) * (ch / size[1])) / ih
    garment = np.clip(1.0 - a / np.maximum(_surface(coef, px[None, :], py[:, None]), 1.0), 0.0, 1.0)
    top = float(garment.max())
    if top > 0.0:
        garment *= 1.0 / top
    photo = Image.fromarray(np.rint(255.0 - 255.0 * garment).astype(np.uint8), "L")

    # 4. sharpen, 5. pad the short edge to 28 centred on the (white) background, 6. negate
    photo = photo.filter(_SHARPEN)
    canvas = Image.new("L", (SIZE, SIZE), 255)
    canvas.paste(photo, ((SIZE - size[0]) // 2, (SIZE - size[1]) // 2))
    return 255 - np.asarray(canvas)


def _object(a: np.ndarray, light: np.ndarray, invert: bool, threshold: float) -> np.ndarray:
    """Where gray `a` differs from the background `light` by more than `threshold` of the room it leaves: darker
    than it (a photo), or with `invert` lighter (a dark frame, the data set's polarity)."""
    if invert:
        return (a - light) / np.maximum(255.0 - light, 1.0) > threshold
    return 1.0 - a / np.maximum(light, 1.0) > threshold


class _Garment(NamedTuple):
    """Where the garment is: its box (ends exclusive) on a copy of the frame of (h, w) px; the light to flat-field
    it with (6 coefficients, of the negated frame when `invert`); whether the frame is negated (data set polarity)."""

    r0: int
    r1: int
    c0: int
    c1: int
    h: int
    w: int
    coef: np.ndarray
    invert: bool


WHITE = np.array([255.0, 0, 0, 0, 0, 0])  # an even, white light: what a cut-out is composited onto


def _find(small: Image.Image, polarity: str) -> _Garment:
    """The garment on the decoded frame `small`, from its border band or, without one, from its histogram."""
    k = max(1, min(small.size) // DETECT_SIDE, math.ceil(math.sqrt(small.width * small.height / DETECT_PIXELS)))
    det = np.asarray(small.reduce(k) if k > 1 else small, np.float32)  # (h, w) gray, 60..119 px short side (less if thin)
    h, w = det.shape
    take, A = _design(h, w)
    band = det.ravel()[take]  # a sample of the border band
    level = _median(band)
    coef, noise = _background(band, A, level)
    surf = _surface(coef, *_grid(w, h))
    dark_noise, lit_noise = noise, noise * max(level, 1.0) / max(255.0 - level, 1.0)  # against the room each has
    darker = _object(det, surf, False, max(TRIM, NOISE_SIGMAS * dark_noise))
    lighter = _object(det, surf, True, max(TRIM, NOISE_SIGMAS * lit_noise))
    diff, noise_levels = det - surf, NOISE_SIGMAS * noise * max(level, 1.0)
    if polarity == "auto":
        invert = _lighter_object(diff, darker, surf, noise_levels)
    else:
        invert = polarity == "dataset"
    light = coef  # the frame's own light, whatever the polarity
    # what stands out the other way by more than OTHER_STEP of the background's own level (of its darkness for a
    # dark one): a background lighter than the light the band gave, so the band was no background
    step = OTHER_STEP * ((255.0 - surf) if invert else surf)
    other = np.count_nonzero((-diff if invert else diff) > np.maximum(step, noise_levels)) / diff.size
    garment, noise = (lighter, lit_noise) if invert else (darker, noise)
    if invert:  # work on a light background, as the paper did: the negated frame's light is 255 - the surface
        coef = WHITE - coef
    box = _largest_object(garment)
    spread = float(surf.max() - surf.min()) / max(float(surf.max()), 1.0)
    if box is None and polarity != "auto":
        raise ImageValueError(f"nothing in the image is {'lighter' if invert else 'darker'} than its background, as "
                              f"polarity={polarity!r} asks; use polarity='auto' to take the object as it is")
    band_noise = dark_noise * max(level, 1.0)  # grey levels
    if _no_border(box, garment.ravel()[take], other, spread, band_noise, h, w):  # the border is no background
        light, noise, invert = _light_anywhere(det, polarity)
        surf = _surface(light, *_grid(w, h))
        coef = WHITE - light if invert else light
        box = _largest_object(_object(det, surf, invert, max(TRIM, NOISE_SIGMAS * noise)))
    if box is None:
        raise ImageValueError("the image is one flat colour: nothing to classify (an object must differ from its background)")
    if k > 1:  # the box of the reduced copy, made exact on the frame it was reduced from
        box = _exact_box(small, box, k, light, invert, max(TRIM, NOISE_SIGMAS * noise * k))
        h, w = small.height, small.width
    return _Garment(*box, h, w, coef, invert)


def _opaque(alpha: np.ndarray, size: tuple[int, int]) -> _Garment:
    """A cut-out: the largest object more than 5% opaque (as the paper trimmed) in `alpha` (uint8, full size),
    found on a copy of `size` (W, H), on white; ImageValueError when nothing is opaque."""
    w, h = size
    box = _largest_object(np.asarray(Image.fromarray(alpha).resize((w, h), Image.Resampling.BOX)) > 255 * TRIM)
    if box is None:
        raise ImageValueError("the image is fully transparent: nothing to classify")
    return _Garment(*box, h, w, WHITE, False)


def _no_border(box: tuple[int, int, int, int] | None, band_object: np.ndarray, other: float, spread: float,
               band_noise: float, h: int, w: int) -> bool:
    """Whether the border band cannot be the background (a plain band with nothing standing out from it is a
    flat colour, not a garment):
    - the object found spans the frame on one axis (a catalogue image trimmed to its garment, or the data set's
      own framing), or covers more than BAND_OBJECT of the band;
    - more than OTHER_SIDE of the frame stands out the other way too (lighter than a light background: the band
      was the garment, and the background is elsewhere);
    - the light fitted to the band varies over the frame by more than LIGHT_SPREAD of its brightest (a fit bent
      through a garment; uneven light in a camera frame varies by up to ~40%);
    - the band is no plain colour: its pixels scatter about the fit by more than BAND_NOISE grey levels (a
      garment's texture; a camera's noise, averaged over the 16-64 pixels of the small copy, scatters by 0.5-2).
    """
    spans = box is not None and ((box[0] == 0 and box[1] == h) or (box[2] == 0 and box[3] == w))
    return (spans or np.count_nonzero(band_object) > BAND_OBJECT * band_object.size or other > OTHER_SIDE or spread > LIGHT_SPREAD
            or band_noise > BAND_NOISE)


def _light_anywhere(det: np.ndarray, polarity: str) -> tuple[np.ndarray, float, bool]:
    """The background of a frame without a border of it -> (its light's 6 coefficients, noise / background,
    whether the object is lighter than it).

    The background is one colour, so its pixels pile up at one end of the histogram, within a few grey levels
    of each other, while a garment's levels spread. For "auto" it is the light end, as in catalogues and the
    paper's studio photos, unless the dark end is near black and holds more than twice as many pixels so
    close together (the data set's own polarity, upscaled). The light is taken as even, at the median of that
    end: a surface fitted to a few corners between sleeves would bend through the garment."""
    h, w = det.shape
    values = det.ravel()[:: max(1, (h * w) // 4096)]  # at most ~4,096 pixels spread over the frame
    lo, hi = (float(q) for q in np.percentile(values, (1.0, 99.0)))
    if polarity == "auto":
        tight_lo, tight_hi = np.count_nonzero(values <= lo + 3.0), np.count_nonzero(values >= hi - 3.0)
        invert = lo < 64.0 and tight_lo > 2 * tight_hi
    else:
        invert = polarity == "dataset"
    tol = max(8.0, TRIM * (hi - lo))
    picked = values[values <= lo + tol] if invert else values[values >= hi - tol]
    level = _median(picked)
    noise = 1.2533 * float(np.mean(np.abs(picked - level))) / max(level if not invert else 255.0 - level, 1.0)
    return np.array([level, 0, 0, 0, 0, 0], np.float64), noise, invert


def _exact_box(small: Image.Image, box: tuple[int, int, int, int], k: int, light: np.ndarray, invert: bool,
               threshold: float) -> tuple[int, int, int, int]:
    """`box` (r0, r1, c0, c1) of the copy of `small` reduced k times -> the box in `small`'s pixels: each edge
    moves to the first row or column of object pixels within one reduced pixel of where it was found. A box of
    more than EXACT_AREA pixels (a panorama's) is only scaled: k pixels are nothing to it, and the search's
    memory stays bounded."""
    sw, sh = small.size
    r0, r1, c0, c1 = box
    R0, R1, C0, C1 = max(0, (r0 - 1) * k), min(sh, (r1 + 1) * k), max(0, (c0 - 1) * k), min(sw, (c1 + 1) * k)
    if (R1 - R0) * (C1 - C0) > EXACT_AREA:
        return r0 * k, min(sh, r1 * k), c0 * k, min(sw, c1 * k)
    a = np.asarray(small.crop((C0, R0, C1, R1)), np.float32)
    gx = ((np.arange(C0, C1, dtype=np.float32) + 0.5) / sw)[None, :]
    gy = ((np.arange(R0, R1, dtype=np.float32) + 0.5) / sh)[:, None]
    mask = _object(a, _surface(light, gx, gy), invert, threshold)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):  # nothing past the finer noise: keep the box as found
        return r0 * k, min(sh, r1 * k), c0 * k, min(sw, c1 * k)
    return R0 + int(rows[0]), R0 + int(rows[-1]) + 1, C0 + int(cols[0]), C0 + int(cols[-1]) + 1


def _lighter_object(diff: np.ndarray, darker: np.ndarray, surf: np.ndarray, noise_levels: float) -> bool:
    """Whether what stands out from the background stands out by being lighter: the grey levels by which pixels
    are lighter than the fitted light (past 5% of the room above it and the noise) against those by which the
    `darker` pixels are darker. In grey levels, not fractions: near a white background's clipped highlights a
    few levels of noise are a large fraction of the little room left, but they are few levels."""
    lighter = diff > np.maximum(TRIM * (255.0 - surf), noise_levels)
    return float(diff[lighter].sum()) > -float(diff[darker].sum())


def _band_width(h: int, w: int) -> int:
    return max(1, min(int(round(BORDER * min(h, w))), (min(h, w) - 1) // 2 or 1))


@functools.lru_cache(maxsize=16)
def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres as fractions of the frame: x (1, w) and y (h, 1) float32."""
    return ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :], ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]


@functools.lru_cache(maxsize=16)
def _design(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Every other pixel of the border band, as flat indices into an (h, w) image, and the quadratic surface's
    terms (1, x, y, x^2, y^2, xy) at each of them: float32 (n, 6)."""
    b = _band_width(h, w)
    inside = np.zeros((h, w), bool)
    inside[b : h - b, b : w - b] = True
    yy, xx = np.mgrid[0:h, 0:w]
    sample = ~inside & ((yy + xx) % 2 == 0)
    take = np.flatnonzero(sample)
    gx, gy = _grid(w, h)
    x, y = np.broadcast_to(gx, (h, w)).ravel()[take], np.broadcast_to(gy, (h, w)).ravel()[take]
    return take, np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1).astype(np.float32)


def _surface(coef: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The quadratic light c0 + c1 x + c2 y + c3 x^2 + c4 y^2 + c5 xy at x (1, w) and y (h, 1): three passes over
    the (h, w) result, the rest on its row and column."""
    c = coef.astype(np.float32)
    return (c[5] * y) * x + (c[0] + x * (c[1] + c[3] * x)) + y * (c[2] + c[4] * y)


def _background(values: np.ndarray, A: np.ndarray, level: float) -> tuple[np.ndarray, float]:
    """Robust quadratic fit of the light over the border band -> (6 coefficients, noise sigma / background).

    The samples within 3 sigma of the band's median are fitted by least squares, then twice again those within
    3 sigma of the fit (a garment that touches the border, a shadow); sigma from the median absolute deviation,
    which half the band can be garment without moving, and the noise from the kept residuals' mean |r|."""
    flat = np.array([level, 0, 0, 0, 0, 0], np.float64)
    if len(values) < 24:  # too small for a surface: a flat background at the band's median
        return flat, 1.2533 * float(np.mean(np.abs(values - level))) / max(level, 1.0)
    coef, resid = flat, np.abs(values - np.float32(level))
    weights = None
    for _ in range(3):
        sigma = 1.4826 * _median(resid)
        keep = (resid <= max(3.0 * sigma, 1.0)).astype(np.float32)
        if np.count_nonzero(keep) < 24 or (weights is not None and np.array_equal(keep, weights)):
            break
        weights = keep
        Aw = A * weights[:, None]
        try:
            coef = np.linalg.solve((Aw.T @ A).astype(np.float64), (Aw.T @ values).astype(np.float64))
        except np.linalg.LinAlgError:  # too few pixels kept to fix six terms: keep the last fit
            break
        resid = np.abs(values - A @ coef.astype(np.float32))
    kept = resid <= max(3.0 * 1.4826 * _median(resid), 1.0)
    sigma = 1.2533 * float(resid[kept].mean()) if kept.any() else 0.0  # mean |r| -> sigma, for Gaussian noise
    return coef, sigma / max(level, 1.0)


def _median(a: np.ndarray) -> float:
    """The (upper) median by one partition: np.median costs several times more on the few hundred values here."""
    return float(np.partition(a, len(a) // 2)[len(a) // 2])


def _largest_object(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box (r0, r1, c0, c1), ends exclusive, of the largest object in a bool mask; None if empty.

    Objects are 8-connected on 2x2 blocks (a block is set when any of its pixels is), so parts one or two
    pixels apart count as one object, and labelling has a quarter of the pixels to visit. The object's size
    counts the mask's own pixels; its box is shrunk back to them."""
    if not mask.any():
        return None
    h, w = mask.shape
    hp, wp = -(-h // 2), -(-w // 2)
    m = np.zeros((2 * hp, 2 * wp), np.uint8)
    m[:h, :w] = mask
    per_block = m[0::2, 0::2] + m[1::2, 0::2] + m[0::2, 1::2] + m[1::2, 1::2]  # mask pixels in each 2x2 block
    padded = np.zeros((hp, wp + 2), np.int8)
    padded[:, 1:-1] = per_block > 0
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)  # runs of set blocks in each row, in row-major order
    _, ends = np.nonzero(edges == -1)  # exclusive
    n = len(rows)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(hp + 1)).tolist()
    s, e = starts.tolist(), ends.tolist()
    for r in range(1, hp):
        i, i_end, j, j_end = first[r - 1], first[r], first[r], first[r + 1]
        while i < i_end and j < j_end:
            if s[i] <= e[j] and s[j] <= e[i]:  # overlapping or diagonal neighbours (8-connected)
                a, b = find(i), find(j)
                if a != b:
                    parent[b] = a
            if e[i] < e[j]:
                i += 1
            else:
                j += 1
    labels = np.fromiter((find(i) for i in range(n)), np.int64, n)
    cum = np.concatenate([np.zeros((hp, 1), np.int64), np.cumsum(per_block, axis=1, dtype=np.int64)], axis=1)
    best = np.argmax(np.bincount(labels, weights=cum[rows, ends] - cum[rows, starts]))
    sel = labels == best
    r0, r1 = 2 * int(rows[sel].min()), 2 * int(rows[sel].max()) + 2
    c0, c1 = 2 * int(starts[sel].min()), 2 * int(ends[sel].max())
    part = mask[r0:r1, c0:c1]  # shrink the block box back to the mask's own pixels
    rr, cc = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
    return r0 + int(rr[0]), r0 + int(rr[-1]) + 1, c0 + int(cc[0]), c0 + int(cc[-1]) + 1


def to_model_input(images: np.ndarray) -> np.ndarray:
    """Dataset form uint8 (N, 28, 28), (N, 28, 28, 1) or one (28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ImageTypeError(f"to_model_input takes uint8 dataset-form images, got {images.dtype}; run to_dataset_form() first")
    if images.ndim == 2:
        images = images[None]
    elif images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise ImageShapeError(f"to_model_input takes (N, {SIZE}, {SIZE}) or (N, {SIZE}, {SIZE}, 1) images, got shape {images.shape}")
    return data.normalize(images)
