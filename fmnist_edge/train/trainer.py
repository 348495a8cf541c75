"""Keras training: fit a registry model under its device strategy, then write one artifact folder atomically."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import artifact, contract, data
from ..atomic import atomic_dir
from ..errors import ArtifactError
from ..host import StealMeter
from ..quiet import keras as _keras
from ..versions import package_versions
from . import resume as checkpoints
from .bnstats import IMAGES as BN_IMAGES
from .bnstats import recalibrate
from .budget import time_budget, warmup_cosine
from .config import TrainConfig
from .devices import describe_strategy, dtype_policy, select_strategy
from .inputs import make_dataset
from .modelio import export_twin, save_model
from .models import create_model, get_entry, macs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras warns that HDF5 is legacy (we write it on purpose, as the seeds do) and about shuffle with tf.data.
warnings.filterwarnings("ignore", message=r".*(HDF5 file|legacy|`shuffle=True` was passed).*")
logging.getLogger("absl").setLevel(logging.ERROR)

ARTIFACT_MARKER = artifact.METADATA


RECALIBRATE_BN = True  # bnstats.recalibrate after fit (off only to measure what it changes)


def _optimizer(keras, cfg: TrainConfig, steps_per_epoch: int):
    """The optimizer and its learning-rate schedule (None for adam: a constant rate, halved on plateaus)."""
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema else {}
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.learning_rate, **ema), None
    total = max(1, cfg.epochs * steps_per_epoch)
    schedule = warmup_cosine(cfg.learning_rate, min(int(cfg.warmup_epochs * steps_per_epoch), total - 1), total)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay, **ema), schedule
    return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, **ema), schedule


def check_out_dir(out: Path) -> None:
    """An existing --out must be a folder that holds our artifacts (or nothing): we never replace user data."""
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"--out {out} is a file; give a folder for the artifacts")
    if out.is_dir() and any(out.iterdir()) and not (out / ARTIFACT_MARKER).is_file():
        raise ArtifactError(f"--out {out} is a non-empty folder without {ARTIFACT_MARKER}; "
                            "choose an empty or new folder (it would be replaced)")


# Kept out of the time budget for what follows training (export, three formats, the test set, the report): twice
# the longest this took when measured (docs/design.md, "The time budget").
FINISH_RESERVE_S = 40.0


@dataclass(frozen=True)
class Splits:
    """The images one run trains, validates and tests on: dataset-form uint8 (N, 28, 28) and their labels."""

    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def splits(cfg: TrainConfig) -> Splits:
    """The stratified train/validation split of `cfg` (a stratified subset with `limit`), and its test images."""
    ds = data.load(cfg.data_dir)
    train_idx, val_idx = data.stratified_split(ds.y_train, cfg.val_fraction, seed=cfg.seed)
    if cfg.limit:
        train_idx = train_idx[data.stratified_subset(ds.y_train[train_idx], cfg.limit, seed=cfg.seed)]
        n_val = max(10, int(cfg.limit * cfg.val_fraction))
        val_idx = val_idx[data.stratified_subset(ds.y_train[val_idx], n_val, seed=cfg.seed)]
    n_test = cfg.test_limit or len(ds.y_test)
    return Splits(ds.source, ds.x_train[train_idx], ds.y_train[train_idx], ds.x_train[val_idx], ds.y_train[val_idx],
                  ds.x_test[:n_test], ds.y_test[:n_test])


def train(cfg: TrainConfig, log=print, strategy=None, resume: bool = False, on_epoch=None) -> dict:
    """Train `cfg.arch`, evaluate on the test set, and write the artifact folder atomically. Returns metadata.

    `strategy`: a tf.distribute strategy to train under instead of the one select_strategy picks for
    `cfg.device` (e.g. a MirroredStrategy over chosen devices). `resume`: go on from the state an interrupted
    run of the same config left after its last whole epoch (train/resume.py), if there is one. `on_epoch(n, logs)`: called
    after epoch n's resume state is written beside `cfg.out`, with its Keras logs (a Ray trial hands it to Tune as a checkpoint)."""
    t_start = time.perf_counter()
    out = Path(cfg.out)
    check_out_dir(out)
    state = resume_state(out, cfg, log) if resume else None
    if not resume and (line := checkpoints.found(out)):
        log(f"note: {line}")
    start = state["epoch"] if state else 0
    sp = splits(cfg)
    keras = _keras()
    keras.utils.set_random_seed(cfg.seed + start)  # a resumed run does not replay the first epochs' shuffles
    if strategy is None:
        strategy, device_desc, policy = select_strategy(cfg.device, cfg.precision)
    else:
        device_desc, policy = describe_strategy(strategy, cfg.precision)
    log(f"data: {sp.source}; train {len(sp.x_train)}, validation {len(sp.x_val)}, test {len(sp.x_test)}")
    log(f"device: {device_desc}")
    steps = int(np.ceil(len(sp.x_train) / cfg.batch_size))
    with strategy.scope(), dtype_policy(policy):
        model = create_model(cfg.arch, fused_bn=True, **cfg.shape)  # the training twin; export_twin() gives the saved model
        optimizer, schedule = _optimizer(keras, cfg, steps)
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                      metrics=["accuracy"])
    n_params, n_macs = int(model.count_params()), macs(model)
    log(f"model: {cfg.arch}, {n_params:,} parameters, {n_macs / 1e6:.1f} M multiply-adds per image")
    train_ds = make_dataset(sp.x_train, sp.y_train, cfg.batch_size, True, cfg.augment, cfg.seed, cfg.erase_prob)
    val_ds = make_dataset(sp.x_val, sp.y_val, 512, False, False, cfg.seed)

    with atomic_dir(out) as stage:
        callbacks, saver = _callbacks(keras, cfg, out, steps, schedule, t_start, state, log, on_epoch)
        if state:
            with strategy.scope():
                checkpoints.restore_weights(model, state)
        t0 = time.perf_counter()
        with StealMeter() as steal:
            if state and state["finished"]:
                checkpoints.restore_counters(state, saver.early, saver.plateau, saver.budget)
            else:
                with checkpoints.stop_on_interrupt(saver, log):
                    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=start,
                              callbacks=callbacks, verbose=2)
        if cfg.ema:  # the moving average replaces the weights (after early stopping restored its best epoch's)
            with strategy.scope():
                model.optimizer.finalize_variable_values(model.trainable_variables)
            log(f"weights: their moving average over the training steps (momentum {cfg.ema:g})")
        wall = (state["train_s"] if state else 0.0) + time.perf_counter() - t0
        history = {k: vals for k, vals in saver.history.items() if k != "learning_rate"}
        layout = artifact.Layout(stage)
        write_history(layout.history_csv, saver.history)
        layout.checkpoints.mkdir()
        model.save_weights(str(layout.best_weights))  # early stopping has restored the best epoch's
        stolen = f" (the hypervisor took {steal.seconds:.0f} CPU-s of it: steal)" if (steal.seconds or 0) >= 1 else ""
        log(f"trained {len(history.get('loss', []))} epochs in {wall:.0f} s{stolen}")

        model = export_twin(model, cfg.arch, **cfg.shape)
        if RECALIBRATE_BN and recalibrate(model, sp.x_train):
            log(f"batch-norm statistics re-estimated on {min(len(sp.x_train), BN_IMAGES):,} training images")
        save_model(model, stage)
        from .evaluation import evaluate_and_report

        metrics = evaluate_and_report(model, sp.x_test, sp.y_test, layout.report, history=history,
                                      samples=(sp.x_train[:25], sp.y_train[:25]))
        metadata = {
            "arch": cfg.arch,
            "source": get_entry(cfg.arch).source,
            "params": n_params,
            "macs": n_macs,
            "class_names": list(contract.CLASS_NAMES),
            **contract.tensor_specs(),
            "files": dict(artifact.TRAIN_FILES),
            "config": cfg.to_dict(),
            "data": {"source": sp.source, "train": len(sp.x_train), "validation": len(sp.x_val), "test": len(sp.x_test)},
            "device": device_desc,
            "precision": policy,  # training compute; the saved model is float32
            "versions": package_versions(),
            "wall_time_s": round(wall, 1),
            "cpu_steal_s": steal.seconds,  # CPU time the VM's host took during training (noise in wall_time_s)
            "epochs_run": len(history.get("loss", [])),
            "resumed_at_epoch": start or None,  # set when `--resume` went on from an interrupted run
            "stopped_by": _stopped_by(cfg, saver.budget, saver.early),
            "test": artifact.test_entry(metrics),
        }
        artifact.write_history(stage, history)
        artifact.write_metadata(stage, metadata)
    checkpoints.remove(out)  # the run is in place: its interrupted state is no longer needed
    log(f"test accuracy {metrics['accuracy']:.4f} (loss {metrics['loss']:.4f}); artifacts in {out}/")
    return metadata


def resume_state(out: Path, cfg: TrainConfig, log) -> dict | None:
    state = checkpoints.load(out, cfg)
    if state is None:
        log(f"resume: no interrupted run beside {out}; training from the start")
    elif state["finished"]:
        log(f"resume: training had finished ({state['epoch']} epochs); writing its artifacts")
    else:
        log(f"resume: going on after epoch {state['epoch']} of {cfg.epochs} ({checkpoints.folder_for(out)})")
    return state


def _callbacks(keras, cfg: TrainConfig, out: Path, steps: int, schedule, t_start: float, state: dict | None, log,
               on_epoch=None):
    """(the callbacks, the checkpointer, which holds the others: .early, .plateau, .budget): best weights kept, the
    schedule's end moved to what fits the budget, and the state saved after every epoch so that an interrupted
    run can be resumed."""
    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    plateau = None
    if cfg.optimizer == "adam":
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, cfg.patience // 2))
    budget = None
    if cfg.time_budget_min:
        budget = time_budget(cfg.time_budget_min * 60, cfg.epochs, steps, schedule, log=log, started=t_start,
                             reserve_s=FINISH_RESERVE_S)
    saver = checkpoints.checkpointer(out, cfg, early, plateau, budget, state, on_epoch)  # last: it saves what the others counted
    return [c for c in (early, plateau, budget, saver) if c is not None], saver


def write_history(path: Path, history: dict[str, list[float]]) -> None:
    """The per-epoch history as CSV, as Keras' CSVLogger writes it: epoch, then the metrics in sorted order."""
    keys = sorted(history)
    rows = ["epoch," + ",".join(keys)]
    rows += [",".join([str(i)] + [repr(history[k][i]) for k in keys]) for i in range(len(history.get("loss", [])))]
    path.write_text("\n".join(rows) + "\n")


def _stopped_by(cfg: TrainConfig, budget, early) -> str:
    if budget is not None and budget.stopped:
        return f"time budget ({cfg.time_budget_min:g} min)"
    if early.stopped_epoch:
        return f"early stopping (validation loss, patience {cfg.patience})"
    return f"epochs ({cfg.epochs})"
