"""Hostile inputs for the runtime's decoding and preprocessing, as hypothesis strategies, and the property each must meet.

For each input, `to_array` returns a valid pixel array and `model_input` (what `Classifier.predict` hands the
model) a finite float32 (1, 28, 28, 1) in [0, 1], or each raises a FmnistEdgeError with a one-line message;
any other exception fails with the input shown. Every call is held to a time and a memory bound, linear in the
pixels the input has or its header claims (memory: the growth of the process's peak RSS, reset before each
call, Linux only). A header claiming more than MAX_PIXELS must be refused before Pillow makes an image.
tests/test_fuzz.py runs the properties briefly; `python -m fmnist_edge.harness.fuzz` runs them for a time budget.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from fmnist_edge.data import normalize
from fmnist_edge.errors import (
    FmnistEdgeError,
    ImageSizeError,
    ImageValueError,
    InputImageError,
)
from fmnist_edge.runtime.decode import MAX_PIXELS, to_array
from fmnist_edge.runtime.preprocess import POLARITIES, SIZE, prepare

MAX_SIDE = 300  # generated pictures are at most this many pixels on a side
# One call's bounds: these for an input of MAX_SIDE or less, plus so much per pixel the input has or its header
# claims (up to MAX_PIXELS, which a 38-byte WebP can claim and hold: 45 MP took 1.6 s and 950 MiB per call here).
TIME_LIMIT, TIME_PER_PIXEL = 1.0, 100e-9  # seconds; ~35 ns per pixel on the 2-core EPYC, idle
MEMORY_LIMIT, MEMORY_PER_PIXEL = 64 * 2**20, 40  # bytes of peak RSS; ~22 per pixel for RGB, 32 for float RGBA
# No hypothesis deadline: the time bound is per call and scales with the pixels, as above.
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ----------------------------------------------------------------------------- the property


def model_input(image, polarity: str = "auto") -> np.ndarray:
    """What `Classifier.predict` feeds the model for `image`: `prepare`, then `normalize` -> float32 (1, 28, 28, 1)."""
    return normalize(prepare(image, polarity)[None])


def _valid_pixels(a) -> None:
    """`to_array`'s contract: a plain uint8 or float32 (H, W) or (H, W, 3); float finite in [0, 1]."""
    assert type(a) is np.ndarray, type(a)
    assert a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3), a.shape
    assert 0 < a.shape[0] * a.shape[1] <= MAX_PIXELS, a.shape
    assert a.dtype in (np.uint8, np.float32), a.dtype
    if a.dtype == np.float32:
        assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0, (a.min(), a.max())


def _valid_model_input(x) -> None:
    assert x.dtype == np.float32 and x.shape == (1, SIZE, SIZE, 1), (x.dtype, x.shape)
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0, (x.min(), x.max())


def _status_kib(*fields: str) -> list[int]:
    with open("/proc/self/status") as f:
        values = dict(line.split(":", 1) for line in f)
    return [int(values[name].split()[0]) for name in fields]


_peak_kib = [0]  # the process's peak RSS over all calls, which resetting it per call hides from getrusage


def peak_rss() -> int:
    """The process's peak RSS in bytes, over every call measured so far too."""
    try:
        return max(_peak_kib[0], *_status_kib("VmHWM")) * 1024
    except OSError:  # no /proc: nothing reset the peak, getrusage has it (KiB, but bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def measured(call, *args) -> tuple[object, float, int | None]:
    """call(*args) -> (its result or the FmnistEdgeError it raised, seconds, bytes it grew the process's peak RSS
    by: None where Linux's /proc/self/clear_refs cannot reset the peak)."""
    try:
        _peak_kib[0] = max(_peak_kib[0], *_status_kib("VmHWM"))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak RSS (VmHWM) := current RSS
        (before,) = _status_kib("VmRSS")
    except OSError:
        before = None
    t0 = time.perf_counter()
    out = _raised(call, *args)
    took = time.perf_counter() - t0
    if before is None:
        return out, took, None
    (peak,) = _status_kib("VmHWM")
    _peak_kib[0] = max(_peak_kib[0], peak)
    return out, took, (peak - before) * 1024


def _raised(call, *args):
    """call(*args), or the FmnistEdgeError it raised."""
    try:
        return call(*args)
    except FmnistEdgeError as exc:
        return exc


def pixels(image) -> int:
    """How many pixels an input has, or its header claims (0 when it has no readable header)."""
    if isinstance(image, np.ndarray):
        return image.size
    if isinstance(image, Image.Image):
        return image.width * image.height
    if isinstance(image, (str, os.PathLike)) and not os.path.isfile(image):
        return 0  # /dev/zero, a folder, ...
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as im:
            return im.width * im.height
    except Exception:  # noqa: BLE001 - not an image Pillow can open: no claim
        return 0


def _bounded(call, *args, pixels: int):
    """call(*args) -> its result or the FmnistEdgeError it raised, asserting its time and its growth of the peak
    RSS against limits linear in the `pixels` of the input. Over a limit, the call is measured once more: an
    allocation or a slow path repeats, noise from the rest of the process or the host does not (docs/fuzzing.md)."""
    seconds, budget = TIME_LIMIT + TIME_PER_PIXEL * pixels, MEMORY_LIMIT + MEMORY_PER_PIXEL * pixels
    out, took, grown = measured(call, *args)
    if took > seconds or (grown is not None and grown >= budget):
        out, took, grown = measured(call, *args)
    assert took <= seconds, f"{call.__name__} took {took:.2f} s, over the {seconds:.1f} s it may take"
    assert grown is None or grown < budget, f"{call.__name__} grew the peak RSS by {grown / 2**20:.0f} MiB"
    return out


def check(image, polarity: str = "auto") -> list[FmnistEdgeError | None]:
    """The property for one input: each of `to_array` and `model_input` returns a valid result or raises a
    FmnistEdgeError with a one-line message (returned, in that order; None for a result). Any other exception
    propagates; an invalid result, too much time or too much memory is an AssertionError."""
    outcomes: list[FmnistEdgeError | None] = []
    n = pixels(image)
    for call, args, valid in ((to_array, (image,), _valid_pixels), (model_input, (image, polarity), _valid_model_input)):
        out = _bounded(call, *args, pixels=n)
        if isinstance(out, FmnistEdgeError):
            assert str(out) and "\n" not in str(out), repr(str(out))
            outcomes.append(out)
        else:
            valid(out)
            outcomes.append(None)
    return outcomes


# ----------------------------------------------------------------------------- pictures and encodings

SIDES = st.one_of(st.integers(1, MAX_SIDE), st.sampled_from([1, 2, 28, 29, 120, 240]))
SAVE_MODES = {  # modes each format is written from here (the reader sees what the writer makes of them)
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"),
    "JPEG": ("L", "RGB", "CMYK"),
    "WEBP": ("L", "RGB", "RGBA"),
    "BMP": ("1", "L", "P", "RGB"),
}
POLARITY = st.sampled_from(POLARITIES)


@st.composite
def pictures(draw) -> Image.Image:
    """A garment-like picture: an ellipse or box on a background, with noise, tint and alpha; "L", "RGB" or "RGBA"."""
    w, h = draw(SIDES), draw(SIDES)
    background = draw(st.integers(0, 255))
    garment = (background + draw(st.one_of(st.integers(40, 216), st.integers(0, 255)))) % 256  # mostly visible
    cx, cy = draw(st.floats(0, 1)) * w, draw(st.floats(0, 1)) * h
    rx, ry = max(draw(st.floats(0.02, 0.7)) * w, 0.5), max(draw(st.floats(0.02, 0.7)) * h, 0.5)
    noise, seed = draw(st.sampled_from([0.0, 2.0, 12.0, 80.0])), draw(st.integers(0, 2**16))
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0
    if draw(st.booleans()):  # a box instead of an ellipse
        inside = (np.abs(xx + 0.5 - cx) <= rx) & (np.abs(yy + 0.5 - cy) <= ry)
    rng = np.random.default_rng(seed)
    gray = np.where(inside, garment, background) + rng.normal(0.0, noise, (h, w)) if noise else np.where(inside, garment, background)
    gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    kind = draw(st.sampled_from(["L", "RGB", "RGBA"]))
    note(f"picture {w}x{h} {kind}: background {background}, garment {garment} at {(cx, cy)} radii {(rx, ry)}, "
         f"noise {noise}, seed {seed}")
    if kind == "L":
        return Image.fromarray(gray, "L")
    tint = np.array([draw(st.one_of(st.floats(0.3, 1), st.floats(0, 1))) for _ in range(3)], np.float32)
    rgb = np.rint(gray[:, :, None] * tint).astype(np.uint8)
    if kind == "RGB":
        return Image.fromarray(rgb, "RGB")
    alpha = np.where(inside, 255, draw(st.integers(0, 255))).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


@st.composite
def encoded_images(draw, formats=tuple(SAVE_MODES)) -> tuple[bytes, str]:
    """A valid encoding of a picture: (bytes, format), in any mode the format writes, some with EXIF orientation."""
    fmt = draw(st.sampled_from(formats))
    mode = draw(st.sampled_from(SAVE_MODES[fmt]))
    im = draw(pictures())
    im = im.convert("L").convert(mode) if mode in ("1", "P", "I;16", "CMYK") else im.convert(mode)
    options: dict = {}
    if fmt != "BMP" and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(0, 9))  # orientation; 0 and 9 are invalid values
        options["exif"] = exif.tobytes()
    if fmt == "JPEG":
        options.update(quality=draw(st.integers(1, 95)), progressive=draw(st.booleans()),
                       subsampling=draw(st.sampled_from([0, 1, 2])))
    elif fmt == "WEBP":
        options.update(lossless=draw(st.booleans()), quality=draw(st.integers(0, 100)))
    elif fmt == "PNG" and mode in ("L", "RGB", "P") and draw(st.booleans()):
        options["transparency"] = (0, 0, 0) if mode == "RGB" else 0
    note(f"encoded as {fmt} from mode {mode} with {sorted(options)}")
    return encode(im, fmt, **options), fmt


def _png_crc(buf: bytearray, start: int, length: int) -> None:
    """Rewrite the CRC of the PNG chunk whose type starts at `start` and whose data is `length` bytes."""
    buf[start + 4 + length : start + 8 + length] = struct.pack(">I", zlib.crc32(bytes(buf[start : start + 4 + length])))


def with_size(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """The encoding with its header's width and height set (clamped to what the field holds); the pixel data stays."""
    buf = bytearray(data)
    if fmt == "PNG" and buf[12:16] == b"IHDR":
        buf[16:24] = struct.pack(">II", width % 2**32, height % 2**32)
        _png_crc(buf, 12, 13)
    elif fmt == "BMP" and len(buf) >= 26:
        buf[18:26] = struct.pack("<ii", min(width, 2**31 - 1), min(height, 2**31 - 1))
    elif fmt == "JPEG":
        i = 2
        while i + 9 <= len(buf) and buf[i] == 0xFF:  # walk the segments to the start of frame: height, width
            if buf[i + 1] in (0xC0, 0xC1, 0xC2):
                buf[i + 5 : i + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
                break
            i += 2 + struct.unpack(">H", buf[i + 2 : i + 4])[0]
    elif fmt == "WEBP":
        w, h = min(max(width, 1), 16384), min(max(height, 1), 16384)
        if buf[12:16] == b"VP8X":  # the canvas: 24-bit width - 1, height - 1
            buf[24:30] = (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        if (i := buf.find(b"VP8L")) >= 0 and len(buf) >= i + 13:  # lossless: 14 bits each after the 0x2f signature
            bits = int.from_bytes(buf[i + 9 : i + 13], "little") & ~(2**28 - 1)
            buf[i + 9 : i + 13] = (bits | (w - 1) | (h - 1) << 14).to_bytes(4, "little")
        if (i := buf.find(b"VP8 ")) >= 0 and len(buf) >= i + 18:  # lossy key frame: 14-bit width, height
            buf[i + 14 : i + 18] = struct.pack("<HH", min(w, 2**14 - 1), min(h, 2**14 - 1))
    return bytes(buf)


BIG = st.sampled_from([0, 1, 2**14 - 1, 2**14, 8000, 8001, 65535, 2**16, 2**31 - 1, 2**32 - 1])


def _offset(n: int):
    """An offset into n bytes, often within the header."""
    return st.one_of(st.integers(0, min(n, 64)), st.integers(0, n))


@st.composite
def mutated(draw, encoding: tuple[bytes, str]) -> bytes:
    """`encoding` with 0-5 mutations: bit flips, byte sets, insertions, deletions, repeats, truncation (to the
    header only, too), garbage appended, and the header's width and height set to anything."""
    data, fmt = encoding
    done = []
    if draw(st.integers(0, 4)) == 0:
        w, h = draw(st.one_of(BIG, st.integers(0, 2**16))), draw(st.one_of(BIG, st.integers(0, 2**16)))
        data = with_size(data, fmt, w, h)
        done.append(f"size {w}x{h}")
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "repeat", "truncate", "append"]))
        i = draw(_offset(len(buf)))
        if kind == "flip" and i < len(buf):
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and i < len(buf):
            buf[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif kind == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "delete":
            del buf[i : i + draw(st.integers(1, 64))]
        elif kind == "repeat":
            buf[i:i] = buf[i : i + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
        elif kind == "truncate":
            del buf[i:]
        elif kind == "append":
            buf += draw(st.binary(min_size=1, max_size=256))
        done.append(f"{kind}@{i}")
    note(f"mutations: {', '.join(done) or 'none'} -> {len(buf)} bytes")
    return bytes(buf)


MAGICS = [b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0", b"BM",
          b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8L", b"RIFF\xff\xff\xff\xffWEBPVP8X", b"GIF89a",
          b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00", b"8BPS", b"%!PS-Adobe-3.0 EPSF", b"P5\n", b"\x00\x00\x00\x0cjP  "]


def image_bytes():
    """Bytes a kiosk may be sent: mutated encodings of pictures, arbitrary bytes, and known magic numbers + junk."""
    return st.one_of(
        encoded_images().flatmap(mutated),
        st.binary(min_size=0, max_size=1024),
        st.tuples(st.sampled_from(MAGICS), st.binary(max_size=512)).map(b"".join),
    )


# ----------------------------------------------------------------------------- arrays

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float16,
          np.float32, np.float64, np.longdouble, np.complex64, np.complex128, np.dtype(">u2"), np.dtype(">f4"),
          np.dtype("<f8"), np.dtype("U3"), np.dtype("S3"), np.dtype("datetime64[s]"), np.dtype("timedelta64[s]"),
          np.dtype([("r", "u1"), ("g", "u1")]), np.dtype(object)]
NUMERIC = [d for d in DTYPES if np.dtype(d).kind in "buif"]
SPECIALS = [np.nan, np.inf, -np.inf, -0.0, -1.0, 1.0 + 1e-7, 256.0, -1e300, 1e300, 5e-324, 2**63, -(2**63)]


@st.composite
def picture_arrays(draw) -> np.ndarray:
    """A picture as an array of a numeric dtype: its values as they are, in [0, 1], 16-bit, shifted or huge, some
    replaced by NaN/inf/extremes; (H, W) or (H, W, C) with C 0..5 or with extra axes; in any layout or subclass."""
    im = draw(pictures())
    a = np.asarray(im.convert(draw(st.sampled_from(["L", "RGB", "RGBA"]))))
    dtype = np.dtype(draw(st.one_of(st.sampled_from([np.uint8, np.float32, np.float64]), st.sampled_from(NUMERIC))))
    scale = draw(st.one_of(st.just("valid"), st.sampled_from(["as is", "/255", "*257", "-128", "*1e30", "/255+tiny"])))
    scale = ("/255" if dtype.kind == "f" else "as is") if scale == "valid" else scale
    v = {"as is": a, "/255": a / 255.0, "*257": a.astype(np.int64) * 257, "-128": a.astype(np.int64) - 128,
         "*1e30": a * 1e30, "/255+tiny": a / 255.0 + 1e-9}[scale]
    with np.errstate(all="ignore"):
        x = np.asarray(v).astype(dtype)
        for _ in range(draw(st.one_of(st.just(0), st.integers(1, 3)))):  # a few special values at drawn places
            i, j = draw(st.integers(0, x.shape[0] - 1)), draw(st.integers(0, x.shape[1] - 1))
            x[i, j] = np.asarray(draw(st.sampled_from(SPECIALS))).astype(dtype)
    shape = draw(st.one_of(st.just("same"), st.sampled_from(["(H, W, 1)", "(H, W, C)", "(1, H, W, C)", "(C, H, W)"])))
    if x.ndim == 2 and shape != "same":
        x = x[:, :, None]
    if shape == "(H, W, C)":
        x = np.concatenate([x] * 6, axis=2)[:, :, : draw(st.integers(0, 5))]
    elif shape == "(1, H, W, C)":
        x = x[None]
    elif shape == "(C, H, W)":
        x = np.moveaxis(x, 2, 0)
    layout = draw(st.one_of(st.just("C"), st.sampled_from(["F", "reversed", "strided", "read-only", "broadcast", "matrix",
                                                           "masked"])))
    if layout == "F":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = x[::-1, ::-1]
    elif layout == "strided" and x.ndim >= 2:
        x = x[::2, ::3]
    elif layout == "read-only":
        x.flags.writeable = False
    elif layout == "broadcast" and x.ndim >= 2:
        x = np.broadcast_to(x[:1], x.shape)
    elif layout == "matrix" and x.ndim == 2:
        x = np.asmatrix(x)
    elif layout == "masked":
        x = np.ma.masked_invalid(x) if x.dtype.kind == "f" else np.ma.masked_equal(x, 0)
    note(f"array: {dtype} {scale}, shape {shape} -> {x.shape}, layout {layout}")
    return x


def _elements(dtype: np.dtype):
    return st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3)) if dtype.kind == "O" else None


def any_arrays():
    """Arrays of every dtype and shape: pictures in numeric dtypes, and small arrays of anything, ndim 0..5, 0-sized too."""
    small = st.sampled_from(DTYPES).map(np.dtype).flatmap(lambda d: hnp.arrays(
        d, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6), elements=_elements(d)))
    return st.one_of(picture_arrays(), small)


# ----------------------------------------------------------------------------- PIL images

MODES = tuple(Image.MODES)  # 1, CMYK, F, HSV, I, I;16, I;16B, I;16L, I;16N, L, LA, La, LAB, P, PA, RGB, RGBA, RGBa, ...


@st.composite
def valid_pil_images(draw) -> Image.Image:
    """A picture as a PIL image in any mode (F as pixel / 255), 1x1 too, some with a transparency entry."""
    mode, source = draw(st.sampled_from(MODES)), draw(pictures())
    via = {"La": "LA", "RGBa": "RGBA"}.get(mode)  # Pillow makes these from those only
    if mode == "F":
        im = Image.fromarray(np.asarray(source.convert("L"), np.float32) / 255.0, "F")
    else:
        im = source.convert(via).convert(mode) if via else source.convert(mode)
    if mode in ("L", "RGB", "P") and draw(st.booleans()):
        im.info["transparency"] = draw(st.integers(0, 255)) if mode != "RGB" else (0, 0, 0)
    note(f"PIL image {im.mode} {im.size} from the picture, info {sorted(im.info)}")
    return im


@st.composite
def pil_images(draw) -> Image.Image:
    """Any PIL image: a valid one, random pixel bytes in any mode (NaN floats, 1xN and Nx1 too), one opened
    lazily from a damaged file, or a closed one."""
    kind = draw(st.sampled_from(["valid", "random bytes", "lazy file", "closed"]))
    if kind == "lazy file":  # opened (header read), not loaded: the pixels are decoded in the runtime
        data, end = draw(encoded_images().flatmap(lambda e: st.tuples(st.just(e[0]), st.integers(0, len(e[0])))))
        try:
            im = Image.open(io.BytesIO(data[:end]))
        except Exception:  # noqa: BLE001 - truncated inside the header: a valid image instead
            kind = "valid"
        else:
            note(f"lazy file, truncated at {end} of {len(data)} bytes")
            return im
    if kind == "random bytes":
        mode = draw(st.sampled_from(MODES))
        size = draw(st.one_of(st.tuples(SIDES, SIDES), st.tuples(st.integers(1, 3), st.integers(1, 5000))))
        size = size if draw(st.booleans()) else size[::-1]  # 1xN and Nx1 too
        n = len(Image.new(mode, (1, size[1])).tobytes()) * size[0]
        seed = draw(st.integers(0, 2**16))
        note(f"PIL image {mode} {size} of random bytes, seed {seed}")
        return Image.frombytes(mode, size, np.random.default_rng(seed).bytes(n))
    im = draw(valid_pil_images())
    if kind == "closed":
        im.close()
    return im


# ----------------------------------------------------------------------------- paths

PATH_KINDS = ("missing", "folder", "empty", "image", "mutated", "NUL in name", "long name", "dangling link",
              "link loop", "/dev/null", "/dev/zero", "str", "bytes path", "bytes DirEntry")


@st.composite
def path_specs(draw) -> tuple[str, bytes]:
    """What to put where: (kind, file content); `make_path` turns it into a path under a folder."""
    kind = draw(st.sampled_from(PATH_KINDS))
    content = draw(encoded_images().flatmap(mutated)) if kind in ("mutated", "str", "bytes path", "bytes DirEntry") else b""
    if kind == "image":
        content = draw(encoded_images())[0]
    return kind, content


def make_path(spec: tuple[str, bytes], root: Path):
    """The path a spec describes, created under `root` (a str, bytes or Path, as the spec says)."""
    kind, content = spec
    p = root / f"{kind.replace(' ', '-').replace('/', '')}-{zlib.crc32(content):08x}.png"
    if kind in ("empty", "image", "mutated", "str", "bytes path", "bytes DirEntry"):
        p.write_bytes(content)
    elif kind == "folder":
        p.mkdir(exist_ok=True)
    elif kind == "dangling link" and not p.is_symlink():
        p.symlink_to(root / "nowhere.png")
    elif kind == "link loop" and not p.is_symlink():
        p.symlink_to(p)
    if kind == "bytes DirEntry":  # a path-like whose path is bytes
        return next(e for e in os.scandir(os.fsencode(root)) if e.name == os.fsencode(p.name))
    return {"NUL in name": str(p) + "\0.png", "long name": root / ("x" * 5000), "/dev/null": Path(os.devnull),
            "/dev/zero": "/dev/zero", "str": str(p), "bytes path": os.fsencode(p)}.get(kind, p)


# ----------------------------------------------------------------------------- more properties


def check_valid(image, polarity: str = "auto") -> list[FmnistEdgeError | None]:
    """`check`, and more: a valid image (encoding, PIL image) always decodes, and only a picture with nothing on
    it is refused."""
    outcomes = check(image, polarity)
    assert outcomes[0] is None, f"a valid image was refused by to_array: {outcomes[0]}"
    assert outcomes[1] is None or isinstance(outcomes[1], ImageValueError), outcomes[1]
    return outcomes


@st.composite
def bombs(draw) -> tuple[bytes, str]:
    """A valid small encoding whose header claims more than MAX_PIXELS (as much as its fields hold), and its format."""
    data, fmt = draw(encoded_images())
    side = 2**14 - 1 if fmt == "WEBP" else 2**16 - 1  # the largest width and height the header holds
    width = draw(st.integers(MAX_PIXELS // side + 1, side))
    height = draw(st.integers(MAX_PIXELS // width + 1, side))
    note(f"header set to {width}x{height}")
    return with_size(data, fmt, width, height), fmt


def check_bomb(bomb: tuple[bytes, str]) -> list[FmnistEdgeError | None]:
    """A decompression bomb is refused from its header: an InputImageError (ImageSizeError but for a WebP, which
    libwebp may refuse first) before Pillow makes an image, the peak RSS growing by less than 4 MiB."""
    data, fmt = bomb
    made = Image.core.get_stats()["new_count"]
    outcomes: list[FmnistEdgeError | None] = []
    for call in (to_array, model_input):
        error, _, grown = measured(call, data)
        assert isinstance(error, InputImageError), f"{call.__name__} gave {error!r}"
        if fmt != "WEBP":
            assert isinstance(error, ImageSizeError) and "decompression-bomb" in str(error), error
        assert grown is None or grown < 4 * 2**20, f"{call.__name__} grew the peak RSS by {grown / 2**20:.0f} MiB"
        outcomes.append(error)
    assert Image.core.get_stats()["new_count"] == made, "Pillow made an image for a header over MAX_PIXELS"
    return outcomes


def properties(root: Path) -> dict:
    """The properties below, for the long run: name -> (strategy, property of one drawn value -> outcomes)."""
    return {
        "bytes": (st.tuples(image_bytes(), POLARITY), lambda v: check(*v)),
        "valid encodings": (st.tuples(encoded_images().map(lambda e: e[0]), POLARITY), lambda v: check_valid(*v)),
        "arrays": (st.tuples(any_arrays(), POLARITY), lambda v: check(*v)),
        "valid PIL images": (st.tuples(valid_pil_images(), POLARITY), lambda v: check_valid(*v)),
        "PIL images": (st.tuples(pil_images(), POLARITY), lambda v: check(*v)),
        "paths": (path_specs(), lambda spec: check(make_path(spec, root))),
        "bombs": (bombs(), check_bomb),
    }


def outcome(outcomes: list[FmnistEdgeError | None]) -> str:
    return " / ".join("ok" if o is None else type(o).__name__ for o in outcomes)


