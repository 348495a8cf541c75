"""Test pictures made from real Fashion-MNIST images: product-photo form and encoded bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(img: np.ndarray, size=(160, 200), scale=5, offset=(10, 25), background=255) -> np.ndarray:
    """A dataset image as a product photo: garment dark on a light background, upscaled, off centre, W x H `size`."""
    garment = Image.fromarray(255 - img if background == 255 else img).resize((28 * scale, 28 * scale), Image.BILINEAR)
    canvas = Image.new("L", size, background)
    canvas.paste(garment, offset)
    return np.asarray(canvas)


def encode(a: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **kw)
    return buf.getvalue()
