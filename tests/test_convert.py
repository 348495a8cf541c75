"""Converter end to end on the tiny model: every format and precision, parity with TensorFlow, manifest, errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge import contract, data
from fmnist_edge.cli import cli
from fmnist_edge.convert import convert
from fmnist_edge.convert.check import verdict
from fmnist_edge.errors import ArtifactError, ConfigError, ModelFileError

pytestmark = pytest.mark.slow

SMALL = dict(check=300, calib_size=64, log=lambda *_: None)
TRAIN_FILES = ("model.keras", "model.h5", "metadata.json", "history.json", "saved_model", "report")


def _copy(tiny_artifacts, tmp_path) -> Path:
    folder = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, folder)
    return folder


def _keras_file(path: Path, input_shape, classes: int, softmax: bool = True) -> Path:
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=2)(inputs) if len(input_shape) == 3 else inputs)
    outputs = keras.layers.Dense(classes, activation="softmax" if softmax else None)(x)
    keras.Model(inputs, outputs).save(path)
    return path


def _reference(saved_model: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    return serve(image=tf.constant(x))["probabilities"].numpy()


@pytest.fixture(scope="module")
def converted(tiny_artifacts, tmp_path_factory):
    """The tiny artifact folder converted to every format and precision once (through the CLI, as users do)."""
    folder = _copy(tiny_artifacts, tmp_path_factory.mktemp("convert"))
    result = CliRunner().invoke(cli, ["convert", str(folder), "--precision", "fp32,bf16,fp16,int8",
                                      "--check", "300", "--calib-size", "64"])
    assert result.exit_code == 0, result.output
    return folder, result.output


def _artifact(manifest, fmt, precision):
    (entry,) = [a for a in manifest["artifacts"] if a["format"] == fmt and a["precision"] == precision]
    return entry


def test_layout_and_table(converted):
    folder, output = converted
    for rel in ("openvino/fp32/model.xml", "openvino/fp32/model.bin", "openvino/fp16/model.xml", "openvino/int8/model.bin",
                "onnx/model.onnx", "onnx/model_int8.onnx",
                "serving/fmnist/1/model.xml", "serving/fmnist/1/model.bin", "serving/config.json",
                "manifest.json", *TRAIN_FILES):
        assert (folder / rel).exists(), rel
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "no staging folders left behind"
    table = [line for line in output.splitlines() if line.startswith(("format ", "openvino ", "onnx ")) and ":" not in line.split()[1]]
    header, *rows = table  # the log lines ("openvino fp32: ok ...") come before the table
    assert "agreement" in header and "max|diff|" in header and "status" in header
    assert [r.split()[:2] for r in rows] == [["openvino", "fp32"], ["openvino", "bf16"], ["openvino", "fp16"],
                                             ["openvino", "int8"], ["onnx", "fp32"], ["onnx", "int8"]]
    assert all(r.rstrip().endswith("ok") for r in rows)
    assert "Traceback" not in output and "I0000" not in output and "oneDNN" not in output


def test_fp32_ir_and_onnx_match_tensorflow(converted):
    manifest = json.loads((converted[0] / "manifest.json").read_text())
    for fmt in ("openvino", "onnx"):
        entry = _artifact(manifest, fmt, "fp32")
        c = entry["check"]
        assert entry["status"] == "ok" and c["n"] == 300
        assert c["max_abs_diff"] <= 1e-4 and c["agreement"] == 1.0
        assert c["accuracy"] == c["reference_accuracy"] > 0.5
    assert _artifact(manifest, "openvino", "fp32")["inference_precision"] == "f32"  # never the CPU's bf16 default
    assert _artifact(manifest, "onnx", "fp32")["inference_precision"] is None


def test_reduced_precisions_are_reported(converted):
    manifest = json.loads((converted[0] / "manifest.json").read_text())
    fp16, bf16, int8 = (_artifact(manifest, "openvino", p) for p in ("fp16", "bf16", "int8"))
    assert fp16["inference_precision"] == "f32" and fp16["check"]["max_abs_diff"] < 1e-2
    assert bf16["files"] == _artifact(manifest, "openvino", "fp32")["files"]  # the fp32 IR, computed in bf16
    assert bf16["inference_precision"] in ("bf16", "f32")  # f32 where the CPU has no bf16
    assert int8["status"] == "ok"
    assert int8["check"]["reference_accuracy"] - int8["check"]["accuracy"] <= 0.01
    assert int8["check"]["agreement"] > 0.9
    # fp16 weights are half the size of fp32 ones (the tiny model's .bin is all weights)
    sizes = {a["precision"]: {Path(f["path"]).name: f["bytes"] for f in a["files"]} for a in manifest["artifacts"]
             if a["format"] == "openvino"}
    assert sizes["fp16"]["model.bin"] < 0.6 * sizes["fp32"]["model.bin"]


def test_onnxruntime_int8_is_its_own_static_qdq_model_checked_like_ours(converted, fmnist):
    """onnxruntime's int8 (quantize_static, QDQ, per channel) from NNCF's calibration images: really quantized, run
    by onnxruntime, within --max-drop of TensorFlow like our int8, recorded in the manifest."""
    import onnx
    import onnxruntime as ort

    folder = converted[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    entry, ours = _artifact(manifest, "onnx", "int8"), _artifact(manifest, "openvino", "int8")
    assert entry["status"] == "ok" and entry["files"][0]["path"] == "onnx/model_int8.onnx"
    c = entry["check"]
    assert c["n"] == 300 and c["reference_accuracy"] - c["accuracy"] <= 0.01 and c["agreement"] >= 0.95
    assert c["reference_accuracy"] == ours["check"]["reference_accuracy"]  # checked on the same images as ours
    ops = {n.op_type for n in onnx.load(folder / "onnx/model_int8.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [t for t in onnx.load(folder / "onnx/model_int8.onnx").graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.INT8 for t in weights)  # conv kernels stored as int8
    x = data.normalize(fmnist.x_test[:50])
    session = ort.InferenceSession(str(folder / "onnx/model_int8.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"image": x})
    ref = _reference(folder / "saved_model", x)
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.9 and np.abs(probs - ref).max() < 0.5


def test_manifest_schema_and_hashes(converted):
    folder = converted[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest) == {"schema_version", "created", "source", "class_names", "input", "output", "versions", "artifacts"}
    assert manifest["schema_version"] == 1 and manifest["created"].endswith("+00:00")
    assert manifest["source"] == {"path": str(folder / "saved_model"), "kind": "saved_model"}
    assert manifest["class_names"] == list(contract.CLASS_NAMES)
    assert {k: v for k, v in manifest["input"].items() if k != "preprocessing"} == {
        "name": "image", "shape": [-1, 28, 28, 1], "dtype": "float32", "layout": "NHWC", "range": [0, 1]}
    assert "to_dataset_form" in manifest["input"]["preprocessing"]
    assert manifest["output"] == {"name": "probabilities", "shape": [-1, 10], "dtype": "float32", "meaning": "softmax probabilities"}
    assert set(manifest["versions"]) >= {"tensorflow", "keras", "openvino", "nncf", "onnx", "tf2onnx", "onnxruntime", "fmnist_edge"}
    assert all(manifest["versions"].values())
    for entry in manifest["artifacts"]:
        assert set(entry) == {"format", "precision", "files", "inference_precision", "check", "status", "reason"}
        assert set(entry["check"]) == {"n", "agreement", "max_abs_diff", "accuracy", "reference_accuracy"}
        for f in entry["files"]:
            blob = (folder / f["path"]).read_bytes()
            assert len(blob) == f["bytes"] and hashlib.sha256(blob).hexdigest() == f["sha256"]


def test_names_and_dynamic_batch(converted, fmnist):
    import onnx
    import onnxruntime as ort
    import openvino as ov
    import openvino.properties.hint as hints

    folder = converted[0]
    x = data.normalize(fmnist.x_test[:7])
    ref = _reference(folder / "saved_model", x)
    core = ov.Core()
    for rel in ("openvino/fp32/model.xml", "openvino/fp16/model.xml", "openvino/int8/model.xml", "serving/fmnist/1/model.xml"):
        model = core.read_model(folder / rel)
        assert model.inputs[0].get_names() == {"image"} and model.outputs[0].get_names() == {"probabilities"}
        assert str(model.inputs[0].get_partial_shape()) == "[?,28,28,1]"
        compiled = core.compile_model(model, "CPU", {hints.inference_precision: ov.Type.f32})
        for batch in (1, 7):
            probs = compiled(x[:batch])["probabilities"]
            assert probs.shape == (batch, 10)
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)
            if "int8" not in rel:
                np.testing.assert_allclose(probs, ref[:batch], atol=1e-2 if "fp16" in rel else 1e-4)

    proto = onnx.load(folder / "onnx/model.onnx")
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(str(folder / "onnx/model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_inputs()[0].shape == ["batch", 28, 28, 1]
    for batch in (1, 7):
        (probs,) = session.run(None, {"image": x[:batch]})
        np.testing.assert_allclose(probs, ref[:batch], atol=1e-4)


def test_serving_layout_is_a_model_repository(converted):
    folder = converted[0]
    config = json.loads((folder / "serving/config.json").read_text())
    (entry,) = config["model_config_list"]
    assert entry["config"]["name"] == "fmnist"
    base = folder / "serving" / entry["config"]["base_path"]  # relative to config.json, as OVMS resolves it
    assert sorted(p.name for p in (base / "1").iterdir()) == ["manifest.json", "model.bin", "model.xml"]
    assert (base / "1/model.bin").read_bytes() == (folder / "openvino/fp32/model.bin").read_bytes()
    # the version carries its own hashes and the fp32 check's figures, so it verifies on its own
    version = json.loads((base / "1/manifest.json").read_text())
    assert [(a["precision"], [f["path"] for f in a["files"]]) for a in version["artifacts"]][0] == ("fp32", ["model.xml", "model.bin"])
    assert version["artifacts"][0]["check"] == next(a for a in json.loads((folder / "manifest.json").read_text())["artifacts"]
                                                    if (a["format"], a["precision"]) == ("openvino", "fp32"))["check"]


def test_rerun_replaces_cleanly_and_keeps_train_files(converted, tmp_path):
    folder = _copy(converted[0], tmp_path)
    before = {name: (folder / name).stat().st_mtime_ns for name in TRAIN_FILES}
    (folder / "openvino/int8/stale.txt").write_text("from an older run")
    result = CliRunner().invoke(cli, ["convert", str(folder), "--format", "openvino", "--precision", "fp32", "--check", "100", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert [(a["format"], a["precision"]) for a in manifest["artifacts"]] == [("openvino", "fp32")]
    assert not (folder / "onnx").exists()  # not requested this time: the manifest and the folder agree
    assert manifest == json.loads((folder / "manifest.json").read_text())
    assert sorted(p.name for p in (folder / "openvino").iterdir()) == ["fp32"]  # old fp16/int8 are gone
    assert {name: (folder / name).stat().st_mtime_ns for name in TRAIN_FILES} == before
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_keras_h5_with_logits(fmnist, tmp_path):
    """A model trained elsewhere: .h5, no channel axis, logits out; converted next to it with a softmax added."""
    import openvino as ov

    model = _keras_file(tmp_path / "other.h5", (28, 28), 10, softmax=False)
    manifest = convert(model, formats=("openvino",), precisions=("fp32",), **SMALL)
    assert manifest["source"] == {"path": str(model), "kind": "h5"}
    (entry,) = manifest["artifacts"]
    assert entry["status"] == "ok" and entry["check"]["max_abs_diff"] <= 1e-4
    compiled = ov.Core().compile_model(tmp_path / "openvino/fp32/model.xml", "CPU")
    probs = compiled(data.normalize(fmnist.x_test[:5]))["probabilities"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-2)


def test_tflite_is_converted_and_checked_on_litert(tiny_artifacts, tmp_path):
    """LiteRT's flatbuffers, made by TensorFlow's converter (fp32; fp16 weights; full-integer int8 calibrated on NNCF's
    images) and checked on the TF-free ai-edge-litert interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    manifest = convert(tiny_artifacts, out=tmp_path / "out", formats=("tflite",), precisions=("fp16", "int8"), check=200,
                       calib_size=64, log=lambda *_: None)
    entries = {a["precision"]: a for a in manifest["artifacts"]}
    assert [(a["format"], a["precision"], a["status"]) for a in manifest["artifacts"]] == [
        ("tflite", "fp32", "ok"), ("tflite", "fp16", "ok"), ("tflite", "int8", "ok")]
    fp32, fp16, int8 = entries["fp32"], entries["fp16"], entries["int8"]
    assert fp32["check"]["n"] == 200 and fp32["check"]["max_abs_diff"] <= 1e-4 and fp32["check"]["agreement"] >= 0.999
    assert fp32["files"][0]["path"] == "tflite/model.tflite" and (tmp_path / "out/tflite/model.tflite").stat().st_size > 0
    assert fp16["files"][0]["path"] == "tflite/model_fp16.tflite" and fp16["check"]["max_abs_diff"] < 1e-2
    assert int8["files"][0]["path"] == "tflite/model_int8.tflite"
    assert int8["check"]["reference_accuracy"] - int8["check"]["accuracy"] <= 0.01 and int8["check"]["agreement"] >= 0.95
    interp = Interpreter(model_path=str(tmp_path / "out/tflite/model_int8.tflite"))
    types = {d["dtype"] for d in interp.get_tensor_details()}
    assert np.int8 in types  # weights and activations are int8 ...
    assert interp.get_input_details()[0]["dtype"] == np.float32  # ... behind a float input, fed what fp32 is fed


def test_foreign_saved_model_gets_our_names(fmnist, tmp_path):
    """keras' model.export names its tensors keras_tensor / output_0: the ONNX model still says image / probabilities."""
    import keras
    import onnxruntime as ort

    inputs = keras.Input(shape=(28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs).export(str(tmp_path / "exported"), verbose=False)
    lines = []
    manifest = convert(tmp_path / "exported", out=tmp_path / "out", formats=("onnx",), check=100, log=lines.append)
    assert any("re-exported with input `image`" in line for line in lines)
    assert manifest["source"]["kind"] == "saved_model" and manifest["artifacts"][0]["status"] == "ok"
    session = ort.InferenceSession(str(tmp_path / "out/onnx/model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["probabilities"]


def test_calibration_comes_from_the_training_split(fmnist):
    from fmnist_edge.convert.quantize import calibration_images

    train_idx, _ = data.stratified_split(fmnist.y_train, 0.1, seed=0)
    calib = calibration_images(fmnist, 64)
    assert calib.shape == (64, 28, 28) and calib.dtype == np.uint8
    train_set = {fmnist.x_train[i].tobytes() for i in train_idx}
    assert all(image.tobytes() in train_set for image in calib)


def test_missing_model_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output and "Traceback" not in result.output
    with pytest.raises(ModelFileError):
        convert(tmp_path / "nope", log=lambda *_: None)


def test_corrupt_saved_model_leaves_nothing(tiny_artifacts, tmp_path):
    folder = _copy(tiny_artifacts, tmp_path)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"\x00not a protobuf" * 10)
    result = CliRunner().invoke(cli, ["convert", str(folder), "--check", "50"])
    assert result.exit_code == 1 and "cannot load the SavedModel" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not {"openvino", "onnx", "serving", "manifest.json"} & {p.name for p in folder.iterdir()}
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_keras_file_cannot_run_code(tmp_path):
    """Keras safe mode: a Lambda layer (arbitrary Python) in a model file is refused, not executed."""
    import keras

    inputs = keras.Input(shape=(28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0)(inputs)))
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelFileError, match="cannot load as a Keras model"):
        convert(tmp_path / "lambda.keras", out=tmp_path / "new", **SMALL)
    assert not (tmp_path / "new").exists(), "a folder made for a failed run is removed"


@pytest.mark.parametrize("shape,classes,message", [((32, 32, 3), 10, "[N, 32, 32, 3]"), ((28, 28, 1), 5, "[N, 5]")])
def test_wrong_shape_is_rejected(tmp_path, shape, classes, message):
    model = _keras_file(tmp_path / "wrong.keras", shape, classes)
    with pytest.raises(ModelFileError, match=message.replace("[", r"\[")):
        convert(model, **SMALL)
    result = CliRunner().invoke(cli, ["convert", str(model)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.keras"]


@pytest.mark.parametrize("args,bad", [(["--format", "openvino,coreml"], "coreml"), (["--precision", "fp32,int4"], "int4")])
def test_unknown_format_or_precision(tiny_artifacts, args, bad):
    result = CliRunner().invoke(cli, ["convert", str(tiny_artifacts), *args])
    assert result.exit_code == 2
    assert bad in result.output and "choose from" in result.output and "Traceback" not in result.output
    with pytest.raises(ConfigError):
        convert(tiny_artifacts, formats=("openvino", "coreml"), log=lambda *_: None)


@pytest.mark.parametrize("args,message", [(["--opset", "99"], "--opset 99 is not supported"), (["--check", "many"], "--check must be")])
def test_bad_numbers_are_one_line(tiny_artifacts, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["convert", str(tiny_artifacts), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_out(tiny_artifacts, tmp_path):
    """A read-only folder (when not root) and a path on a read-only file system: one line, nothing written."""
    targets = [Path("/sys/fmnist-edge-convert-test")] if Path("/sys").is_dir() else []
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    if not os.access(readonly, os.W_OK):  # root writes anywhere
        targets.append(readonly)
    assert targets
    for out in targets:
        result = CliRunner().invoke(cli, ["convert", str(tiny_artifacts), "--out", str(out)])
        assert result.exit_code == 1 and "cannot write" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
        with pytest.raises(ArtifactError):
            convert(tiny_artifacts, out=out, **SMALL)
    readonly.chmod(0o755)
    assert not any(readonly.iterdir())


def test_int8_accuracy_drop_fails_the_command(fmnist, tmp_path):
    """A nearest-centroid classifier with one huge hidden unit: per-tensor int8 activations wipe out the class
    scores, so INT8 loses far more than --max-drop. Written, marked check_failed, and the command fails."""
    import keras

    x, y = data.normalize(fmnist.x_train[:6000]).reshape(6000, -1), fmnist.y_train[:6000]
    means = np.stack([x[y == c].mean(axis=0) for c in range(10)])
    inputs = keras.Input(shape=(28, 28, 1))
    hidden = keras.layers.Dense(11)
    outputs = keras.layers.Dense(10, activation="softmax")
    model = keras.Model(inputs, outputs(hidden(keras.layers.Flatten()(inputs))))
    hidden.set_weights([np.concatenate([means.T, np.full((784, 1), 50.0)], axis=1), np.append(-0.5 * (means**2).sum(axis=1), 0.0)])
    outputs.set_weights([5 * np.eye(11, 10), np.zeros(10)])
    model.save(tmp_path / "outlier.keras")

    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "outlier.keras"), "--format", "openvino",
                                      "--precision", "int8", "--check", "200", "--calib-size", "32"])
    assert result.exit_code == 1
    assert "Error: written to" in result.output and "--max-drop 0.01" in result.output and "Traceback" not in result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("openvino  int8")]  # the table still shows
    assert "check_failed" in row
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]
    assert entry["status"] == "check_failed" and entry["check"]["reference_accuracy"] - entry["check"]["accuracy"] > 0.1
    assert (tmp_path / "openvino/int8/model.xml").is_file()


def test_verdict_thresholds():
    ok = {"n": 100, "agreement": 1.0, "max_abs_diff": 5e-5, "accuracy": 0.90, "reference_accuracy": 0.90}
    assert verdict("fp32", "onnx", ok, 0.01) == ("ok", None)
    status, reason = verdict("fp32", "openvino", {**ok, "max_abs_diff": 1.4e-2}, 0.01)
    assert status == "check_failed" and "max abs diff" in reason
    assert verdict("int8", "openvino", {**ok, "accuracy": 0.895}, 0.01)[0] == "ok"
    status, reason = verdict("int8", "openvino", {**ok, "accuracy": 0.87}, 0.01)
    assert status == "check_failed" and "--max-drop" in reason
    assert verdict("fp16", "openvino", {**ok, "agreement": 0.98, "max_abs_diff": 0.02}, 0.01)[0] == "ok"
