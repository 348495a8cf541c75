"""Training that survives being stopped: its state after every epoch, so that `train --resume` goes on from there.

A run's artifact folder is staged and swapped in only when everything is written, so a kill loses the whole
run; on a CPU some recipes take hours. The state therefore lives beside the folder, in `.NAME.resume/`: the
model's weights with the optimizer's (Keras' `.weights.h5` holds both, the step count and the learning rate
included), early stopping's best weights, the history so far, and what the callbacks count (patience left, the
plateau schedule, the time budget's clock). Each file is written under a temporary name and renamed; `state.json`
names the files of the last whole epoch and is replaced last. The folder is removed once the artifact folder is
in place.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np

from .. import faults
from ..atomic import atomic_file, write_json
from ..errors import ArtifactError, ConfigError, TrainingInterrupted
from ..quiet import keras as _keras
from .config import TrainConfig

STATE = "state.json"
# What may change between a run and its resumption: where and how long, not what is trained.
MAY_CHANGE = ("epochs", "time_budget_min", "test_limit", "device", "precision", "data_dir", "out")


def folder_for(out: Path) -> Path:
    return out.parent / f".{out.name}.resume"


def load(out: Path, cfg: TrainConfig) -> dict | None:
    """The state an interrupted run of `cfg` left beside `out`, or None. A state of another config is refused:
    resuming it would train something other than what was asked for."""
    folder = folder_for(out)
    try:
        state = json.loads((folder / STATE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot resume from {folder}: {STATE} is unreadable ({exc}); "
                            "remove that folder to train from the start") from None
    ours = cfg.to_dict()
    differ = [k for k, v in state.get("config", {}).items() if k not in MAY_CHANGE and ours.get(k) != v]
    if differ:
        shown = ", ".join(f"{k} {state['config'][k]!r} there, {ours.get(k)!r} now" for k in differ[:3])
        raise ConfigError(f"--resume: the interrupted run in {folder} was trained with other options ({shown}); "
                          "give the same options, or drop --resume to train from the start")
    for name in filter(None, (state.get("weights"), state.get("best"))):
        if not (folder / name).is_file():
            raise ArtifactError(f"cannot resume from {folder}: {name} is missing; remove that folder to train from the start")
    state["folder"] = str(folder)
    return state


def epochs_done(out: Path) -> int | None:
    """How many epochs the interrupted run beside `out` had finished, or None if there is none (or it is unreadable)."""
    try:
        return int(json.loads((folder_for(out) / STATE).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def found(out: Path) -> str | None:
    """A line about an interrupted run beside `out` that a run without --resume is about to replace, or None."""
    done = epochs_done(out)
    return None if done is None else f"{folder_for(out)} holds an interrupted run ({done} epochs done); --resume would go on from it"


def remove(out: Path) -> None:
    shutil.rmtree(folder_for(out), ignore_errors=True)


def restore_weights(model, state: dict) -> None:
    """The model's and the optimizer's variables as the state's last epoch left them."""
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(str(Path(state["folder"]) / state["weights"]))
    except Exception as exc:  # noqa: BLE001 - h5py/Keras raise many kinds for a damaged or mismatched file
        raise ArtifactError(f"cannot resume from {state['folder']}: {state['weights']} does not load ({exc}); "
                            "remove that folder to train from the start") from None


@functools.cache
def _callback_class():
    keras = _keras()

    class Checkpointer(keras.callbacks.Callback):
        """Put last among the callbacks: after every epoch, once early stopping, the plateau schedule and the time
        budget have counted it, writes the state; at the start of a resumed run, puts their counts back."""

        def __init__(self, out: Path, cfg: TrainConfig, early, plateau, budget, state: dict | None, on_epoch=None):
            super().__init__()
            self.on_epoch = on_epoch  # (epoch count, its logs) after its state is written (a Ray trial's checkpoint)
            self.folder, self.cfg, self.state = folder_for(out), cfg, state
            self.early, self.plateau, self.budget = early, plateau, budget
            self.history: dict[str, list[float]] = dict(state["history"]) if state else {}
            self.train_s = state["train_s"] if state else 0.0
            self.interrupted = False  # set by stop_on_interrupt: the run ends after this epoch, unfinished

        def on_train_begin(self, logs=None):
            self.t_begin = time.perf_counter()
            if self.state:
                restore_counters(self.state, self.early, self.plateau, self.budget)

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            self._save(epoch + 1, finished=False)
            faults.point("train-epoch-saved")
            if self.on_epoch is not None:
                self.on_epoch(epoch + 1, dict(logs or {}))

        def on_train_end(self, logs=None):
            # Early stopping (earlier in the list) has put the best weights back: the state of a finished run. An
            # interrupted run keeps its last epoch's state instead, to go on from.
            if not self.interrupted:
                self._save(len(self.history.get("loss", [])), finished=True)

        def _save(self, epoch: int, finished: bool) -> None:
            self.folder.mkdir(exist_ok=True)
            weights = f"epoch-{epoch:04d}{'-final' if finished else ''}.weights.h5"
            with atomic_file(self.folder / weights, suffix=".weights.h5") as tmp:
                self.model.save_weights(str(tmp))
            best = self.state.get("best") if self.state else None
            if self.early.best_weights is not None and (self.early.best_epoch == epoch - 1 or best is None):
                best = f"best-{self.early.best_epoch + 1:04d}.npz"
                with atomic_file(self.folder / best, suffix=".npz") as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, *self.early.best_weights)
            now = time.perf_counter()
            self.state = {
                "epoch": epoch, "finished": finished, "weights": weights, "best": best,
                "history": self.history, "train_s": round(self.train_s + now - self.t_begin, 1),
                "config": self.cfg.to_dict(), "counters": counters(self.early, self.plateau, self.budget),
                "folder": str(self.folder),
            }
            write_json(self.folder / STATE, {k: v for k, v in self.state.items() if k != "folder"})
            for old in self.folder.iterdir():  # what the state no longer names (and a killed writer's leftovers)
                if old.name not in (STATE, weights, best):
                    old.unlink(missing_ok=True)

    return Checkpointer


def checkpointer(out: Path, cfg: TrainConfig, early, plateau, budget, state: dict | None, on_epoch=None):
    return _callback_class()(out, cfg, early, plateau, budget, state, on_epoch)


@contextlib.contextmanager
def stop_on_interrupt(saver, log):
    """While training: the first Ctrl-C ends the run after the current epoch, whose state is saved; a second one
    stops at once (the last whole epoch's state stays). Either way the run ends in TrainingInterrupted, one line
    that says how to go on. (A KeyboardInterrupt raised inside TensorFlow's input pipeline can look like the end
    of the data to Keras, which then ends training as if it had finished: hence the flag, not the exception.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        saver.interrupted = True
        saver.model.stop_training = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log("interrupt: stopping after this epoch and keeping its state (Ctrl-C again to stop now)")

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        saver.interrupted = True
    finally:
        signal.signal(signal.SIGINT, previous)
    if saver.interrupted and saver.state:
        raise TrainingInterrupted(f"training interrupted: the state after epoch {saver.state['epoch']} is in "
                                  f"{saver.folder}; the same command with --resume goes on from there")
    if saver.interrupted:
        raise TrainingInterrupted("training interrupted before its first epoch ended: nothing to resume from")


def counters(early, plateau, budget) -> dict:
    c = {"early": {"wait": early.wait, "best": _num(early.best), "best_epoch": early.best_epoch,
                   "stopped_epoch": early.stopped_epoch}}
    if plateau is not None:
        c["plateau"] = {"wait": plateau.wait, "best": _num(plateau.best), "cooldown_counter": plateau.cooldown_counter}
    if budget is not None:
        c["budget"] = {"elapsed_s": time.perf_counter() - budget.started, "epoch_times": budget.epoch_times,
                       "planned": budget.planned, "stopped": budget.stopped}
    return c


def restore_counters(state: dict, early, plateau, budget) -> None:
    """Early stopping's patience and best weights, the plateau schedule's, and the time budget's clock, as the
    interrupted run left them (its budget counts the time already spent)."""
    c = state["counters"]
    early.wait, early.best, early.best_epoch = c["early"]["wait"], c["early"]["best"], c["early"]["best_epoch"]
    early.stopped_epoch = c["early"]["stopped_epoch"]
    if state.get("best"):
        with np.load(Path(state["folder"]) / state["best"]) as npz:
            early.best_weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    if plateau is not None and "plateau" in c:
        plateau.wait, plateau.best, plateau.cooldown_counter = (c["plateau"][k] for k in ("wait", "best", "cooldown_counter"))
    if budget is not None and "budget" in c:
        b = c["budget"]
        budget.started = getattr(budget, "started", time.perf_counter()) - b["elapsed_s"]
        budget.epoch_times, budget.planned, budget.stopped = list(b["epoch_times"]), b["planned"], b["stopped"]
        if budget.schedule is not None:
            budget.schedule.total_steps.assign(float(budget.planned * budget.steps_per_epoch))


def _num(x):
    return None if x is None else float(x)
