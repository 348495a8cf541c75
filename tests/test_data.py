"""The data loader on the real Fashion-MNIST and on broken copies of its files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from fmnist_edge import data
from fmnist_edge.errors import DataError


def test_real_dataset_shapes_and_balance(fmnist):
    assert fmnist.x_train.shape == (60000, 28, 28) and fmnist.x_train.dtype == np.uint8
    assert fmnist.x_test.shape == (10000, 28, 28)
    assert np.bincount(fmnist.y_train).tolist() == [6000] * 10
    assert np.bincount(fmnist.y_test).tolist() == [1000] * 10


def test_normalize_is_nhwc_unit_range(fmnist):
    x = data.normalize(fmnist.x_test[:4])
    assert x.shape == (4, 28, 28, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.allclose(x[..., 0] * 255, fmnist.x_test[:4])


def test_stratified_split_is_balanced_disjoint_and_seeded(fmnist):
    tr, va = data.stratified_split(fmnist.y_train, 0.1, seed=3)
    assert len(va) == 6000 and len(tr) == 54000
    assert not set(tr) & set(va)
    assert np.bincount(fmnist.y_train[va]).tolist() == [600] * 10
    tr2, va2 = data.stratified_split(fmnist.y_train, 0.1, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    _, va3 = data.stratified_split(fmnist.y_train, 0.1, seed=4)
    assert not np.array_equal(va, va3)


def _write_idx(path, arr, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _small_idx_dir(tmp_path, fmnist, n=50):
    d = tmp_path / "small"
    d.mkdir()
    for split, (x, y) in {"train": (fmnist.x_train[:n], fmnist.y_train[:n]), "test": (fmnist.x_test[:n], fmnist.y_test[:n])}.items():
        img, lbl = data.IDX_FILES[split]
        _write_idx(d / f"{img}.gz", x, 2051)
        _write_idx(d / f"{lbl}.gz", y, 2049)
    return d


def test_explicit_dir_and_env_take_precedence(tmp_path, fmnist, monkeypatch):
    d = _small_idx_dir(tmp_path, fmnist)
    assert len(data.load(d).x_train) == 50
    monkeypatch.setenv(data.ENV_VAR, str(d))
    assert len(data.load().x_test) == 50


def test_plain_idx_files_are_read(tmp_path, fmnist):
    d = _small_idx_dir(tmp_path, fmnist)
    for gz in d.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    ds = data.load(d)
    assert np.array_equal(ds.x_train, fmnist.x_train[:50])


def test_kaggle_csv_layout(tmp_path, fmnist):
    d = tmp_path / "csv"
    d.mkdir()
    for split, (x, y) in {"train": (fmnist.x_train[:30], fmnist.y_train[:30]), "test": (fmnist.x_test[:20], fmnist.y_test[:20])}.items():
        rows = ["label," + ",".join(f"pixel{i}" for i in range(1, 785))]
        rows += [",".join(map(str, [int(lbl), *img.ravel().tolist()])) for img, lbl in zip(x, y, strict=True)]
        (d / data.CSV_FILES[split]).write_text("\n".join(rows) + "\n")
    ds = data.load(d)
    assert np.array_equal(ds.x_train, fmnist.x_train[:30]) and np.array_equal(ds.y_test, fmnist.y_test[:20])


def test_missing_explicit_dir_names_the_fixes(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*--data-dir"):
        data.load(tmp_path / "nope")


def test_nothing_anywhere_names_all_fixes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", tmp_path / "keras")
    with pytest.raises(DataError, match="apt-get install.*data/fashion-mnist.*FMNIST_DATA_DIR"):
        data.find_data_dir(allow_download=False)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) // 2], "truncated|corrupt"),  # cut gzip stream
        (lambda raw: b"not a gzip file at all", "corrupt|truncated|cannot read"),
        (lambda raw: gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 4), "header"),  # header cut short
        (lambda raw: gzip.compress(b"\x00\x00\x08\x01" + gzip.decompress(raw)[4:]), "magic number 2049"),
        (lambda raw: gzip.compress(gzip.decompress(raw)[:-100]), "promises"),  # body cut
    ],
)
def test_corrupt_images_file_is_a_clear_error(tmp_path, fmnist, damage, message):
    d = _small_idx_dir(tmp_path, fmnist)
    f = d / "train-images-idx3-ubyte.gz"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(DataError, match=message) as exc:
        data.load(d)
    assert "train-images-idx3-ubyte" in str(exc.value)


def test_label_out_of_range(tmp_path, fmnist):
    d = _small_idx_dir(tmp_path, fmnist)
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", np.full(50, 11), 2049)
    with pytest.raises(DataError, match="label 11 out of range"):
        data.load(d)


def test_images_and_labels_of_unequal_length(tmp_path, fmnist):
    d = _small_idx_dir(tmp_path, fmnist)
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", fmnist.y_test[:40], 2049)
    with pytest.raises(DataError, match="50 images but 40 labels"):
        data.load(d)


def test_csv_with_bad_row(tmp_path):
    d = tmp_path / "csv"
    d.mkdir()
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    (d / data.CSV_FILES["train"]).write_text(header + "\n3," + ",".join(["0"] * 700) + "\n")
    (d / data.CSV_FILES["test"]).write_text(header + "\n")
    with pytest.raises(DataError, match="line 2 has 701 columns"):
        data.load(d)
