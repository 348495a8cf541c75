"""`fmnist-edge sweep`: a Ray Tune search over the registry's networks and their training recipe.

Each trial is one network, reshaped and trained with a sampled recipe (width, activation, dropout, optimizer,
learning rate, weight decay, batch size, augmentation, label smoothing, a moving average of the weights), then
converted and benched like a `compare` row (`tune._trial`). ASHA judges the trials by their validation accuracy
after each epoch and stops the hopeless ones; a trial's search metric is its validation accuracy too, so the test
set picks nothing. The output is compare's table and Pareto plot over the finished trials, the table of every
trial, and the best recipe (by validation accuracy) as a ready `fmnist-edge train` command.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import bounds
from ..atomic import write_json, write_text
from ..bounds import bounded
from ..errors import ConfigError, check_int, require
from ..studies import compare as C
from ..train.models import ACTIVATIONS

EXPERIMENT = "sweep"
SEARCHES = ("random", "grid", "optuna")
# grid: every combination, `num_samples` times over; random and optuna sample the ranges below
GRID = {"optimizer": ("adamw", "sgd"), "learning_rate": (1e-3, 1e-2), "augment": (True, False)}
WIDTHS = (0.5, 0.75, 1.0, 1.5)  # `train --width`: the registry's widths scaled
# every recipe option a trial may carry, in the order of the trials' table and of the train command
RECIPE = ("width", "activation", "dropout", "optimizer", "learning_rate", "weight_decay", "batch_size", "augment",
          "label_smoothing", "ema")
METRIC = "val_accuracy"  # what ASHA and the search judge a trial by (each epoch's report, then the run's best)


@dataclass(frozen=True)
class SweepConfig:
    """One sweep; checked once, when it is made."""

    archs: tuple = ()  # () = every registered architecture meant for comparing
    num_samples: int = bounded(8, 1, 10_000)
    search: str = "random"
    time_budget_min: float = bounded(0.0, 0, 100_000, unit="minutes", note="0 = none", label="--time-budget")  # whole sweep
    epochs: int | None = bounded(None, 1)  # per trial, at most; None = each recipe's
    limit: int | None = bounded(None, 100, unit="images")
    bench_seconds: float = bounded(2.0, 0.1, 600, unit="seconds")
    early_stop: bool = True  # ASHA; False: every trial runs to its end (as a local loop would)
    data_dir: str | None = None
    out: str = "sweep"

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ConfigError(f"--search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        bounds.check(self, options=True)

    @property
    def architectures(self) -> tuple[str, ...]:
        return C.CompareConfig(archs=self.archs).architectures


def _space(tune, cfg: SweepConfig) -> dict:
    """The search space of `cfg.search`: the networks and the recipe options of `fmnist-edge train`."""
    archs = list(cfg.architectures)
    if cfg.search == "grid":
        return {"arch": tune.grid_search(archs), "recipe": {k: tune.grid_search(list(v)) for k, v in GRID.items()}}
    return {"arch": tune.choice(archs),
            "recipe": {"width": tune.choice(list(WIDTHS)), "activation": tune.choice(list(ACTIVATIONS)),
                       "dropout": tune.uniform(0.0, 0.5), "optimizer": tune.choice(["adamw", "sgd", "adam"]),
                       "learning_rate": tune.loguniform(1e-4, 3e-2), "weight_decay": tune.loguniform(1e-5, 1e-2),
                       "batch_size": tune.choice([64, 128, 256]), "augment": tune.choice([True, False]),
                       "label_smoothing": tune.uniform(0.0, 0.2), "ema": tune.choice([0.0, 0.999])}}


def train_command(arch: str, recipe: dict, epochs: int | None) -> str:
    """The recipe as a ready `fmnist-edge train` command (on the whole training set)."""
    opts = {"--width": recipe.get("width"), "--activation": recipe.get("activation"), "--dropout": recipe.get("dropout"),
            "--optimizer": recipe.get("optimizer"), "--lr": recipe.get("learning_rate"),
            "--weight-decay": recipe.get("weight_decay"), "--batch-size": recipe.get("batch_size"),
            "--label-smoothing": recipe.get("label_smoothing"), "--ema": recipe.get("ema") or None, "--epochs": epochs}
    parts = [f"fmnist-edge train --arch {arch}"] + [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in opts.items() if v is not None]
    if recipe.get("augment") is False:
        parts.append("--no-augment")
    return " ".join(parts)


def run(cfg: SweepConfig, *, address: str = "local", cpus_per_trial: int = 1, storage: str | None = None,
        resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """The sweep on the Ray cluster at `address` -> {"machine", "config", "rows" (compare's, one per finished
    trial), "trials" (every trial), "best", "command"}; `save` writes it. Storage and `resume` as `compare --ray`."""
    from ..benchmarks.machine import machine
    from . import connect
    from .tune import artifact_folder, fit

    check_int("--cpus-per-trial", cpus_per_trial)
    out = Path(cfg.out)
    storage = storage or str(out / "ray")
    storage = storage if "://" in storage else str(Path(storage).resolve())
    path = f"{storage.rstrip('/')}/{EXPERIMENT}"
    with connect(address) as ray:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        search_alg = None
        if cfg.search == "optuna":
            require("optuna", "pip install optuna")
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(metric=METRIC, mode="max")
        compare = dataclasses.asdict(C.CompareConfig(epochs=cfg.epochs, limit=cfg.limit, bench_seconds=cfg.bench_seconds,
                                                     data_dir=cfg.data_dir))
        compare = {k: v for k, v in compare.items() if k not in ("archs", "out")}
        tune_config = tune.TuneConfig(num_samples=cfg.num_samples, search_alg=search_alg, reuse_actors=False,
                                      scheduler=_asha(ASHAScheduler, cfg) if cfg.early_stop else None,
                                      time_budget_s=cfg.time_budget_min * 60 or None)
        space = {**_space(tune, cfg), "cpus": cpus_per_trial, "compare": compare}
        results = fit(ray, path, space, cpus_per_trial=cpus_per_trial, resume=resume, log=log, tune_config=tune_config,
                      same=lambda stored: all(r.config.get("arch") in cfg.architectures for r in stored),
                      differs="give the same --arch to --resume, or another --storage")
        rows, trials = [], []
        for r in sorted(results, key=lambda r: r.path):
            metrics = r.metrics or {}
            trial_id = metrics.get("trial_id") or Path(r.path).name
            status = _status(r, metrics)
            trials.append({"trial": trial_id, "arch": r.config["arch"], **r.config.get("recipe", {}), "status": status,
                           "epochs": _epochs(metrics), METRIC: metrics.get(METRIC), "accuracy": metrics.get("accuracy"),
                           "node_ip": metrics.get("node_ip")})
            if status == "finished":
                artifact_folder(r.checkpoint, r.config["arch"], out / "trials" / trial_id)
                rows.append({**json.loads(metrics["row"]), "arch": f"{r.config['arch']}/{trial_id}",
                             "network": r.config["arch"], "recipe": r.config.get("recipe", {}), "node_ip": metrics.get("node_ip")})
    judged = [t for t in trials if t[METRIC] is not None]
    if not judged:
        raise ConfigError(f"no trial of the sweep in {path} trained an epoch (see the trials' errors there)")
    best = max(judged, key=lambda t: t[METRIC])
    recipe = {k: best[k] for k in RECIPE if k in best}
    return {"machine": machine(), "config": {**dataclasses.asdict(cfg), "archs": list(cfg.architectures)},
            "ray": {"address": address, "storage": path, "cpus_per_trial": cpus_per_trial},
            "rows": rows, "trials": trials, "best": best, "command": train_command(best["arch"], recipe, cfg.epochs)}


def _asha(ASHAScheduler, cfg: SweepConfig):
    """ASHA on the trials' epochs: rungs from a tenth of the longest trial's epochs, the worse half stopped at each.
    Reports without `epoch` (the stages after training) are not judged; the last rung does not stop a trial."""
    from ..train.config import make_config

    longest = max(make_config(arch, epochs=cfg.epochs).epochs for arch in cfg.architectures)
    return ASHAScheduler(time_attr="epoch", metric=METRIC, mode="max", max_t=longest, grace_period=max(1, longest // 10),
                         reduction_factor=2, stop_last_trials=False)


def _status(result, metrics: dict) -> str:
    if result.error is not None:
        return "error"
    if "row" in metrics:
        return "finished"
    return f"stopped at epoch {metrics['epoch']}" if "epoch" in metrics else f"stopped after {metrics.get('stage', 'start')}"


def _epochs(metrics: dict) -> int | None:
    """Epochs the trial trained: its row's, else its last epoch report's."""
    return json.loads(metrics["row"])["epochs_run"] if "row" in metrics else metrics.get("epoch")


TRIAL_COLUMNS = ("trial", "arch", *RECIPE, "status", "epochs", METRIC, "accuracy", "node_ip")


def trials_table(result: dict) -> str:
    """Every trial, best (validation accuracy) first: its network, recipe, status and accuracies."""
    head = (f"{'trial':<13}{'arch':<14}{'width':>6}{'activation':>11}{'drop':>6} {'optimizer':<10}{'lr':>8}{'wd':>8}"
            f"{'batch':>6}{'augment':>8}{'smooth':>7}{'ema':>6}{'epochs':>7}{'val':>8}{'test':>8}  status")
    lines = [head]
    for t in sorted(result["trials"], key=lambda t: -(t[METRIC] or 0)):
        lines.append(f"{t['trial']:<13}{t['arch']:<14}{_f(t.get('width'), 'g'):>6}{t.get('activation') or '-':>11}"
                     f"{_f(t.get('dropout'), '.2f'):>6} {t.get('optimizer') or '-':<10}{_f(t.get('learning_rate'), '.2g'):>8}"
                     f"{_f(t.get('weight_decay'), '.2g'):>8}{_f(t.get('batch_size'), 'd'):>6}{str(t.get('augment', '-')):>8}"
                     f"{_f(t.get('label_smoothing'), '.2f'):>7}{_f(t.get('ema'), 'g'):>6}{_f(t.get('epochs'), 'd'):>7}"
                     f"{_pct(t[METRIC]):>8}{_pct(t['accuracy']):>8}  {t['status']}")
    return "\n".join(lines)


def _f(v, spec) -> str:
    return "-" if v is None else format(v, spec)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def save(result: dict, out: Path) -> list[Path]:
    """compare.json/.csv/.png over the finished trials, and trials.json/.csv of every trial."""
    import csv
    import io

    paths = C.save(result, out) if result["rows"] else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TRIAL_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(result["trials"])
    write_json(out / "trials.json", {k: result[k] for k in ("config", "ray", "trials", "best", "command")})
    write_text(out / "trials.csv", buf.getvalue())
    return [*paths, out / "trials.json", out / "trials.csv"]
