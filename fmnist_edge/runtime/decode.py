"""Turns whatever a kiosk hands over (array, PIL image, file path, encoded bytes) into a validated pixel array.

What is accepted, and how it is read:

- numpy arrays (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA:
  integer dtypes must hold 8-bit values 0..255; float dtypes must hold values in [0, 1] (pixel / 255, the
  model's own scale) and be finite. bool, complex, object and string arrays are refused. A float array in
  0..255 is refused rather than guessed at: pass `a.astype(np.uint8)`.
- PIL.Image in any mode; 16-bit grayscale is scaled to 8 bits, transparency is composited onto white.
- a file path (str or os.PathLike) or bytes of a PNG, JPEG, BMP or WebP image; EXIF orientation is applied.

RGB whose channels are all equal is read as grayscale. Images must have 1 to MAX_PIXELS pixels; a file's header
is checked before its pixels are decoded, so a decompression bomb never reaches memory. The result is uint8
(H, W) or (H, W, 3), or float32 of the same shapes in [0, 1] for float input.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..contract import IMAGE_SHAPE
from ..errors import (
    FmnistEdgeError,
    ImageDecodeError,
    ImageNotFoundError,
    ImageShapeError,
    ImageSizeError,
    ImageTypeError,
    ImageValueError,
)

FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MAX_PIXELS = 64_000_000  # 64 MP: more than any kiosk camera, far less than a decompression bomb
MAX_FILE_BYTES = 256 * 2**20  # an image file larger than this is not read into memory at all
DRAFT_SIZE = (512, 512)  # JPEGs are decoded at 1/2..1/8 scale when that still leaves this much

ACCEPTED = (
    "a numpy array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of uint8 0..255 or float in [0, 1], "
    "a PIL.Image, a file path, or bytes of a PNG, JPEG, BMP or WebP image"
)


def to_array(image) -> np.ndarray:
    """Any accepted input -> uint8 (H, W) or (H, W, 3), or float32 in [0, 1] for float arrays."""
    if isinstance(image, np.ndarray):
        if type(image) is not np.ndarray:  # np.matrix, a masked array (whose mask would hide NaN): the plain data
            image = np.asarray(image)
        if image.dtype == np.uint8 and image.ndim == 2 and 0 < image.size <= MAX_PIXELS:
            return image  # the hot path: dataset form or any 8-bit gray array
        return from_numpy(image)
    if isinstance(image, Image.Image):
        try:
            return from_pil(image)
        except FmnistEdgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lazily opened image decodes here: truncated, corrupt
            raise ImageDecodeError(f"PIL image cannot be decoded ({_reason(exc)}); the file behind it is truncated or corrupt") from None
    encoded = _encoded(image)
    if encoded is not None:
        return _decode(io.BytesIO(encoded[0]), encoded[1])
    hint = "; convert it with np.asarray(x, dtype=np.uint8)" if isinstance(image, (list, tuple)) else ""
    raise ImageTypeError(f"cannot read a {type(image).__name__} as an image{hint}; accepted: {ACCEPTED}")


def from_numpy(a: np.ndarray) -> np.ndarray:
    """Validate an array: shape first (cheap), then dtype and values; composite RGBA onto white."""
    shape = a.shape
    if a.ndim == 3 and shape[2] in (1, 3, 4):
        pass
    elif a.ndim != 2:
        raise ImageShapeError(
            f"array of shape {shape} is not an image; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
            + (" (channels last)" if a.ndim == 3 and shape[0] in (1, 3, 4) else "")
        )
    _check_size(shape[1], shape[0], "array")
    kind = a.dtype.kind
    if a.dtype == np.uint8:
        pass  # every value is a valid 8-bit pixel: no pass over a camera frame to check
    elif kind in "ui":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise ImageValueError(
                f"{a.dtype} array holds values {lo}..{hi}; integer images must hold 8-bit values 0..255 "
                "(scale 16-bit data to 8 bits, or pass float values in [0, 1])"
            )
        a = a.astype(np.uint8, copy=False)
    elif kind == "f":
        if not np.isfinite(a).all():
            raise ImageValueError("float array holds NaN or inf; pixels must be finite values in [0, 1]")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            hint = "; for 0..255 values pass a.astype(np.uint8)" if hi <= 255.0 and lo >= 0.0 else ""
            raise ImageValueError(f"float array holds values {lo:g}..{hi:g}; float images must be in [0, 1] (pixel / 255){hint}")
        a = a.astype(np.float32, copy=False)
    else:
        raise ImageTypeError(f"arrays of dtype {a.dtype} are not images; use uint8 0..255 or float in [0, 1]")
    if a.ndim == 3:
        if a.shape[2] == 1:
            a = a[:, :, 0]
        elif a.shape[2] == 4:
            a = _over_white(a)
    return _gray_if_gray(a)


def _gray_if_gray(a: np.ndarray) -> np.ndarray:
    """RGB whose three channels are equal is grayscale: (H, W, 3) -> (H, W), so gray saved as RGB stays gray."""
    if a.ndim == 3 and np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2]):
        return np.ascontiguousarray(a[:, :, 0])
    return a


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """Composite RGBA onto a white background (transparent = background) -> RGB of the same dtype."""
    full = 255.0 if rgba.dtype == np.uint8 else 1.0
    rgb = rgba[:, :, :3].astype(np.float32)
    alpha = rgba[:, :, 3:].astype(np.float32) / full
    out = rgb * alpha + full * (1.0 - alpha)
    return np.rint(out).astype(np.uint8) if rgba.dtype == np.uint8 else out.astype(np.float32)


def _check_size(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageSizeError(f"{what} is {width}x{height} pixels: an image needs at least one pixel")
    if width * height > MAX_PIXELS:
        raise ImageSizeError(
            f"{what} is {width}x{height} pixels ({width * height / 1e6:.0f} MP), more than the "
            f"{MAX_PIXELS / 1e6:.0f} MP the runtime decodes (decompression-bomb guard); downscale it first"
        )


def from_pil(im: Image.Image) -> np.ndarray:
    """A PIL image in any mode -> uint8 gray or RGB; 16-bit scaled to 8 bits, transparency onto white."""
    _check_size(im.width, im.height, f"{im.mode} image")
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if mode.startswith("I"):  # 16-bit PNGs open as I;16 or I: values 0..65535
        a = np.asarray(im).astype(np.int64)
        return np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
    if mode == "F":
        return from_numpy(np.asarray(im))
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        gray = mode in ("LA", "La")
        im = im.convert("LA") if mode == "La" else im  # Pillow converts premultiplied La to LA only
        rgb = _over_white(np.asarray(im.convert("RGBA")))
        return np.asarray(Image.fromarray(rgb).convert("L")) if gray else _gray_if_gray(rgb)
    return _gray_if_gray(np.asarray(im.convert("RGB")))


def read_file(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG, JPEG, BMP or WebP file; a missing, empty, truncated or non-image file is a clear error."""
    data, what = _file_bytes(path)
    return _decode(io.BytesIO(data), what)


def read_bytes(data: bytes) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, BMP, WebP)."""
    data, what = _bytes(data)
    return _decode(io.BytesIO(data), what)


def _encoded(image) -> tuple[bytes, str] | None:
    """The one place inputs are sorted by type: a file path or bytes -> (its encoded bytes, how to name it in an
    error); None for anything else (arrays, PIL images: `to_array` takes those, and refuses the rest)."""
    if isinstance(image, (str, os.PathLike)):
        return _file_bytes(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _bytes(image)
    return None


def _bytes(data: bytes | bytearray | memoryview) -> tuple[bytes, str]:
    data = bytes(data)
    if not data:
        raise ImageDecodeError("empty bytes (0 bytes), not an image; accepted: PNG, JPEG, BMP, WebP")
    return data, f"{len(data)} bytes"


def _file_bytes(path: str | os.PathLike) -> tuple[bytes, str]:
    p = Path(os.fsdecode(path))  # a bytes path-like too (os.scandir(b"...") entries)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageNotFoundError(f"{p} is a folder, not an image file")
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):  # /dev/zero would be read for ever
            raise ImageNotFoundError(f"{p} is a device, not an image file")
        size = st.st_size
        if size > MAX_FILE_BYTES:
            raise ImageSizeError(f"{p} is {size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES / 2**20:.0f} MiB an image "
                                 "file may have here; downscale or recompress it first")
        with open(p, "rb") as f:  # a pipe has no size to check first: read no more than the limit
            data = f.read() if stat.S_ISREG(st.st_mode) else f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ImageSizeError(f"{p} holds more than the {MAX_FILE_BYTES / 2**20:.0f} MiB an image file may have here; "
                                 "downscale or recompress it first")
    except FileNotFoundError:
        raise ImageNotFoundError(f"{p}: no such image file") from None
    except OSError as exc:
        raise ImageNotFoundError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL byte in the path
        raise ImageNotFoundError(f"{str(p)!r} is not a valid file path ({exc})") from None
    if not data:
        raise ImageDecodeError(f"{p} is an empty file (0 bytes), not an image; accepted: PNG, JPEG, BMP, WebP")
    return data, str(p)


def _open(fp, what: str) -> Image.Image:
    """Open (header only) and size-check an encoded image."""
    try:
        im = Image.open(fp, formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{what}: {_what_is_it(fp)}; accepted: PNG, JPEG, BMP, WebP") from None
    except Image.DecompressionBombError:
        raise ImageSizeError(f"{what}: image is larger than the decompression-bomb limit; downscale it first") from None
    except Exception as exc:  # noqa: BLE001 - a malformed header can raise nearly anything
        raise ImageDecodeError(f"{what}: cannot decode ({_reason(exc)}); the data is truncated, corrupt or not an image") from None
    try:
        _check_size(im.width, im.height, f"{what}: {im.format}")
    except ImageSizeError:
        im.close()
        raise
    return im


def _load(im: Image.Image, what: str) -> None:
    try:
        im.load()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise ImageDecodeError(
            f"{what}: {im.format} image cannot be decoded ({_reason(exc)}); the file is truncated or corrupt"
        ) from None


def _orientation(im: Image.Image) -> Image.Transpose | None:
    """The transpose that turns a phone photo upright, from its EXIF orientation (None: already upright)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - broken EXIF: the pixels are still good
        return None
    return _TRANSPOSE.get(value)


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _decode(fp, what: str) -> np.ndarray:
    return _decode_alpha(fp, what)[0]


def _decode_alpha(fp, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """An encoded image -> (its pixels as `from_pil` gives them, its alpha channel or None: see `alpha_of`)."""
    with _open(fp, what) as im:
        if im.format == "JPEG":
            im.draft("RGB" if im.mode == "RGB" else None, DRAFT_SIZE)
        _load(im, what)
        turn = _orientation(im)
        upright = im.transpose(turn) if turn is not None else im
        try:
            return from_pil(upright), alpha_of(upright)
        except FmnistEdgeError as exc:
            raise type(exc)(f"{what}: {exc}") from None


def alpha_of(image) -> np.ndarray | None:
    """The alpha channel (uint8 (H, W), 0 transparent) of a PIL image or an (H, W, 4) array that has transparent
    pixels; None when it has none (no alpha channel, or every pixel opaque)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 4:
            return None
        a = image[:, :, 3]
        a = a if a.dtype == np.uint8 else np.rint(np.clip(np.asarray(a, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    elif isinstance(image, Image.Image) and (image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info):
        a = np.asarray((image.convert("LA") if image.mode == "La" else image).convert("RGBA"))[:, :, 3]
    else:
        return None
    return np.ascontiguousarray(a) if a.size and int(a.min()) < 255 else None


class Source:
    """One image, read as 8-bit gray (a PIL "L" image, upright) at 1/1, 1/2, 1/4 or 1/8 of its size.

    A JPEG is decoded straight at the asked scale and in gray from its DCT coefficients (libjpeg's scaled
    IDCT, Pillow's `draft`): the cheapest way to a small picture, and each scale is decoded only if asked
    for. Every other input is read once in full, turned to gray, and box-reduced. `size` is (W, H) upright;
    `dataset_form` is the (28, 28) array of a single-channel 28x28 input, which needs no preprocessing.
    """

    SCALES = (8, 4, 2, 1)

    def __init__(self, image):
        self._levels: dict[int, Image.Image] = {}
        self._jpeg: bytes | None = None
        self._header: Image.Image | None = None
        self.dataset_form: np.ndarray | None = None
        self.alpha: np.ndarray | None = None  # uint8 (H, W) where the image has transparent pixels, upright
        self.what = "image"
        encoded = _encoded(image)
        if encoded is None:  # decoded already: an array or a PIL image
            if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
                    and image.shape[:2] != IMAGE_SHAPE:  # 28x28 gray saved as RGB is still dataset form (below)
                _check_size(image.shape[1], image.shape[0], "array")  # an RGB frame: straight to gray, in C
                self._levels[1] = Image.fromarray(np.ascontiguousarray(image), "RGB").convert("L")
                self.size = self._levels[1].size
            else:
                self._set_full(to_array(image))  # refuses what is no image, a closed PIL image included
                self.alpha = alpha_of(image)
            return
        data, self.what = encoded
        im = _open(io.BytesIO(data), self.what)
        if im.format == "JPEG" and im.mode in ("L", "RGB") and len(im.tile) == 1:
            self._jpeg, self._header = data, im  # the parsed header serves the first decode
            turn = _orientation(im)
            w, h = im.size
            self.size = (h, w) if turn in _SWAPS else (w, h)
            self._turn = turn
            if self.size == IMAGE_SHAPE and im.mode == "L":
                self.dataset_form = np.asarray(self.gray(1))
            return
        im.close()
        pixels, self.alpha = _decode_alpha(io.BytesIO(data), self.what)
        self._set_full(pixels)

    def _set_full(self, a: np.ndarray) -> None:
        if a.ndim == 2 and a.shape == IMAGE_SHAPE:
            self.dataset_form = a  # uint8, or float32 in [0, 1] kept unrounded
        if a.dtype != np.uint8:
            a = np.rint(a * 255.0).astype(np.uint8)
        im = Image.fromarray(a)
        self._levels[1] = im if im.mode == "L" else im.convert("L")
        self.size = im.size

    def scale_for(self, short_side: int) -> int:
        """The coarsest scale that leaves at least `short_side` pixels on the short side (1 if none does)."""
        return next((s for s in self.SCALES if min(self.size) // s >= short_side), 1)

    def gray(self, scale: int) -> Image.Image:
        """The image as gray "L" at 1/`scale` of its size (rounded up), upright."""
        if scale in self._levels:
            return self._levels[scale]
        if self._jpeg is None:
            full = self._levels[1]
            im = full.reduce(scale) if scale > 1 else full
        else:
            raw, self._header = self._header or _open(io.BytesIO(self._jpeg), self.what), None
            with raw:
                w, h = raw.size
                raw.draft("L", ((w + scale - 1) // scale, (h + scale - 1) // scale) if scale > 1 else None)
                _load(raw, self.what)
                im = raw if raw.mode == "L" else raw.convert("L")
                if raw.size != ((w + scale - 1) // scale, (h + scale - 1) // scale):  # libjpeg scales by 1/8 steps only
                    im = im.resize(((w + scale - 1) // scale, (h + scale - 1) // scale), Image.Resampling.BOX)
                im = im.transpose(self._turn) if self._turn is not None else im.copy()
        self._levels[scale] = im
        return im


_SWAPS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE)


def _what_is_it(fp) -> str:
    """Name the format of data that is not an accepted image, for the error message."""
    fp.seek(0)
    head = fp.read(16)
    fp.seek(0)
    for magic, name in ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP")):
        if head.startswith(magic):
            return f"a {name} file that cannot be decoded (truncated or corrupt)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP file that cannot be decoded (truncated or corrupt)"
    try:
        with Image.open(fp) as other:
            return f"a {other.format} image, a format the runtime does not read"
    except Exception:  # noqa: BLE001 - anything: it is simply not an image
        return f"not an image (starts with {head[:8]!r})"


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in `folder` (by extension), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, each folder replaced by the images in it (`list_images`); a folder without any is an
    ImageNotFoundError, since a command given one surely meant to classify something."""
    files = []
    for arg in map(Path, paths):
        if arg.is_dir():
            found = list_images(arg)
            if not found:
                raise ImageNotFoundError(f"folder {arg} holds no {', '.join(EXTENSIONS)} files")
            files.extend(found)
        else:
            files.append(arg)
    return files
