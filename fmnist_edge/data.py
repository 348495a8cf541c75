"""The real Fashion-MNIST data set: find it offline, read and validate IDX or CSV files, split it."""

from __future__ import annotations

import csv
import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import IMAGE_SHAPE, INPUT_SCALE, NUM_CLASSES
from .errors import DataError, first_line

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
LOCAL_DIR = Path("data/fashion-mnist")
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")
ENV_VAR = "FMNIST_DATA_DIR"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CSV_FILES = {"train": "fashion-mnist_train.csv", "test": "fashion-mnist_test.csv"}

FIXES = (
    "install the Debian package (sudo apt-get install dataset-fashion-mnist), "
    f"or put the four IDX files (or the Kaggle CSVs) in ./{LOCAL_DIR}, "
    f"or point --data-dir / {ENV_VAR} at a folder that holds them"
)


@dataclass(frozen=True)
class FashionMNIST:
    """The data set as uint8 arrays: images (N, 28, 28), labels (N,) in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


_SCALE = np.float32(INPUT_SCALE)


def normalize(images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Dataset-form pixels -> the model input, pixel / 255 as float32 in [0, 1]: the one place it is computed.

    uint8 (..., 28, 28) -> a new float32 (..., 28, 28, 1); with `out` (float32, the pixels' own shape, e.g. an
    infer request's input buffer) it is written there instead, allocating nothing. Float32 pixels are already
    pixel / 255 (kept unrounded by `runtime.preprocess.prepare`) and are copied as they are."""
    if out is None:
        full = np.empty((*images.shape, 1), np.float32)
        normalize(images, full[..., 0])
        return full
    if images.dtype == np.uint8:
        np.multiply(images, _SCALE, out=out, casting="unsafe")
    else:
        out[...] = images
    return out


# ----------------------------------------------------------------------------- finding


def _layout(folder: Path) -> str | None:
    """'idx' or 'csv' when `folder` holds a whole data set, else None."""
    if not folder.is_dir():
        return None
    names = [n for pair in IDX_FILES.values() for n in pair]
    if all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in names):
        return "idx"
    if all((folder / n).is_file() for n in CSV_FILES.values()):
        return "csv"
    return None


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched, in order: explicit/env, ./data/fashion-mnist, the Debian path, the Keras cache."""
    explicit = data_dir or os.environ.get(ENV_VAR)
    dirs = [Path(explicit).expanduser()] if explicit else []
    return dirs + [LOCAL_DIR, DEBIAN_DIR, KERAS_CACHE_DIR.expanduser()]


def find_data_dir(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """Return the first folder that holds the data set; an explicit folder must hold it."""
    explicit = data_dir or os.environ.get(ENV_VAR)
    if explicit:
        folder = Path(explicit).expanduser()
        if _layout(folder):
            return folder
        what = "does not exist" if not folder.exists() else "does not hold the Fashion-MNIST IDX or CSV files"
        src = "--data-dir" if data_dir else ENV_VAR
        raise DataError(f"{src} {folder} {what}; {FIXES}")
    for folder in candidate_dirs():
        if _layout(folder):
            return folder
    if allow_download:
        return _keras_download()
    raise DataError(f"Fashion-MNIST not found in {', '.join(map(str, candidate_dirs()))}; {FIXES}")


def _keras_download() -> Path:
    """Last resort: Keras' own download into its cache (fails offline, then one error with every fix)."""
    try:
        from keras.datasets import fashion_mnist

        fashion_mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure (no keras, no network) means: tell the fixes
        raise DataError(
            f"Fashion-MNIST not found locally and Keras could not download it ({first_line(exc, 120)}); {FIXES}"
        ) from None
    folder = KERAS_CACHE_DIR.expanduser()
    if not _layout(folder):
        raise DataError(f"Keras downloaded Fashion-MNIST but {folder} does not hold it; {FIXES}")
    return folder


# ----------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated .gz raises EOFError
        raise DataError(f"{path}: cannot read ({exc or type(exc).__name__}); the file is corrupt or truncated, fetch it again") from None


def _idx_path(folder: Path, name: str) -> Path:
    gz = folder / f"{name}.gz"
    return gz if gz.is_file() else folder / name


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    """Read an IDX file ('images': magic 2051, (N, 28, 28); 'labels': magic 2049, (N,)), validated."""
    path = Path(path)
    raw = _read_bytes(path)
    ndim, magic = (3, 2051) if kind == "images" else (1, 2049)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: only {len(raw)} bytes, shorter than an IDX header; the file is truncated")
    got_magic = struct.unpack(">I", raw[:4])[0]
    if got_magic != magic:
        raise DataError(f"{path}: magic number {got_magic}, expected {magic} for IDX {kind}; wrong or corrupt file")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if kind == "images" and tuple(dims[1:]) != IMAGE_SHAPE:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = int(np.prod(dims))
    body = len(raw) - header
    if body != expected:
        raise DataError(f"{path}: header promises {dims[0]} {kind} ({expected} bytes) but the file holds {body}; truncated or corrupt")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and arr.size and arr.max() >= NUM_CLASSES:
        raise DataError(f"{path}: label {int(arr.max())} out of range 0..9; corrupt labels file")
    return arr


def read_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read the Kaggle CSV layout (`label,pixel1..pixel784`, one header row) -> (images, labels)."""
    path = Path(path)
    rows = []
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[0].strip().lower() != "label" or len(header) != 785:
                raise DataError(f"{path}: expected a header 'label,pixel1..pixel784' (785 columns)")
            for lineno, row in enumerate(reader, start=2):
                if len(row) != 785:
                    raise DataError(f"{path}: line {lineno} has {len(row)} columns, expected 785; truncated or corrupt")
                rows.append(row)
        table = np.asarray(rows, dtype=np.int64) if rows else np.zeros((0, 785), np.int64)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric value ({exc}); corrupt CSV") from None
    labels, pixels = table[:, 0], table[:, 1:]
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels must be in 0..9, found {labels.min()}..{labels.max()}")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise DataError(f"{path}: pixel values must be in 0..255, found {pixels.min()}..{pixels.max()}")
    return pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE), labels.astype(np.uint8)


def _read_split(folder: Path, split: str, layout: str) -> tuple[np.ndarray, np.ndarray]:
    if layout == "csv":
        x, y = read_csv(folder / CSV_FILES[split])
        name = str(folder / CSV_FILES[split])
    else:
        img_name, lbl_name = IDX_FILES[split]
        x = read_idx(_idx_path(folder, img_name), "images")
        y = read_idx(_idx_path(folder, lbl_name), "labels")
        name = f"{_idx_path(folder, img_name)} / {_idx_path(folder, lbl_name)}"
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} images but {len(y)} labels; the files do not belong together")
    if len(x) == 0:
        raise DataError(f"{name}: no examples")
    return x, y


def load(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> FashionMNIST:
    """Find and read the whole data set (train 60,000 and test 10,000 for the real one), validated."""
    folder = find_data_dir(data_dir, allow_download=allow_download)
    layout = _layout(folder)
    x_train, y_train = _read_split(folder, "train", layout)
    x_test, y_test = _read_split(folder, "test", layout)
    return FashionMNIST(x_train, y_train, x_test, y_test, source=f"{folder} ({layout})")


def stratified_split(
    labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class keeps its share in both; fixed by `seed`."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) > 1:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(val_idx))


def stratified_subset(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Indices of `limit` examples with the class balance of `labels` (for --limit)."""
    if limit >= len(labels):
        return np.arange(len(labels))
    _, idx = stratified_split(labels, val_fraction=limit / len(labels), seed=seed)
    return np.sort(idx)
