"""Keras training: fit a registry model under its device strategy, then write one artifact folder atomically."""

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
from .bnstats import IMAGES as BN_IMAGES
from .bnstats import recalibrate
from .modelio import export_twin, save_model
from .models import INPUT_NAME, OUTPUT_NAME, create_model, get_entry, macs
from .pipeline import make_dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras warns that HDF5 is legacy (we write it on purpose, as the seeds do) and about shuffle with tf.data.
warnings.filterwarnings("ignore", message=r".*(HDF5 file|legacy|`shuffle=True` was passed).*")
logging.getLogger("absl").setLevel(logging.ERROR)

ARTIFACT_MARKER = "metadata.json"


RECALIBRATE_BN = True  # bnstats.recalibrate after fit (off only to measure what it changes)


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
        stolen = f" (the hypervisor took {steal.seconds:.0f} CPU-s of it: steal)" if (steal.seconds or 0) >= 1 else ""
        log(f"trained {len(history.get('loss', []))} epochs in {wall:.0f} s{stolen}")

        model = export_twin(model, cfg.arch)
        if RECALIBRATE_BN and recalibrate(model, x_tr):
            log(f"batch-norm statistics re-estimated on {min(len(x_tr), BN_IMAGES):,} training images")
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
