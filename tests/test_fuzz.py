"""Property-based fuzzing (hypothesis) of decoding and preprocessing: hostile input becomes the model's input or a FmnistEdgeError.

Inputs: valid PNG/JPEG/WebP/BMP encodings mutated (bit flips, insertions, deletions, truncation, header
sizes), arbitrary bytes, numpy arrays of every dtype and shape, PIL images of every mode, and file paths.
For each, `to_array` returns a valid pixel array and `model_input` (what `Classifier.predict` hands the
model) a finite float32 (1, 28, 28, 1) in [0, 1], or each raises a FmnistEdgeError with a one-line message;
any other exception fails with the input shown. Every call is held to a time and a memory bound, linear in the
pixels the input has or its header claims (memory: the growth of the process's peak RSS, reset before each
call, Linux only; tracemalloc would see numpy but not Pillow, and slows Pillow's Python parsers 20-50x). A
header claiming more than MAX_PIXELS must be refused before Pillow makes an image (`Image.core.get_stats()`).

The strategies and `check` live in `fmnist_edge.harness.hostile`, shared with the long run (`python -m fmnist_edge.harness.fuzz`).
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, example, given, note, settings
from PIL import Image

from fmnist_edge.errors import ImageNotFoundError
from fmnist_edge.harness.hostile import (
    FUZZ,
    POLARITY,
    _valid_model_input,
    any_arrays,
    bombs,
    check,
    check_bomb,
    check_valid,
    encode,
    encoded_images,
    image_bytes,
    make_path,
    model_input,
    outcome,
    path_specs,
    pil_images,
    valid_pil_images,
    with_size,
)
from fmnist_edge.runtime.decode import to_array
from fmnist_edge.runtime.preprocess import DETECT_PIXELS

pytestmark = pytest.mark.fuzz


# ----------------------------------------------------------------------------- the tests
# event(): the share of each outcome is shown by `pytest -m fuzz --hypothesis-show-statistics`.

MASKED_NAN = np.ma.masked_invalid(np.array([[0.5, np.nan], [0.0, 1.0]]))
# 64 bytes claiming 8000 x 8000 (= MAX_PIXELS): libwebp fills a 256 MB canvas before it fails, as MAX_PIXELS allows
WEBP_AT_THE_LIMIT = with_size(encode(Image.new("RGB", (8, 8), 100), "WEBP"), "WEBP", 8000, 8000)


@settings(FUZZ, max_examples=400)
@given(data=image_bytes(), polarity=POLARITY)
@example(data=b"\x89PNG\r\n\x1a\n", polarity="auto")
@example(data=WEBP_AT_THE_LIMIT, polarity="auto")
def test_bytes_become_the_model_input_or_a_project_error(data, polarity):
    event(outcome(check(data, polarity)))


@settings(FUZZ, max_examples=150)
@given(encoding=encoded_images(), polarity=POLARITY)
def test_valid_encodings_decode_and_only_a_flat_picture_is_refused(encoding, polarity):
    note(f"format {encoding[1]}")
    event(outcome(check_valid(encoding[0], polarity)))


@settings(FUZZ, max_examples=400)
@given(a=any_arrays(), polarity=POLARITY)
@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@example(a=MASKED_NAN, polarity="auto")  # found: the mask hid the NaN, which reached the model
def test_arrays_become_the_model_input_or_a_project_error(a, polarity):
    event(outcome(check(a, polarity)))


@settings(FUZZ, max_examples=150)
@given(im=valid_pil_images(), polarity=POLARITY)
@example(im=Image.new("La", (30, 20), 0), polarity="auto")  # found: refused as "truncated or corrupt"
def test_valid_pil_images_of_every_mode_decode_and_only_a_flat_picture_is_refused(im, polarity):
    event(outcome(check_valid(im, polarity)))


@settings(FUZZ, max_examples=250)
@given(im=pil_images(), polarity=POLARITY)
def test_pil_images_become_the_model_input_or_a_project_error(im, polarity):
    event(outcome(check(im, polarity)))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(FUZZ, max_examples=150)
@given(spec=path_specs())
@example(spec=("NUL in name", b""))  # found: ValueError
@example(spec=("/dev/zero", b""))  # found: read until MemoryError
@example(spec=("bytes DirEntry", b""))  # found: TypeError
def test_paths_become_the_model_input_or_a_project_error(spec, fuzz_dir):
    outcomes = check(make_path(spec, fuzz_dir))
    event(outcome(outcomes))
    if spec[0] in ("missing", "folder", "NUL in name", "long name", "dangling link", "link loop", "/dev/zero"):
        assert all(isinstance(o, ImageNotFoundError) for o in outcomes), outcomes


@settings(FUZZ, max_examples=100)
@given(bomb=bombs())
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_header_over_max_pixels_is_refused_before_any_pixel_is_allocated(bomb):
    check_bomb(bomb)


def test_a_thin_panorama_is_searched_on_a_copy_of_bounded_size():
    """Regression: the garment was looked for on a copy reduced by its short side only, so a 120 x 100,000 frame
    (12 MP) held 456 MB of numpy arrays (a float copy and coordinate grids of every pixel), and a 64 MP one 2.4 GB.
    The copy now has at most DETECT_PIXELS, so what the search holds no longer grows with the frame."""
    peaks = []
    tracemalloc.start()  # numpy's arrays; the frame is made before the peak is reset
    try:
        for width in (100_000, 200_000):
            thin = np.full((120, width), 230, np.uint8)
            thin[30:90, width // 3 : width // 2] = 20
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            out = model_input(thin)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
            _valid_model_input(out)
            assert out.max() > 0.5  # the garment was found
    finally:
        tracemalloc.stop()
    assert max(peaks) < 40 * DETECT_PIXELS, f"the search held {max(peaks) / 2**20:.0f} MiB"
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_a_device_or_pipe_path_is_read_with_a_bound():
    """Regression: /dev/zero was read until memory ran out (MemoryError). A device is refused; a pipe is still
    read (to at most MAX_FILE_BYTES)."""
    with pytest.raises(ImageNotFoundError, match="/dev/zero is a device, not an image file"):
        to_array("/dev/zero")
    r, w = os.pipe()
    os.write(w, encode(Image.new("L", (28, 28), 7), "PNG"))
    os.close(w)
    try:
        assert to_array(f"/dev/fd/{r}").shape == (28, 28)
    finally:
        os.close(r)
