"""Typed training config: one dataclass, defaults per recipe, strict validation before any work starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import bounds
from ..bounds import bounded
from ..errors import ConfigError
from .models import ACTIVATIONS, DEFAULT_ARCH, MLP_ACTIVATIONS, get_entry

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")

# What an optimizer brings along when a run picks it instead of its recipe's: its learning rate and weight decay.
OPTIMIZER_DEFAULTS: dict[str, dict] = {
    "adamw": {"learning_rate": 3e-3, "weight_decay": 5e-2},
    "sgd": {"learning_rate": 0.1, "weight_decay": 5e-4},
    "adam": {"learning_rate": 1e-3, "weight_decay": 0.0},
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run; checked once, when it is made (a bad value is a ConfigError before any work starts)."""

    arch: str = DEFAULT_ARCH
    # at most: the time budget ends the run sooner on a CPU too slow for all of them
    epochs: int = bounded(40, 1)
    # the training loop ends within this many minutes, its LR schedule fitted to it; 0 = none
    time_budget_min: float = bounded(30.0, 0, 10_000, unit="minutes", note="0 = none", label="time budget")
    batch_size: int = bounded(128, 1, 65536)
    optimizer: str = "adamw"  # adamw | sgd (Nesterov momentum 0.9) | adam
    # peak of warm-up + cosine; constant (adam)
    learning_rate: float = bounded(OPTIMIZER_DEFAULTS["adamw"]["learning_rate"], 0, 10, lo_open=True, hi_open=True)
    # decoupled (adamw, sgd)
    weight_decay: float = bounded(OPTIMIZER_DEFAULTS["adamw"]["weight_decay"], 0, 1, hi_open=True)
    warmup_epochs: float = bounded(1.0, 0)
    label_smoothing: float = bounded(0.1, 0, 1, hi_open=True)
    # momentum of a moving average of the weights per step (Keras' use_ema), which replaces them after training; 0 = off
    ema: float = bounded(0.0, 0, 1, hi_open=True, label="EMA momentum")
    # the network reshaped (models.reshape): widths scaled, hidden activations replaced, dropout rates set; None = as registered
    width: float = bounded(1.0, 0.05, 8, label="width multiplier")
    activation: str | None = None
    dropout: float | None = bounded(None, 0, 1, hi_open=True, label="dropout rate")
    augment: bool = True  # random shifts (2 px), horizontal flips, random erasing
    erase_prob: float = bounded(0.5, 0, 1, label="erase probability")  # random-erasing probability when augmenting
    val_fraction: float = bounded(0.1, 0, 0.5, lo_open=True, hi_open=True, label="validation fraction")
    patience: int = bounded(12, 1)  # early stopping on validation loss, best weights restored
    # train on a stratified subset of this many images (tests, smoke runs)
    limit: int | None = bounded(None, 100, unit="images")
    test_limit: int | None = bounded(None, 10)  # evaluate on the first N test images (tests); None = all 10,000
    seed: int = bounded(0, 0)
    device: str = "auto"  # where Keras trains (the CLI's --accelerator): auto | cpu | gpu
    # compute dtype (the CLI's --compute-dtype); weights stay float32. auto: bfloat16 on CPUs with AMX/AVX512-BF16, else float32
    precision: str = "auto"
    data_dir: str | None = None
    out: str = "artifacts"

    def __post_init__(self) -> None:
        get_entry(self.arch)  # raises UnknownModelError with the known names
        bounds.check(self)  # every field's range, declared with it above
        checks = [
            (self.optimizer in OPTIMIZER_DEFAULTS, f"optimizer must be adamw, sgd or adam, got {self.optimizer!r}"),
            (self.activation in (None, *ACTIVATIONS),
             f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @property
    def shape(self) -> dict:
        """`models.create_model`'s reshaping options of this run."""
        return {"width": self.width, "activation": self.activation, "dropout": self.dropout}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Defaults per recipe. The source reports' networks train as their reports did (Adam, no augmentation, their batch sizes
# and epoch counts, no time budget); `quick` is the short budget the demo uses.
_AS_REPORTED = {"optimizer": "adam", "learning_rate": 1e-3, "augment": False, "label_smoothing": 0.0, "time_budget_min": 0}
RECIPES: dict[str, dict] = {
    "quick": {"epochs": 2},
    "cnn4_bn": {**_AS_REPORTED, "batch_size": 80, "epochs": 75, "patience": 5, "val_fraction": 0.15},
    "cnn1": {**_AS_REPORTED, "batch_size": 512, "epochs": 10, "val_fraction": 0.2},
    "cnn3_wide": {**_AS_REPORTED, "batch_size": 512, "epochs": 50, "val_fraction": 0.2},
    "mlp_tanh": {**_AS_REPORTED, "batch_size": 128, "epochs": 100, "val_fraction": 0.2},
    "cnn2": {**_AS_REPORTED, "batch_size": 150, "epochs": 15},
    "cnn3_dropout": {**_AS_REPORTED, "batch_size": 150, "epochs": 15},
    "cnn2_leaky": {**_AS_REPORTED, "batch_size": 64, "epochs": 10, "val_fraction": 0.2},
    "tiny": {"epochs": 1, "batch_size": 64, "augment": False, "patience": 2},
}
RECIPES.update({f"mlp_{act}": RECIPES["mlp_tanh"] for act in MLP_ACTIVATIONS[1:]})  # the study's variants


def make_config(arch: str | None = None, quick: bool = False, **overrides) -> TrainConfig:
    """Merge: dataclass defaults < the arch's recipe < the optimizer's defaults (when `optimizer` is overridden)
    < `quick` < explicit overrides (None = not given)."""
    arch = get_entry(arch or DEFAULT_ARCH).name  # an old name (models.ALIASES) becomes the current one
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(fields))}")
    merged = dict(RECIPES.get(arch, {}))
    optimizer = overrides.get("optimizer")
    if optimizer in OPTIMIZER_DEFAULTS and optimizer != merged.get("optimizer", TrainConfig.optimizer):
        merged.update(optimizer=optimizer, **OPTIMIZER_DEFAULTS[optimizer])
    merged.update(RECIPES["quick"] if quick else {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(arch=arch, **merged)
