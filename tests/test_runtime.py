"""The edge runtime on a real converted tiny model: input kinds, preprocessing, precisions, threads, manifest, bad input."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from images import encode, photo
from PIL import Image

from fmnist_edge import errors
from fmnist_edge.runtime import (
    Classifier,
    Prediction,
    decode,
    to_dataset_form,
    to_model_input,
)


@pytest.fixture(scope="session")
def artifacts(converted) -> Path:
    return converted


@pytest.fixture(scope="session")
def images(fmnist):
    """200 real test images in dataset form, uint8 (200, 28, 28), and their labels."""
    return fmnist.x_test[:200], fmnist.y_test[:200]


def raw_probs(artifacts: Path, x: np.ndarray, precision="fp32", hint="f32") -> np.ndarray:
    """The same IR through a bare compiled model, without the runtime."""
    compiled = ov.Core().compile_model(str(artifacts / "openvino" / precision / "model.xml"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": hint})
    return compiled(to_model_input(x))[0]


# ----------------------------------------------------------------------------- loading and precisions


@pytest.mark.parametrize(
    "precision, math, activations",
    [("fp32", "f32", ["f32"]), ("bf16", "bf16", ["bf16"]), ("fp16", "f32", ["f32"]), ("int8", "f32", ["u8"])],
)
def test_each_precision_reports_what_it_runs_and_agrees(artifacts, clf, images, precision, math, activations):
    if precision == "bf16" and "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        math, activations = "f32", ["f32"]  # no bf16 instructions (e.g. an AVX2-only CPU): OpenVINO computes f32
    c = Classifier.load(artifacts, precision=precision)
    assert (c.precision, c.device, c.inference_precision) == (precision, "CPU", math)
    assert c.compute_precisions["activations"] == activations
    if precision == "fp16":
        assert c.compute_precisions["weights"] == ["f16"]
    x, _ = images
    ref = clf.predict_proba(x)
    got = c.predict_proba(x)
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= (0.9 if precision == "int8" else 0.97)
    if precision == "fp32":
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_predict_equals_bare_openvino_and_every_path_agrees(artifacts, clf, images):
    x, y = images
    ref = raw_probs(artifacts, x)
    np.testing.assert_allclose(clf.predict_proba(x, batch_size=37), ref, atol=1e-6)
    single = [clf.predict(img, top_k=10) for img in x[:50]]
    for p, r in zip(single, ref[:50], strict=True):
        assert isinstance(p, Prediction)
        assert p.index == int(r.argmax()) and p.label == clf.class_names[p.index]
        assert p.confidence == pytest.approx(float(r.max()), abs=1e-6)
        assert [name for name, _ in p.top_k] == [clf.class_names[j] for j in np.argsort(-r, kind="stable")]
        assert sum(q for _, q in p.top_k) == pytest.approx(1.0, abs=1e-4)
    batch = clf.predict_batch(x[:50], top_k=10, batch_size=8)
    assert [p.index for p in batch] == [p.index for p in single]
    np.testing.assert_allclose([p.confidence for p in batch], [p.confidence for p in single], atol=1e-6)
    asynced = clf.predict_async(iter(list(x[:50])), top_k=10, jobs=3)
    assert [p.index for p in asynced] == [p.index for p in single]
    np.testing.assert_allclose([p.confidence for p in asynced], [p.confidence for p in single], atol=1e-6)
    assert np.mean(ref.argmax(1) == y) > 0.5  # the tiny model learned something: the comparisons mean something
    assert clf.predict_batch([]) == [] and clf.predict_async([]) == []


def test_a_throughput_classifier_runs_batches_on_its_streams_and_agrees(artifacts, clf, images):
    x, _ = images
    fast = Classifier.load(artifacts, hint="throughput", threads=2)
    assert fast._engine.streams(64) >= 2 and clf._engine.streams(64) == 1
    assert fast.compiled_model.input(0).get_partial_shape().is_static  # one image at a time: a static batch of 1
    assert fast._engine.batches().input(0).get_partial_shape()[0].is_dynamic
    ref = clf.predict_proba(x)
    for batch_size in (64, 37, 1):  # several batches in flight, a short padded last one, single images
        np.testing.assert_allclose(fast.predict_proba(x, batch_size=batch_size), ref, atol=1e-5)
    items = list(x[:70])
    items[66] = np.full((28, 28), np.inf)  # a bad item in the second batch: named, nothing left in flight
    with pytest.raises(errors.ImageValueError, match="^image 66:"):
        fast.predict_proba(items, batch_size=32)
    assert fast.predict_batch(x[:5]) == clf.predict_batch(x[:5])


def test_top_k_and_prediction_dict(clf, images):
    p = clf.predict(images[0][0], top_k=1)
    assert len(p.top_k) == 1 and p.top_k[0] == (p.label, p.confidence)
    d = p.to_dict()
    assert json.loads(json.dumps(d))["label"] == p.label and len(d["top_k"]) == 1


def test_auto_device_reports_what_it_picked(artifacts, clf, images):
    c = Classifier.load(artifacts, device="AUTO")
    assert c.device == "CPU" and c.inference_precision == "f32"  # read from the runtime graph under AUTO
    assert c.predict(images[0][0]) == clf.predict(images[0][0])


def test_cache_dir_and_threads_pass_through(artifacts, tmp_path, images):
    c = Classifier.load(artifacts, cache_dir=tmp_path / "cache", threads=1)
    assert c.compiled_model.get_property("INFERENCE_NUM_THREADS") == 1
    assert any((tmp_path / "cache").iterdir())  # OpenVINO wrote its model cache
    again = Classifier.load(artifacts, cache_dir=tmp_path / "cache")  # loads from the cache
    assert again.predict(images[0][0]) == c.predict(images[0][0])


# ----------------------------------------------------------------------------- every input kind


def test_every_input_kind_of_a_dataset_image(clf, images, tmp_path):
    img = images[0][3]
    want = clf.predict(img)
    same = {
        "uint8 (28, 28, 1)": img[:, :, None],
        "float [0, 1]": img.astype(np.float64) / 255.0,
        "int64 0..255": img.astype(np.int64),
        "gray as RGB": np.repeat(img[:, :, None], 3, axis=2),
        "RGBA opaque": np.dstack([img, img, img, np.full_like(img, 255)]),
        "PIL L": Image.fromarray(img),
        "PIL RGB": Image.fromarray(img).convert("RGB"),
        "PNG bytes": encode(img, "PNG"),
        "BMP bytes": encode(img, "BMP"),
        "WebP lossless bytes": encode(img, "WEBP", lossless=True),
        "bytearray": bytearray(encode(img, "PNG")),
    }
    (tmp_path / "g.png").write_bytes(encode(img, "PNG"))
    same["path str"] = str(tmp_path / "g.png")
    same["Path"] = tmp_path / "g.png"
    for kind, value in same.items():
        got = clf.predict(value)
        assert got.index == want.index, kind
        assert got.confidence == pytest.approx(want.confidence, abs=1e-5), kind
    jpeg = encode(img, "JPEG", quality=95)  # lossy: close, not equal
    assert np.abs(clf.predict_proba([jpeg]) - clf.predict_proba([img])).max() < 0.15
    sixteen = Image.fromarray(img.astype(np.uint16) * 257)  # a 16-bit gray PNG
    buf = io.BytesIO()
    sixteen.save(buf, format="PNG")
    assert np.array_equal(to_dataset_form(buf.getvalue()), img)


def test_photo_kinds_reach_the_same_answer(clf, images, tmp_path):
    img = images[0][7]
    gray = photo(img)  # (200, 160) uint8, dark garment on white
    want = clf.predict(gray)
    rgb = np.repeat(gray[:, :, None], 3, axis=2).copy()
    rgb[:, :, 0] = np.clip(rgb[:, :, 0].astype(int) + 1, 0, 255)  # truly RGB (channels differ)
    rgba = np.dstack([np.zeros_like(gray)] * 3 + [255 - gray])  # black ink, alpha = darkness: same picture over white
    (tmp_path / "p.jpg").write_bytes(encode(gray, "JPEG", quality=98))
    for kind, value in {"RGB": rgb, "RGBA": rgba, "PIL": Image.fromarray(rgb), "float": gray / 255.0,
                        "JPEG path": tmp_path / "p.jpg",
                        "2000x1600 JPEG": encode(np.asarray(Image.fromarray(gray).resize((1600, 2000), Image.BILINEAR)),
                                                 "JPEG", quality=90),
                        }.items():
        assert clf.predict(value).index == want.index, kind


# ----------------------------------------------------------------------------- preprocessing


def test_dataset_form_passes_through_unchanged(images):
    x, _ = images
    for img in x[:20]:
        assert np.array_equal(to_dataset_form(img), img)
        assert np.array_equal(to_dataset_form(Image.fromarray(img)), img)
        assert np.array_equal(to_dataset_form(encode(img, "PNG")), img)
    model_in = to_model_input(x[:5])
    assert model_in.shape == (5, 28, 28, 1) and model_in.dtype == np.float32
    np.testing.assert_array_equal(model_in, x[:5, :, :, None].astype(np.float32) * np.float32(1 / 255))  # as in training
    np.testing.assert_allclose(model_in, x[:5, :, :, None] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(to_model_input(x[0]), model_in[:1])


def test_photos_of_dataset_images_keep_their_prediction(clf, fmnist):
    """100 test images upscaled 5x onto a white 160x200 canvas, dark on light: the pipeline restores them."""
    x = fmnist.x_test[200:300]
    base = clf.predict_proba(x).argmax(1)
    photos = [photo(img, offset=(5 + i % 15, 10 + i % 40)) for i, img in enumerate(x)]
    pre = np.stack([to_dataset_form(p) for p in photos])
    assert pre.shape == (100, 28, 28) and pre.dtype == np.uint8
    agreement = np.mean(clf.predict_proba(pre).argmax(1) == base)
    assert agreement >= 0.8, agreement
    assert np.mean(np.argmax(clf.predict_proba(photos), 1) == base) == agreement  # the Classifier does the same
    # a photo on a dark background is already in dataset polarity: auto detects it and does not negate
    dark = np.stack([to_dataset_form(photo(img, background=0)) for img in x[:30]])
    assert np.mean(clf.predict_proba(dark).argmax(1) == base[:30]) >= 0.8
    # forcing the wrong polarity: nothing on a white background is lighter than it, and the error says so
    with pytest.raises(errors.ImageValueError, match="lighter than its background, as polarity='dataset' asks"):
        to_dataset_form(photos[0], polarity="dataset")
    assert not np.array_equal(to_dataset_form(photo(x[0], background=0), polarity="photo"), dark[0])


# ----------------------------------------------------------------------------- import weight


def test_runtime_imports_no_tensorflow(artifacts, tmp_path):
    """In a clean interpreter where the heavy packages cannot be imported at all, load, predict and `info` work."""
    img = tmp_path / "x.png"
    Image.fromarray(np.pad(np.full((20, 10), 30, np.uint8), 10, constant_values=255)).save(img)
    code = f"""
import sys
HEAVY = {{"tensorflow", "keras", "tf2onnx", "nncf", "onnxruntime", "onnx", "torch", "jax", "matplotlib"}}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError("blocked heavy import: " + name)
sys.meta_path.insert(0, Block())
import fmnist_edge.runtime as rt
c = rt.Classifier.load({str(artifacts)!r}, precision="fp16")
print(c.predict({str(img)!r}).label)
from click.testing import CliRunner
from fmnist_edge.cli import cli
r = CliRunner().invoke(cli, ["info"])
assert r.exit_code == 0, r.output
r = CliRunner().invoke(cli, ["predict", "--model", {str(artifacts)!r}, {str(img)!r}])
assert r.exit_code == 0, r.output
print(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------- threads


def test_one_classifier_shared_by_eight_threads(clf, images):
    x, _ = images
    photos = [photo(img) for img in x[:10]]
    work = list(x[:40]) + photos
    want = [clf.predict(img) for img in work]
    want_batch = clf.predict_batch(x[:64])
    results, failures = {}, []

    def worker(t: int) -> None:
        try:
            for rep in range(6):
                for i in range(len(work)):
                    j = (i + 7 * t + rep) % len(work)
                    results[(t, rep, j)] = clf.predict(work[j])
                results[(t, "batch", rep)] = clf.predict_batch(x[:64], batch_size=16)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures
    for key, got in results.items():
        assert got == (want_batch if key[1] == "batch" else want[key[2]])
    assert len(results) == 8 * 6 * (len(work) + 1)


# ----------------------------------------------------------------------------- manifest and model folder


def _copy(artifacts: Path, tmp_path: Path) -> Path:
    out = tmp_path / "a"
    shutil.copytree(artifacts, out)
    return out


def test_tampered_or_missing_model_files_are_refused(artifacts, tmp_path):
    a = _copy(artifacts, tmp_path)
    bin_ = a / "openvino" / "fp32" / "model.bin"
    data = bytearray(bin_.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_.write_bytes(bytes(data))
    with pytest.raises(errors.IntegrityError, match=r"model\.bin has sha256 .*changed"):
        Classifier.load(a, precision="fp32")
    with pytest.raises(errors.IntegrityError, match=r"model\.bin has sha256"):
        Classifier.load(a, precision="bf16")  # bf16 runs the fp32 files
    Classifier.load(a, precision="fp16")  # the other precisions are intact
    bin_.write_bytes(bytes(data[:-4]))
    with pytest.raises(errors.IntegrityError, match="truncated"):
        Classifier.load(a)
    (a / "openvino" / "fp16" / "model.xml").unlink()
    with pytest.raises(errors.IntegrityError, match="missing"):
        Classifier.load(a, precision="fp16")
    assert isinstance(errors.IntegrityError("x"), errors.ModelFileError)


def test_manifest_problems_are_clear(artifacts, tmp_path):
    a = _copy(artifacts, tmp_path)
    manifest = json.loads((a / "manifest.json").read_text())

    def write(m):
        (a / "manifest.json").write_text(json.dumps(m))

    int8 = [e for e in manifest["artifacts"] if e["precision"] == "int8"][0]
    write({**manifest, "artifacts": [e for e in manifest["artifacts"] if e is not int8]})
    with pytest.raises(errors.PrecisionNotAvailableError, match="no int8 OpenVINO model; it has fp32"):
        Classifier.load(a, precision="int8")
    write({**manifest, "artifacts": [{**e, "status": "check_failed", "reason": "agreement 0.5"} if e is int8 else e
                                     for e in manifest["artifacts"]]})
    with pytest.raises(errors.PrecisionNotAvailableError, match="check_failed.*agreement 0.5"):
        Classifier.load(a, precision="int8")
    evil = {**int8, "files": [{"path": "../../etc/passwd", "bytes": 1, "sha256": "0"}]}
    write({**manifest, "artifacts": [evil if e is int8 else e for e in manifest["artifacts"]]})
    with pytest.raises(errors.ManifestError, match="bad file path"):
        Classifier.load(a, precision="int8")
    (a / "manifest.json").write_text("{not json")
    with pytest.raises(errors.ManifestError, match="cannot be read"):
        Classifier.load(a)
    (a / "manifest.json").unlink()
    with pytest.raises(errors.ManifestError, match="no manifest.json.*verify=False"):
        Classifier.load(a)
    unverified = Classifier.load(a, verify=False)
    assert not unverified.verified and unverified.class_names == Classifier.load(artifacts).class_names
    with pytest.raises(errors.PrecisionNotAvailableError):
        shutil.rmtree(a / "openvino" / "int8")
        Classifier.load(a, precision="int8", verify=False)


def test_bad_load_arguments(artifacts, tmp_path):
    with pytest.raises(errors.ModelFileError, match="does not exist.*fmnist-edge convert"):
        Classifier.load(tmp_path / "nowhere")
    with pytest.raises(errors.ConfigError, match="unknown precision 'fp64'; choose one of fp32, bf16, fp16, int8"):
        Classifier.load(artifacts, precision="fp64")
    with pytest.raises(errors.DeviceError, match="'TPU' is not present; this machine has CPU"):
        Classifier.load(artifacts, device="TPU")
    with pytest.raises(errors.ConfigError, match="threads"):
        Classifier.load(artifacts, threads=0)
    with pytest.raises(errors.ConfigError, match="hint"):
        Classifier.load(artifacts, hint="fast")


# ----------------------------------------------------------------------------- bad input


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height with no pixel data behind it (a decompression-bomb stand-in)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + idat


def _bad_inputs(tmp_path: Path, good: np.ndarray) -> list:
    png = encode(good, "PNG")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(encode(photo(good), "PNG")[:300])
    (tmp_path / "notes.png").write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, format="GIF")
    (tmp_path / "anim.gif").write_bytes(buf.getvalue())
    (tmp_path / "folder.png").mkdir()
    nan = good / 255.0
    nan[3, 3] = np.nan
    inf = good / 255.0
    inf[0, 0] = np.inf
    E = errors
    return [
        ("empty file", tmp_path / "empty.png", E.ImageDecodeError, "empty file"),
        ("truncated file", tmp_path / "trunc.png", E.ImageDecodeError, "truncated or corrupt"),
        ("text file", tmp_path / "notes.png", E.ImageDecodeError, "not an image.*accepted: PNG, JPEG, BMP, WebP"),
        ("GIF", str(tmp_path / "anim.gif"), E.ImageDecodeError, "a GIF image, a format the runtime does not read"),
        ("missing file", tmp_path / "nope.png", E.ImageNotFoundError, "no such image file"),
        ("folder", tmp_path / "folder.png", E.ImageNotFoundError, "is a folder"),
        ("empty bytes", b"", E.ImageDecodeError, "empty bytes"),
        ("random bytes", b"\x00\x01garbage" * 10, E.ImageDecodeError, "not an image"),
        ("truncated bytes", png[: len(png) // 2], E.ImageDecodeError, "truncated"),
        ("PNG signature only", png[:40], E.ImageDecodeError, "a PNG file that cannot be decoded.*truncated"),
        ("bomb header", _png_header(9000, 9000), E.ImageSizeError, "81 MP.*decompression-bomb guard"),
        ("huge bomb header", _png_header(100_000, 100_000), E.ImageSizeError, "decompression-bomb"),
        ("0-sized array", np.zeros((0, 28), np.uint8), E.ImageSizeError, "at least one pixel"),
        ("huge array", np.broadcast_to(np.uint8(0), (9000, 9000)), E.ImageSizeError, "decompression-bomb guard"),
        ("bool array", good > 100, E.ImageTypeError, "dtype bool.*uint8 0..255 or float in \\[0, 1\\]"),
        ("complex array", good.astype(np.complex64), E.ImageTypeError, "complex64"),
        ("string array", np.full((28, 28), "a"), E.ImageTypeError, "dtype <U1"),
        ("1-D array", good.ravel(), E.ImageShapeError, r"shape \(784,\).*\(H, W\)"),
        ("4-D array", good[None, :, :, None], E.ImageShapeError, "not an image"),
        ("2 channels", np.zeros((28, 28, 2), np.uint8), E.ImageShapeError, "(H, W, 3)"),
        ("channels first", np.zeros((3, 28, 28), np.uint8), E.ImageShapeError, "channels last"),
        ("NaN", nan, E.ImageValueError, "NaN or inf"),
        ("inf", inf, E.ImageValueError, "NaN or inf"),
        ("float 0..255", good.astype(np.float32), E.ImageValueError, r"\[0, 1\].*astype\(np.uint8\)"),
        ("negative float", good / 255.0 - 0.5, E.ImageValueError, r"must be in \[0, 1\]"),
        ("int16 negative", good.astype(np.int16) - 1, E.ImageValueError, "0..255"),
        ("uint16 16-bit", good.astype(np.uint16) * 257, E.ImageValueError, "8-bit values 0..255"),
        ("flat photo", np.full((100, 80), 240, np.uint8), E.ImageValueError, "one flat colour"),
        ("list", good.tolist(), E.ImageTypeError, "np.asarray"),
        ("None", None, E.ImageTypeError, "cannot read a NoneType.*accepted"),
        ("lazy truncated PIL", Image.open(tmp_path / "trunc.png"), E.ImageDecodeError, "PIL image cannot be decoded"),
    ]


def test_every_bad_input_is_a_clear_error_and_the_next_call_works(clf, images, tmp_path):
    good = images[0][0]
    want = clf.predict(good)
    pool = len(clf._engine.singles)
    for name, value, cls, pattern in _bad_inputs(tmp_path, good):
        with pytest.raises(cls, match=pattern) as info:
            clf.predict(value)
        assert "\n" not in str(info.value), name
        assert clf.predict(good) == want, name  # nothing stayed borrowed or broken
    assert len(clf._engine.singles) == pool
    with pytest.raises(errors.ConfigError, match="top_k must be an integer from 1 to 10"):
        clf.predict(good, top_k=0)


def test_a_bad_item_in_a_batch_is_named_by_index(clf, images):
    x, _ = images
    items = [x[0], x[1], np.full((28, 28), np.nan), x[2]]
    for call in (clf.predict_batch, clf.predict_proba, clf.predict_async):
        with pytest.raises(errors.ImageValueError, match="^image 2: float array holds NaN") as info:
            call(items)
        assert info.value.index == 2
    assert clf.predict_batch(x[:3]) == [clf.predict(img) for img in x[:3]]
    assert clf.predict_async(x[:3]) == [clf.predict(img) for img in x[:3]]
    with pytest.raises(errors.ImageShapeError, match="for one image use predict"):
        clf.predict_batch(x[0])
    with pytest.raises(errors.ImageTypeError, match="for one image use predict"):
        clf.predict_batch("picture.png")


def test_list_images_expands_a_folder(tmp_path, images):
    for name in ("b.png", "a.JPG", "c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in decode.list_images(tmp_path)] == ["a.JPG", "b.png", "c.webp"]


def test_openvino_converter_still_works_after_the_runtime_import(tmp_path):
    """The runtime imports openvino without its conversion tools; `ov.convert_model` must still work after it."""
    code = """
import sys
import fmnist_edge.runtime
assert "openvino.tools.ovc" not in sys.modules, "the runtime imported the converter tools"
import openvino as ov
from onnx import TensorProto, helper
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
path = sys.argv[1]
open(path, "wb").write(helper.make_model(g).SerializeToString())
from openvino.tools.ovc import convert_model  # the real module still imports
print(type(ov.convert_model(path)).__name__)
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "relu.onnx")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "Model"


def test_auto_precision_is_the_fastest_verified_one_and_says_so(artifacts, tmp_path, images):
    x, _ = images
    auto = Classifier.load(artifacts, precision="auto")
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    want = ["int8", "bf16", "fp32"] if "BF16" in caps else ["int8", "fp32"]
    assert auto.choice["candidates"] == want and set(auto.choice["batch1_us"]) == set(want)
    assert auto.precision == min(auto.choice["batch1_us"], key=auto.choice["batch1_us"].get)
    assert auto.describe()["precision"] == auto.precision
    fixed = Classifier.load(artifacts, precision=auto.precision)
    np.testing.assert_allclose(auto.predict_proba(x[:20]), fixed.predict_proba(x[:20]), atol=1e-5)
    # a precision whose check failed in `convert` is never chosen
    folder = tmp_path / "a"
    shutil.copytree(artifacts, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for e in manifest["artifacts"]:
        if e.get("precision") in ("int8", "bf16"):
            e["status"] = "failed"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    only = Classifier.load(folder, precision="auto")
    assert only.precision == "fp32" and only.choice["candidates"] == ["fp32"]
