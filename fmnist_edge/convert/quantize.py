"""INT8 post-training quantization of the IR with NNCF, calibrated on images from the training split.

`calibration_set` chooses those images; the peers' int8 models (onnx_quantize, tflite_export) are calibrated on
the same ones."""

from __future__ import annotations

import numpy as np

from .. import data
from ..errors import require


def calibration_images(ds: data.FashionMNIST, size: int, val_fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """`size` class-balanced uint8 images from the training split train used (never validation, never test)."""
    train_idx, _ = data.stratified_split(ds.y_train, val_fraction, seed=seed)  # shuffled
    labels = ds.y_train[train_idx]
    rank = np.zeros(len(labels), dtype=np.int64)  # i-th image of its class in the shuffled order
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    take = np.lexsort((labels, rank))[:size]  # round robin over the classes: exactly `size`, balanced
    return ds.x_train[train_idx[take]]


def calibration_set(ds: data.FashionMNIST, recipe: dict, size: int) -> np.ndarray:
    """The (size, 28, 28, 1) float32 model inputs that every int8 model of one conversion is calibrated on: ours
    (NNCF) and the peers' (onnxruntime, LiteRT). `recipe`: the training config, whose split they come from."""
    from ..runtime.preprocess import to_model_input

    return to_model_input(calibration_images(ds, size, recipe.get("val_fraction", 0.1), recipe.get("seed", 0)))


def quantize_ir(model, calib: np.ndarray):
    """ov.Model + (N, 28, 28, 1) float32 calibration images -> INT8 ov.Model (NNCF PTQ, batch 1)."""
    nncf = require("nncf")
    from ..quiet import quiet

    dataset = nncf.Dataset([image[None] for image in calib])  # each item (1, 28, 28, 1)
    # The full bias correction, not NNCF's fast one: with the fast one report 003's dropout CNN (cnn3_dropout) lost
    # 4.7 points at INT8 and failed its check; with the full one 0.15, and the others stay within 0.2 of either
    # (docs/compare.md). It costs seconds on networks of this size.
    with quiet():  # NNCF draws progress bars
        return nncf.quantize(model, dataset, subset_size=len(calib), fast_bias_correction=False)
