"""Batch-norm statistics re-estimated after training: the saved model normalises with what its final weights see.

Keras keeps each BatchNormalization layer's moving mean and variance as an exponential average with momentum
0.99, so after n training steps 0.99^n of the initial values (0 and 1) are still in them: 62% after 47 steps
(one epoch of 6,000 images), and the model that is saved predicts one class while its training accuracy is
61%. Long runs hide it, but their averages still mix statistics of weights from hundreds of steps ago. So after
`fit` every BN layer's statistics are recomputed as the plain average over training batches (no augmentation)
through the final weights, as "precise BN" does; nothing else changes.
"""

from __future__ import annotations

import numpy as np

from .. import data

IMAGES = 4096  # training images the statistics are averaged over
BATCH = 128


def recalibrate(model, x: np.ndarray, images: int = IMAGES, batch_size: int = BATCH) -> int:
    """Re-estimate the moving statistics of every BatchNormalization layer of `model` on dataset-form uint8
    images `x` (N, 28, 28); returns the number of layers updated."""
    from ..quiet import keras as _keras

    keras = _keras()
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or len(x) == 0:
        return 0
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(x), size=min(images, len(x)), replace=False))
    momenta = [layer.momentum for layer in layers]
    dropouts = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dropout)]
    rates = [layer.rate for layer in dropouts]
    try:
        for layer in dropouts:  # the statistics of what inference sees: no units dropped
            layer.rate = 0.0
        for k, start in enumerate(range(0, len(pick), batch_size)):
            for layer in layers:  # batch k enters the average with weight 1/(k+1): a plain mean over batches
                layer.momentum = k / (k + 1)
            model(data.normalize(x[pick[start : start + batch_size]]), training=True)  # (b, 28, 28, 1) float32
    finally:
        for layer, m in zip(layers, momenta, strict=True):
            layer.momentum = m
        for layer, r in zip(dropouts, rates, strict=True):
            layer.rate = r
    return len(layers)
