"""The golden set of a model version: labelled test images and the answers the model gave when it was published.

`publish` writes GOLDEN (golden.json) into the version folder before the manifest and the signature, so both
cover it: `SIZE` images of the real test split, the fixed slice x_test[START:START + SIZE], in dataset form
(uint8 28x28, base64 of the raw bytes), their labels, and the class index the published IR gave for each.
Before a version serves, `check` runs the compiled model on those images and refuses it (GoldenSetError)
unless at least `AGREEMENT` of its answers are the recorded ones. A version without golden.json (published
before this file existed) is not gated: `check` returns None and the server says so.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from .artifact import MANIFEST, file_entry, read_manifest, verify_file
from .atomic import write_json
from .contract import INPUT_SHAPE
from .errors import GoldenSetError, ManifestError

GOLDEN = "golden.json"  # in the version folder, beside model.xml, model.bin and manifest.json
START, SIZE = 0, 32  # the slice of the test split: the first 32 images
AGREEMENT = 0.99  # the share of answers that must match golden.json's for a version to serve
SCHEMA = 1
HW = INPUT_SHAPE[1:3]  # (28, 28)


def answers(classifier, images: np.ndarray) -> np.ndarray:
    """The class index `classifier` gives each dataset-form uint8 (N, 28, 28) image, on the model's own input."""
    from .runtime import to_model_input

    return np.argmax(classifier.predict_tensor(to_model_input(images)), axis=1).astype(np.int64)


def write(version_dir: Path, classifier, images: np.ndarray | None = None, labels: np.ndarray | None = None) -> dict:
    """Write `version_dir`/golden.json with `classifier`'s answers on the golden images (default: the real test
    split's slice, read without downloading); returns its manifest file entry ({"path", "bytes", "sha256"})."""
    if images is None:
        from . import data

        fmnist = data.load(allow_download=False)
        images, labels = fmnist.x_test[START:START + SIZE], fmnist.y_test[START:START + SIZE]
    images = np.ascontiguousarray(images, np.uint8).reshape(-1, *HW)
    golden = {
        "schema_version": SCHEMA,
        "source": f"test split [{START}:{START + len(images)}]",
        "shape": list(images.shape),
        "images": base64.b64encode(images.tobytes()).decode("ascii"),
        "labels": [int(v) for v in labels],
        "answers": [int(v) for v in answers(classifier, images)],
    }
    write_json(version_dir / GOLDEN, golden)
    return file_entry(version_dir, version_dir / GOLDEN)


def read(version_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(images uint8 (N, 28, 28), answers (N,)) of a version, verified against its manifest; None when the
    version has no golden set. golden.json present but not in manifest.json, or changed: ModelFileError."""
    path = version_dir / GOLDEN
    entry = read_manifest(version_dir).raw.get("golden")
    if entry is None:
        if path.exists():
            raise ManifestError(f"{path} is not listed in {MANIFEST}; publish the version again")
        return None
    verify_file(version_dir, entry)
    try:
        golden = json.loads(path.read_text(encoding="utf-8"))
        n = int(golden["shape"][0])
        images = np.frombuffer(base64.b64decode(golden["images"]), np.uint8).reshape(n, *HW)
        expected = np.asarray(golden["answers"], np.int64).reshape(n)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ManifestError(f"{path} cannot be read ({type(exc).__name__}: {exc}); publish the version again") from None
    if n == 0:
        raise ManifestError(f"{path} holds no images; publish the version again")
    return images, expected


def check(version_dir: str | Path, classifier) -> str | None:
    """Run `classifier` (the compiled version) on its golden set: a one-line summary when it agrees enough,
    None when the version has no golden set; GoldenSetError naming the count when it does not."""
    golden = read(Path(version_dir))
    if golden is None:
        return None
    images, expected = golden
    agree = int(np.sum(answers(classifier, images) == expected))
    figure = f"golden set: {agree} of {len(expected)} agree"
    if agree < AGREEMENT * len(expected):
        raise GoldenSetError(f"{figure} (needs {AGREEMENT:.0%})")
    return figure
