"""Fashion-MNIST preprocessing: a product photo becomes a 28x28 dataset-form image the way the data set was made.

Xiao, Rasul and Vollgraf (2017) made Fashion-MNIST from product photos on a light background by: trimming
the edges close to the corner colour (within 5% of the maximum intensity), resizing the longest edge to 28
by subsampling, sharpening (Gaussian, radius and sigma 1.0), extending the short edge to 28 with the image
centred, negating, and converting to 8-bit grayscale. `to_dataset_form` does the same, with two changes:
grayscale conversion moves before the resize (it commutes with every step up to rounding), and the
subsampling averages each source box (PIL's BOX filter) instead of picking one pixel, so that camera noise
does not alias; on upscaled test images both keep the model's prediction equally often (about 90%).
Polarity is detected from the corners: a picture whose background is dark already has the data set's
polarity and is not negated.

Dataset form -- a single-channel 28x28 array or image -- passes through unchanged.
`to_model_input` is the one place where dataset form becomes the model input, for the runtime, the
converter's checks and the benchmarks alike.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .. import data
from ..errors import ConfigError, ImageShapeError, ImageTypeError, ImageValueError
from .decode import to_array

SIZE = 28
TRIM_TOLERANCE = 0.05 * 255  # "within 5% of the maximum possible intensity"
POLARITIES = ("auto", "photo", "dataset")
_SHARPEN = ImageFilter.UnsharpMask(radius=1.0, percent=100, threshold=0)


def to_dataset_form(image, polarity: str = "auto") -> np.ndarray:
    """Any accepted image -> dataset form: uint8 (28, 28), bright garment on black.

    polarity: "auto" (negate when the corners are light), "photo" (always negate: dark garment on light
    background) or "dataset" (never negate: bright garment on dark background). Dataset form -- a
    single-channel 28x28 input -- is returned unchanged whatever the polarity (float input as uint8).
    """
    a = prepare(image, polarity)
    return a if a.dtype == np.uint8 else np.rint(a * 255.0).astype(np.uint8)


def prepare(image, polarity: str = "auto") -> np.ndarray:
    """Like `to_dataset_form`, but float dataset-form input stays float32 in [0, 1] (no 8-bit rounding)."""
    a = to_array(image)
    if a.ndim == 2 and a.shape == (SIZE, SIZE):
        return a
    return photo_to_dataset(a, polarity)


def photo_to_dataset(a: np.ndarray, polarity: str = "auto") -> np.ndarray:
    """The Xiao et al. pipeline on a validated uint8/float32 (H, W) or (H, W, 3) array -> uint8 (28, 28)."""
    if polarity not in POLARITIES:
        raise ConfigError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
    if a.dtype != np.uint8:
        a = np.rint(a * 255.0).astype(np.uint8)
    h, w = a.shape[:2]
    corners = np.stack([a[0, 0], a[0, w - 1], a[h - 1, 0], a[h - 1, w - 1]]).astype(np.float32)
    background = np.median(corners, axis=0)
    if polarity == "dataset" or (polarity == "auto" and float(np.mean(background)) < 128.0):
        a, background = 255 - a, 255.0 - background  # work on a light background, as the paper did

    # 1. trim the edges close to the background (corner) colour
    diff = np.abs(a.astype(np.float32) - background)
    mask = (diff.max(axis=2) if diff.ndim == 3 else diff) > TRIM_TOLERANCE
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ImageValueError("the image is one flat colour: nothing to classify (an object must differ from its background)")
    a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    # 2. 8-bit grayscale, resize the longest edge to 28 (box-averaged subsampling)
    im = Image.fromarray(a)
    if im.mode != "L":
        im = im.convert("L")
    h, w = a.shape[:2]
    scale = SIZE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        im = im.resize(size, Image.Resampling.BOX)

    # 3. sharpen, 4. pad the short edge to 28 centred on the background, 5. negate
    im = im.filter(_SHARPEN)
    canvas = Image.new("L", (SIZE, SIZE), 255)
    canvas.paste(im, ((SIZE - size[0]) // 2, (SIZE - size[1]) // 2))
    return 255 - np.asarray(canvas)


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
        raise ImageShapeError(f"to_model_input takes (N, 28, 28) or (N, 28, 28, 1) images, got shape {images.shape}")
    return data.normalize(images)
