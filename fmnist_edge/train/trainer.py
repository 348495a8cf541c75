"""Keras training: device strategy, input pipeline with augmentation, callbacks, and the saved artifact folder."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from .. import data
from ..atomic import atomic_dir, write_json
from ..errors import ArtifactError
from ..host import StealMeter
from ..quiet import keras as _keras
from .budget import time_budget, warmup_cosine
from .config import TrainConfig
from .devices import describe_strategy, dtype_policy, select_strategy
from .models import INPUT_NAME, OUTPUT_NAME, create_model, get_entry, macs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras warns that HDF5 is legacy (we write it on purpose, as the seeds do) and about shuffle with tf.data.
warnings.filterwarnings("ignore", message=r".*(HDF5 file|legacy|`shuffle=True` was passed).*")
logging.getLogger("absl").setLevel(logging.ERROR)

ARTIFACT_MARKER = "metadata.json"


def _tf():
    from ..quiet import tensorflow

    return tensorflow()


# ----------------------------------------------------------------------------- the saved model


def export_twin(model, arch: str):
    """The trained model (fused batch norm, maybe mixed precision) -> the plain float32 Keras model we save,
    with the same weights."""
    with dtype_policy("float32"):
        plain = create_model(arch)
    plain.set_weights(model.get_weights())
    return plain


# ----------------------------------------------------------------------------- input pipeline


def augment_batch(tf, images, erase_prob: float, shift: int = 2):
    """(B, 28, 28, 1) float32 -> per-image random horizontal flip, shift of up to `shift` px (zero fill) and,
    with probability `erase_prob`, random erasing of a rectangle of 2..10% of the area (aspect 0.3..3.3).

    Vectorised over the batch: on a 2-core CPU the per-image version (a tf.data map per example) cost
    ~30% of the training step; this one is a handful of batched ops.
    """
    b = tf.shape(images)[0]
    size = 28
    flip = tf.random.uniform([b, 1, 1, 1]) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]])
    grid = tf.range(size)[None, :]
    rows = tf.random.uniform([b, 1], 0, 2 * shift + 1, dtype=tf.int32) + grid  # (B, 28)
    cols = tf.random.uniform([b, 1], 0, 2 * shift + 1, dtype=tf.int32) + grid
    images = tf.gather(padded, rows, axis=1, batch_dims=1)
    images = tf.gather(images, cols, axis=2, batch_dims=1)
    area = tf.random.uniform([b], 0.02, 0.10) * float(size * size)
    aspect = tf.exp(tf.random.uniform([b], np.log(0.3), np.log(3.3)))
    h = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32), 1, size - 1)
    w = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32), 1, size - 1)
    top = tf.cast(tf.random.uniform([b]) * tf.cast(size - h + 1, tf.float32), tf.int32)
    left = tf.cast(tf.random.uniform([b]) * tf.cast(size - w + 1, tf.float32), tf.int32)
    r, c = tf.range(size)[None, :, None], tf.range(size)[None, None, :]
    box = ((r >= top[:, None, None]) & (r < (top + h)[:, None, None])
           & (c >= left[:, None, None]) & (c < (left + w)[:, None, None]))
    erase = box & (tf.random.uniform([b, 1, 1]) < erase_prob)
    return tf.where(erase[..., None], tf.zeros_like(images), images)


# Fixed parallelism instead of tf.data's autotuning: the batched augmentation is a few cheap ops per batch (~3% of
# a CPU training step), so 2 workers and 4 batches ahead keep the model fed on the 2-core CPU (a fast GPU may
# want more workers: not measured, no GPU lent so far).
PIPELINE_WORKERS = 2
PREFETCH_BATCHES = 4


def pipeline_options(tf):
    """tf.data options without the autotuning thread. Keras makes a new iterator per epoch (training) and per
    validation pass; destroying one waits for its autotune thread (Model::OptimizeLoop) to wake from its sleep.
    On the 2-core CPU that stalled training with every core idle for ~40 s after half the epochs: 80 s epochs
    instead of 40 (seen with gdb: the main thread in ~RootDataset::Iterator, waiting on that thread). These
    options reach the iterator only when Keras iterates the dataset itself: hence TF's default strategy on one
    device (select_strategy); a OneDeviceStrategy's multi-device iterator built its own autotuned pipeline."""
    options = tf.data.Options()
    options.autotune.enabled = False
    # Multi-worker: every worker builds the same pipeline (same seed) and keeps its share of the batches; the
    # default (by file, then by data with a warning) has no files to shard here.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, training: bool, augment: bool, seed: int,
                 erase_prob: float = 0.5):
    """uint8 (N, 28, 28) + labels -> batches of ((B, 28, 28, 1) float32 in [0, 1], one-hot (B, 10))."""
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def prep(img, label):
        img = tf.cast(img, tf.float32)[..., None] * data.INPUT_SCALE
        if training and augment:
            img = augment_batch(tf, img, erase_prob)
        return img, tf.one_hot(tf.cast(label, tf.int32), data.NUM_CLASSES)

    ds = ds.batch(batch_size).map(prep, num_parallel_calls=PIPELINE_WORKERS)
    return ds.prefetch(PREFETCH_BATCHES).with_options(pipeline_options(tf))


# ----------------------------------------------------------------------------- training


def _optimizer(keras, cfg: TrainConfig, steps_per_epoch: int):
    """The optimizer and its learning-rate schedule (None for adam: a constant rate, halved on plateaus)."""
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.learning_rate), None
    total = max(1, cfg.epochs * steps_per_epoch)
    schedule = warmup_cosine(cfg.learning_rate, min(int(cfg.warmup_epochs * steps_per_epoch), total - 1), total)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay), schedule
    return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay), schedule


def check_out_dir(out: Path) -> None:
    """An existing --out must be a folder that holds our artifacts (or nothing): we never replace user data."""
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"--out {out} is a file; give a folder for the artifacts")
    if out.is_dir() and any(out.iterdir()) and not (out / ARTIFACT_MARKER).is_file():
        raise ArtifactError(f"--out {out} is a non-empty folder without {ARTIFACT_MARKER}; choose an empty or new folder (it would be replaced)")


def versions() -> dict:
    from ..versions import versions as _versions

    return {k: v for k, v in _versions(("tensorflow", "keras", "numpy")).items() if v}


# Kept out of the time budget for what follows training: export, saving three formats, the test set and the report
# took 18-20 s for edgenet on the 2-core CPU (two full runs: whole command minus training loop); twice that in hand.
FINISH_RESERVE_S = 40.0


def train(cfg: TrainConfig, log=print, strategy=None) -> dict:
    """Train `cfg.arch`, evaluate on the test set, and write the artifact folder atomically. Returns metadata.

    `strategy`: a tf.distribute strategy to train under instead of the one select_strategy picks for
    `cfg.device` (e.g. a MirroredStrategy over chosen devices)."""
    t_start = time.perf_counter()
    cfg.validate()
    out = Path(cfg.out)
    check_out_dir(out)
    ds = data.load(cfg.data_dir)
    keras = _keras()
    keras.utils.set_random_seed(cfg.seed)

    train_idx, val_idx = data.stratified_split(ds.y_train, cfg.val_fraction, seed=cfg.seed)
    if cfg.limit:
        keep = data.stratified_subset(ds.y_train[train_idx], cfg.limit, seed=cfg.seed)
        train_idx = train_idx[keep]
        val_idx = val_idx[data.stratified_subset(ds.y_train[val_idx], max(10, int(cfg.limit * cfg.val_fraction)), seed=cfg.seed)]
    x_tr, y_tr = ds.x_train[train_idx], ds.y_train[train_idx]
    x_val, y_val = ds.x_train[val_idx], ds.y_train[val_idx]
    x_te, y_te = (ds.x_test, ds.y_test) if not cfg.test_limit else (ds.x_test[: cfg.test_limit], ds.y_test[: cfg.test_limit])

    if strategy is None:
        strategy, device_desc, policy = select_strategy(cfg.device, cfg.precision)
    else:
        device_desc, policy = describe_strategy(strategy, cfg.precision)
    log(f"data: {ds.source}; train {len(x_tr)}, validation {len(x_val)}, test {len(x_te)}")
    log(f"device: {device_desc}")
    steps = int(np.ceil(len(x_tr) / cfg.batch_size))
    with strategy.scope(), dtype_policy(policy):
        model = create_model(cfg.arch, fused_bn=True)  # the training twin; export_twin() gives the saved model
        optimizer, schedule = _optimizer(keras, cfg, steps)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            metrics=["accuracy"],
        )
    n_params, n_macs = int(model.count_params()), macs(model)
    log(f"model: {cfg.arch}, {n_params:,} parameters, {n_macs / 1e6:.1f} M multiply-adds per image")

    train_ds = make_dataset(x_tr, y_tr, cfg.batch_size, True, cfg.augment, cfg.seed, cfg.erase_prob)
    val_ds = make_dataset(x_val, y_val, 512, False, False, cfg.seed)

    with atomic_dir(out) as stage:
        ckpt = stage / "checkpoints" / "best.weights.h5"
        ckpt.parent.mkdir()
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True, save_weights_only=True),
            keras.callbacks.CSVLogger(str(stage / "history.csv")),
        ]
        if cfg.optimizer == "adam":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, cfg.patience // 2)))
        budget = None
        if cfg.time_budget_min:
            budget = time_budget(cfg.time_budget_min * 60, cfg.epochs, steps, schedule, log=log, started=t_start,
                                 reserve_s=FINISH_RESERVE_S)
            callbacks.append(budget)
        t0 = time.perf_counter()
        with StealMeter() as steal:
            hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=2)
        wall = time.perf_counter() - t0
        history = {k: [float(v) for v in vals] for k, vals in hist.history.items() if k != "learning_rate"}
        stolen = f" (the hypervisor took {steal.seconds:.0f} CPU-s of it: steal)" if steal.seconds else ""
        log(f"trained {len(history.get('loss', []))} epochs in {wall:.0f} s{stolen}")

        model = export_twin(model, cfg.arch)
        save_model(model, stage)
        from .report import evaluate_and_report

        metrics = evaluate_and_report(model, x_te, y_te, stage / "report", history=history, samples=(x_tr[:25], y_tr[:25]))
        metadata = {
            "arch": cfg.arch,
            "source": get_entry(cfg.arch).source,
            "params": n_params,
            "macs": n_macs,
            "class_names": list(data.CLASS_NAMES),
            "input": {"name": INPUT_NAME, "shape": [None, 28, 28, 1], "dtype": "float32", "layout": "NHWC",
                      "range": [0.0, 1.0], "preprocessing": "pixel / 255 (uint8 grayscale, Fashion-MNIST polarity: bright garment on black)"},
            "output": {"name": OUTPUT_NAME, "shape": [None, data.NUM_CLASSES], "dtype": "float32", "meaning": "softmax probabilities"},
            "files": {"keras": "model.keras", "h5": "model.h5", "saved_model": "saved_model"},
            "config": cfg.to_dict(),
            "data": {"source": ds.source, "train": len(x_tr), "validation": len(x_val), "test": len(x_te)},
            "device": device_desc,
            "precision": policy,  # training compute; the saved model is float32
            "versions": versions(),
            "wall_time_s": round(wall, 1),
            "cpu_steal_s": steal.seconds,  # CPU time the VM's host took during training (noise in wall_time_s)
            "epochs_run": len(history.get("loss", [])),
            "stopped_by": _stopped_by(cfg, budget, callbacks[0]),
            "test": {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "n": metrics["n"]},
        }
        write_json(stage / "history.json", history)
        write_json(stage / "metadata.json", metadata)
    log(f"test accuracy {metrics['accuracy']:.4f} (loss {metrics['loss']:.4f}); artifacts in {out}/")
    return metadata


def _stopped_by(cfg: TrainConfig, budget, early) -> str:
    if budget is not None and budget.stopped:
        return f"time budget ({cfg.time_budget_min:g} min)"
    if early.stopped_epoch:
        return f"early stopping (validation loss, patience {cfg.patience})"
    return f"epochs ({cfg.epochs})"


def save_model(model, folder: Path) -> None:
    """model.keras, model.h5 (legacy HDF5) and saved_model/ (serving signature on float32 [N, 28, 28, 1])."""
    tf, keras = _tf(), _keras()
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",  # also written as serving_default
        fn=lambda image: {OUTPUT_NAME: model(image, training=False)},
        input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(folder / "saved_model"), verbose=False)


def load_keras(path: str | os.PathLike):
    """Load a .keras or .h5 file in Keras' safe mode (no code from the file runs)."""
    from ..errors import ModelFileError

    keras = _keras()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file; train one with `fmnist-edge train` or pass a .keras/.h5 file")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: cannot load as a Keras model ({msg[:200]})") from None

