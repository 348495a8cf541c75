"""`fmnist-edge predict` and `fmnist-edge info` through click's CliRunner on the converted tiny model."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from images import photo
from PIL import Image

from fmnist_edge.cli import cli
from fmnist_edge.runtime import Classifier


@pytest.fixture(scope="module")
def artifacts(converted):
    return converted


@pytest.fixture()
def pictures(tmp_path, fmnist):
    """A folder with two dataset-form PNGs, one photo JPEG and a text file, and the expected labels."""
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.fromarray(fmnist.x_test[0]).save(folder / "a.png")
    Image.fromarray(fmnist.x_test[1]).save(folder / "b.bmp")
    Image.fromarray(photo(fmnist.x_test[2])).convert("RGB").save(folder / "c.jpg", quality=95)
    (folder / "readme.txt").write_text("not a picture")
    return folder


def _run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_predict_prints_one_line_per_image(artifacts, pictures):
    clf = Classifier.load(artifacts)
    r = _run("predict", "--model", artifacts, "--precision", "fp32", "--top-k", "2", pictures / "a.png", pictures / "b.bmp")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ("a.png", "b.bmp"), strict=True):
        file, label, confidence, top = line.split("\t")
        p = clf.predict(pictures / name, top_k=2)
        assert file.endswith(name) and label == p.label and float(confidence) == pytest.approx(p.confidence, abs=1e-3)
        assert top.count(",") == 1 and top.startswith(p.label)


def test_predict_expands_a_folder_and_prints_json(artifacts, pictures):
    r = _run("predict", "--model", artifacts, "--precision", "fp16", "--json", pictures)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.strip().splitlines()]
    assert [row["file"].rsplit("/", 1)[-1] for row in rows] == ["a.png", "b.bmp", "c.jpg"]  # the .txt is skipped
    clf = Classifier.load(artifacts, precision="fp16")
    for row in rows:
        assert row["label"] == clf.predict(row["file"]).label
        assert len(row["top_k"]) == 3 and row["top_k"][0]["label"] == row["label"]
        assert set(row) == {"file", "label", "index", "confidence", "top_k"}  # POST /predict's schema, plus the file
        assert row["top_k"][0] == {"label": row["label"], "confidence": pytest.approx(row["confidence"])}


def test_a_bad_image_is_one_line_and_a_nonzero_exit(artifacts, pictures):
    (pictures / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = _run("predict", "--model", artifacts, pictures / "a.png", pictures / "broken.png")
    assert r.exit_code == 1
    assert "a.png\t" in r.output  # the good image is still classified
    assert "broken.png: error: " in r.output and "cannot be decoded" in r.output
    assert "Error: 1 of 2 images could not be classified" in r.output
    assert "Traceback" not in r.output
    r = _run("predict", "--model", artifacts, "--json", pictures / "broken.png")
    assert r.exit_code == 1 and "error" in json.loads(r.output.splitlines()[0])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{tmp}/nowhere"], "model folder .*nowhere does not exist"),
        (["--precision", "fp64"], "Invalid value for '--precision'.*'fp64'.*'auto', 'fp32', 'bf16', 'fp16', 'int8'"),
        (["--top-k", "11"], "Invalid value for '--top-k'.*11.*1<=x<=10"),
        (["--device", "TPU"], "'TPU' is not present"),
    ],
)
def test_bad_options_are_one_line(artifacts, pictures, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    model = [] if "--model" in args else ["--model", str(artifacts)]
    r = _run("predict", *model, *args, pictures / "a.png")
    assert r.exit_code == 2 if "Invalid value" in message else r.exit_code == 1
    assert len([ln for ln in r.output.splitlines() if ln.startswith("Error")]) == 1
    assert re.search(message, r.output), r.output
    assert "Traceback" not in r.output


def test_predict_refuses_a_tampered_model_and_an_empty_folder(artifacts, pictures, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(artifacts, model)
    with open(model / "openvino" / "fp32" / "model.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    r = _run("predict", "--model", model, pictures / "a.png")
    assert r.exit_code == 1 and "sha256" in r.output and "changed" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _run("predict", "--model", artifacts, empty)
    assert r.exit_code == 2 and "holds no .png" in r.output
    r = _run("predict", "--model", artifacts, tmp_path / "missing.png")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_info_lists_devices_and_versions():
    r = _run("info")
    assert r.exit_code == 0, r.output
    assert "CPU" in r.output and "openvino" in r.output and "numpy" in r.output
    r = _run("info", "--json")
    info = json.loads(r.output)
    cpu = [d for d in info["devices"] if d["device"] == "CPU"][0]
    assert cpu["full_device_name"] and info["packages"]["openvino"].startswith("2026.4")
    assert np.all([isinstance(v, (str, type(None))) for v in info["packages"].values()])


def test_predict_defaults_to_the_precision_auto_picks(artifacts, pictures):
    r = _run("predict", "--model", artifacts, "--json", pictures / "a.png", pictures / "c.jpg")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.strip().splitlines()]
    # auto picks among verified precisions by timing, so the answer is that of one of them
    answers = {p: [Classifier.load(artifacts, precision=p).predict(row["file"]).label for row in rows]
               for p in Classifier.load(artifacts, precision="auto").choice["candidates"]}
    assert [row["label"] for row in rows] in answers.values()


def test_predict_over_a_folder_of_catalogue_images_and_camera_photos(artifacts, tmp_path, fmnist):
    """A shop's archive: trimmed JPEGs, PNG cut-outs and camera photos side by side, and one truncated file. Each
    gets the label the Python API gives it, one line each; the bad one is a line with its reason."""
    from fmnist_edge.harness import photos as P

    folder = tmp_path / "archive"
    folder.mkdir()
    x, y = fmnist.x_test[:3], fmnist.y_test[:3]
    shots = P.make_photos(x, y, conditions=("trimmed", "cutout", "camera"), sizes=("qvga",), seed=2)
    for i, p in enumerate(shots):
        (folder / f"{i:02d}-{p.condition}.{'png' if p.condition == 'cutout' else 'jpg'}").write_bytes(p.data)
    (folder / "99-truncated.jpg").write_bytes(shots[0].data[: len(shots[0].data) // 3])
    r = _run("predict", "--model", artifacts, "--precision", "fp32", folder)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    clf = Classifier.load(artifacts, precision="fp32")
    rows = [line.split("\t") for line in lines if "\t" in line]
    assert len(rows) == len(shots)
    for file, label, *_ in rows:
        assert label == clf.predict(file).label
    assert any("99-truncated.jpg: error: " in line for line in lines)
    assert f"Error: 1 of {len(shots) + 1} images could not be classified" in r.output
