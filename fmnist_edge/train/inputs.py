"""The training input pipeline: uint8 images become shuffled, augmented float batches, fed without tf.data's autotuner."""

from __future__ import annotations

import numpy as np

from .. import contract
from ..quiet import tensorflow as _tf


def augment_batch(tf, images, erase_prob: float, shift: int = 2):
    """(B, 28, 28, 1) float32 -> per-image random horizontal flip, shift of up to `shift` px (zero fill) and,
    with probability `erase_prob`, random erasing of a rectangle of 2..10% of the area (aspect 0.3..3.3).

    Vectorised over the batch: the per-image version (a tf.data map per example) cost ~30% of a CPU training
    step; this one is a handful of batched ops.
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


# Fixed parallelism instead of tf.data's autotuning (see pipeline_options): the batched augmentation is a few cheap
# ops per batch (~3% of a CPU training step), so 2 workers and 4 batches ahead keep the model fed.
PIPELINE_WORKERS = 2
PREFETCH_BATCHES = 4


def pipeline_options(tf):
    """tf.data options without the autotuning thread. Keras makes a new iterator per epoch (training) and per
    validation pass; destroying one waits for its autotune thread (Model::OptimizeLoop) to wake from its sleep.
    That stalled training with every core idle for ~40 s after half the epochs (docs/design.md). These
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
        img = tf.cast(img, tf.float32)[..., None] * contract.INPUT_SCALE
        if training and augment:
            img = augment_batch(tf, img, erase_prob)
        return img, tf.one_hot(tf.cast(label, tf.int32), contract.NUM_CLASSES)

    ds = ds.batch(batch_size).map(prep, num_parallel_calls=PIPELINE_WORKERS)
    return ds.prefetch(PREFETCH_BATCHES).with_options(pipeline_options(tf))
