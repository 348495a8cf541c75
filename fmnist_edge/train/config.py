"""Typed training config: one dataclass, defaults per recipe, strict validation before any work starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError
from .models import DEFAULT_ARCH, MLP_ACTIVATIONS, get_entry

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
    epochs: int = 40  # at most: the time budget ends the run sooner on a CPU too slow for all of them
    time_budget_min: float = 30.0  # the training loop ends within this many minutes, its LR schedule fitted to it; 0 = none
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd (Nesterov momentum 0.9) | adam
    learning_rate: float = OPTIMIZER_DEFAULTS["adamw"]["learning_rate"]  # peak of warm-up + cosine; constant (adam)
    weight_decay: float = OPTIMIZER_DEFAULTS["adamw"]["weight_decay"]  # decoupled (adamw, sgd)
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    augment: bool = True  # random shifts (2 px), horizontal flips, random erasing
    erase_prob: float = 0.5  # random-erasing probability when augmenting
    val_fraction: float = 0.1
    patience: int = 12  # early stopping on validation loss, best weights restored
    limit: int | None = None  # train on a stratified subset of this many images (tests, smoke runs)
    test_limit: int | None = None  # evaluate on the first N test images (tests); None = all 10,000
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # compute dtype; weights stay float32. auto: bfloat16 on CPUs with AMX/AVX512-BF16, else float32
    data_dir: str | None = None
    out: str = "artifacts"

    def __post_init__(self) -> None:
        get_entry(self.arch)  # raises UnknownModelError with the known names
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (1 <= self.batch_size <= 65536, f"batch size must be in 1..65536, got {self.batch_size}"),
            (self.optimizer in OPTIMIZER_DEFAULTS, f"optimizer must be adamw, sgd or adam, got {self.optimizer!r}"),
            (0 < self.learning_rate < 10, f"learning rate must be in (0, 10), got {self.learning_rate}"),
            (0 <= self.weight_decay < 1, f"weight decay must be in [0, 1), got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.erase_prob <= 1, f"erase probability must be in [0, 1], got {self.erase_prob}"),
            (0 < self.val_fraction < 0.5, f"validation fraction must be in (0, 0.5), got {self.val_fraction}"),
            (0 <= self.time_budget_min <= 10_000, f"time budget must be in 0..10000 minutes (0 = none), got {self.time_budget_min}"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (self.limit is None or self.limit >= 100, f"limit must be >= 100 images, got {self.limit}"),
            (self.test_limit is None or self.test_limit >= 10, f"test limit must be >= 10, got {self.test_limit}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

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
