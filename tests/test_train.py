"""Training end to end on a small slice of the real data: artifacts, reports, reloads, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge import contract, data, host
from fmnist_edge.cli import cli


def test_artifact_folder_is_complete(tiny_artifacts):
    names = {p.name for p in tiny_artifacts.iterdir()}
    assert {"model.keras", "model.h5", "saved_model", "metadata.json", "history.json", "report"} <= names
    assert not [n for n in names if n.startswith(".")], "no temporary files left behind"
    report = {p.name for p in (tiny_artifacts / "report").iterdir()}
    assert report == {"metrics.json", "classification_report.txt", "confusion_matrix.png", "curves.png",
                      "misclassified.png", "samples.png"}
    for png in (tiny_artifacts / "report").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metadata_records_what_users_need(tiny_artifacts):
    meta = json.loads((tiny_artifacts / "metadata.json").read_text())
    assert meta["arch"] == "tiny" and meta["params"] == 4010
    assert meta["class_names"] == list(contract.CLASS_NAMES)
    assert meta["input"]["shape"] == [-1, 28, 28, 1] and meta["input"]["layout"] == "NHWC"
    assert "255" in meta["input"]["preprocessing"]
    assert meta["device"].startswith("CPU") and meta["device"].endswith(meta["precision"])
    assert host.cpu_model() in meta["device"]  # which CPU trained: figures differ from host to host
    assert meta["precision"] in ("float32", "mixed_bfloat16")  # training compute; the saved model is float32
    assert {"tensorflow", "keras", "numpy"} <= set(meta["versions"])
    assert meta["config"]["epochs"] == 2 and meta["epochs_run"] == 2 and meta["stopped_by"] == "epochs (2)"
    assert meta["data"] == {"source": meta["data"]["source"], "train": 3000, "validation": 300, "test": 500}
    metrics = json.loads((tiny_artifacts / "report" / "metrics.json").read_text())
    assert metrics["accuracy"] == meta["test"]["accuracy"] > 0.5  # learned something in 2 epochs
    assert np.array(metrics["confusion_matrix"]).sum() == 500
    assert set(metrics["per_class"]) == set(contract.CLASS_NAMES)


def test_keras_h5_and_savedmodel_give_the_same_predictions(tiny_artifacts, fmnist):
    import keras
    import tensorflow as tf

    x = data.normalize(fmnist.x_test[:64])
    ref = np.asarray(keras.models.load_model(tiny_artifacts / "model.keras", safe_mode=True)(x, training=False))
    h5 = np.asarray(keras.models.load_model(tiny_artifacts / "model.h5", compile=False)(x, training=False))
    serve = tf.saved_model.load(str(tiny_artifacts / "saved_model")).signatures["serving_default"]
    sm = serve(image=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(h5, ref, atol=1e-6)
    np.testing.assert_allclose(sm, ref, atol=1e-5)
    assert np.array_equal(sm.argmax(1), ref.argmax(1))


@pytest.mark.slow
def test_cli_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--arch", "tiny", "--epochs", "1", "--limit", "1000",
                              "--test-limit", "200", "--out", str(out), "--seed", "7"])
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output and "device: CPU" in res.output
    first = json.loads((out / "metadata.json").read_text())["test"]["accuracy"]
    (out / "report" / "confusion_matrix.png").unlink()
    res = runner.invoke(cli, ["evaluate", str(out), "--test-limit", "200"])
    assert res.exit_code == 0, res.output
    assert (out / "report" / "confusion_matrix.png").is_file()
    assert json.loads((out / "metadata.json").read_text())["test"]["accuracy"] == pytest.approx(first, abs=1e-6)


def test_models_command_lists_registry_as_json():
    res = CliRunner().invoke(cli, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["cnn4_bn"]["params"] == 3_477_578 and "report 000" in rows["cnn4_bn"]["source"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "nope"], "unknown architecture 'nope'; known:"),
        (["--epochs", "-3"], "epochs must be >= 1"),
        (["--batch-size", "0"], "batch size"),
        (["--time-budget", "-1"], "time budget must be in 0..10000 minutes (0 = none)"),
        (["--accelerator", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'gpu'"),
        (["--compute-dtype", "float16"], "--compute-dtype float16 needs a GPU"),
        (["--data-dir", "/nonexistent/fm"], "does not exist; install the Debian package"),
    ],
)
def test_train_bad_options_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--limit", "200", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_or_foreign_folder_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("precious")
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--limit", "200", "--out", str(f)])
    assert res.exit_code != 0 and "is a file" in res.output
    d = tmp_path / "home"
    d.mkdir()
    (d / "notes.txt").write_text("precious")
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--limit", "200", "--out", str(d)])
    assert res.exit_code != 0 and "without metadata.json" in res.output
    assert (d / "notes.txt").read_text() == "precious" and f.read_text() == "precious"


def test_corrupt_data_is_one_line(tmp_path, fmnist):
    d = tmp_path / "fm"
    shutil.copytree(data.find_data_dir(allow_download=False), d)
    (d / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--data-dir", str(d), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "train-labels-idx1-ubyte.gz" in res.output and "Traceback" not in res.output


def test_evaluate_missing_folder_is_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "none")])
    assert res.exit_code != 0 and "no metadata.json" in res.output


def _variants(img: np.ndarray, shift: int = 2) -> np.ndarray:
    """Every flip x shift of one (28, 28) image that the augmentation may produce, zero-filled: (50, 28, 28)."""
    out = []
    for flipped in (img, img[:, ::-1]):
        padded = np.pad(flipped, shift)
        out += [padded[dy : dy + 28, dx : dx + 28] for dy in range(2 * shift + 1) for dx in range(2 * shift + 1)]
    return np.stack(out)


@pytest.mark.parametrize("erase_prob", [0.0, 1.0])
def test_batch_augmentation_flips_shifts_and_erases_each_image_on_its_own(fmnist, erase_prob):
    from fmnist_edge.quiet import tensorflow
    from fmnist_edge.train.inputs import augment_batch

    tf = tensorflow()
    tf.random.set_seed(1)
    x = fmnist.x_train[:64].astype(np.float32) / 255.0
    out = augment_batch(tf, tf.constant(x[..., None]), erase_prob).numpy()[..., 0]
    assert out.shape == x.shape and out.dtype == np.float32
    used, erased_images = set(), 0
    for img, aug in zip(x, out, strict=True):
        cands = _variants(img)
        kept = aug != 0
        # the image is one of the 50 flip/shift variants wherever it was not erased
        match = [i for i, c in enumerate(cands) if np.array_equal(c[kept], aug[kept])]
        assert match, "an output is not a flip/shift of its own input"
        used.add(match[0])
        if erase_prob:
            erased = (cands[match[0]] != 0) & ~kept  # content pixels set to zero: inside one rectangle
            rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
            erased_images += bool(rows.size)
            if rows.size:
                assert (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) <= 0.10 * 784 + 28
        else:
            assert any(np.array_equal(c, aug) for c in cands)
    assert len(used) > 10  # per image, not one draw for the whole batch
    assert erased_images >= (48 if erase_prob else 0)  # a box on the black border erases nothing visible


def test_input_pipeline_yields_every_image_once_without_the_autotune_thread(fmnist):
    """The training and validation pipelines run without tf.data's autotuning, and on one device Keras iterates
    them itself (TF's default strategy, no multi-device iterator): destroying an autotuned iterator (Keras makes
    one per epoch) stalled training ~40 s per epoch on 2 cores (pipeline.pipeline_options)."""
    from fmnist_edge.quiet import tensorflow
    from fmnist_edge.train.devices import select_strategy
    from fmnist_edge.train.inputs import make_dataset

    strategy, desc, _ = select_strategy("cpu", "float32")
    assert strategy is tensorflow().distribute.get_strategy() and desc.startswith("CPU")

    x, y = fmnist.x_train[:300], fmnist.y_train[:300]
    for training in (True, False):
        ds = make_dataset(x, y, 64, training, augment=False, seed=0)
        assert ds.options().autotune.enabled is False
        images, labels = zip(*((a.numpy(), b.numpy()) for a, b in ds), strict=True)
        images, labels = np.concatenate(images), np.concatenate(labels)
        assert images.shape == (300, 28, 28, 1) and images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1
        assert sorted(labels.argmax(1).tolist()) == sorted(y.tolist())
        if not training:  # unshuffled: the images in order, scaled by 1/255
            np.testing.assert_allclose(images[..., 0], x / 255.0, atol=1e-6)


@pytest.mark.slow
def test_a_short_run_saves_a_model_as_good_as_it_trained(tmp_path):
    """One epoch of 24 steps: Keras' moving averages (momentum 0.99) would still hold 79% of their initial
    values. Measured without the re-estimation, one epoch of 6,000 images (47 steps): 11% test accuracy
    against 56% in training; with it, 75%."""
    from fmnist_edge.train.config import make_config
    from fmnist_edge.train.trainer import train

    out = tmp_path / "short"
    meta = train(make_config("edgenet_small", epochs=1, limit=3000, test_limit=1000, out=str(out), time_budget_min=0),
                 log=lambda *_: None)
    trained = json.loads((out / "history.json").read_text())["accuracy"][-1]  # under augmentation and dropout
    assert meta["test"]["accuracy"] >= max(0.5, trained - 0.05), (meta["test"]["accuracy"], trained)


@pytest.mark.slow
def test_ema_ends_with_the_weights_moving_average(tmp_path):
    """With momentum 0.999 over 16 steps the moving average is still close to the first step's weights, so the
    saved model must be far worse than the same run's own weights: proof that the average replaced them."""
    from fmnist_edge.train.config import make_config
    from fmnist_edge.train.trainer import train

    def run(ema: float) -> float:
        cfg = make_config("tiny", epochs=1, limit=2000, test_limit=500, out=str(tmp_path / f"ema{ema}"),
                          time_budget_min=0, warmup_epochs=0, ema=ema)
        lines: list[str] = []
        meta = train(cfg, log=lines.append)
        assert any("moving average" in line for line in lines) == bool(ema)
        assert meta["config"]["ema"] == ema
        return meta["test"]["accuracy"]

    raw, averaged = run(0.0), run(0.999)
    assert raw > 0.5 and averaged < raw - 0.2, (raw, averaged)
