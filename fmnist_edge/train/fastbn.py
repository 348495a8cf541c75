"""Batch norm on TensorFlow's fused kernel, for training only.

Keras 3's `BatchNormalization` computes moments and the normalisation as separate ops in float32
(it up-casts bfloat16 inputs), several passes over every activation forward and backward. TensorFlow's
`FusedBatchNormV3` does it in one kernel (oneDNN on Intel CPUs) and accepts bfloat16 activations
with float32 statistics: about 1.4x the training speed in float32, 2.5-3x under mixed bfloat16 (figures in
docs/design.md, "Precision and the fused batch norm").

The layer keeps Keras' weights (gamma, beta, moving_mean, moving_variance, in that order) and Keras'
arithmetic (population variance for the moving statistics), so a trained model's weights load into the
plain Keras model that we save: the artifacts never depend on this class.
"""

from __future__ import annotations

import functools

from ..quiet import keras as _keras
from ..quiet import tensorflow as _tf

_FUSED_DTYPES = ("float32", "bfloat16", "float16")


@functools.cache
def fused_batch_norm_class():
    """The layer class, defined on first use: importing this module does not import TensorFlow."""
    keras = _keras()
    tf = _tf()

    class FusedBatchNormalization(keras.layers.BatchNormalization):
        """`keras.layers.BatchNormalization` on the fused kernel for NHWC 4-D inputs (else Keras' own path)."""

        def _fusable(self, inputs, mask) -> bool:
            return (mask is None and len(inputs.shape) == 4 and self.axis in (-1, 3) and self.scale and self.center
                    and not self.renorm and not getattr(self, "synchronized", False)
                    and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES)

        def call(self, inputs, training=None, mask=None):
            if not self._fusable(inputs, mask):
                return super().call(inputs, training=training, mask=mask)
            gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
            if training and self.trainable:
                y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                    inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
                # The kernel returns the unbiased (n-1) variance; Keras tracks the population variance.
                n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
                var = var * (n - 1.0) / tf.maximum(n, 2.0)
                m = self.momentum
                self.moving_mean.assign(self.moving_mean * m + tf.cast(mean, self.moving_mean.dtype) * (1.0 - m))
                self.moving_variance.assign(self.moving_variance * m + tf.cast(var, self.moving_variance.dtype) * (1.0 - m))
            else:
                y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                    inputs, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
                    variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                    data_format="NHWC", is_training=False)
            return tf.cast(y, self.compute_dtype)

    return FusedBatchNormalization


def swap_in(layer):
    """A plain Keras BatchNormalization (not yet built) -> the fused twin with the same config; others as-is."""
    keras = _keras()
    if type(layer) is keras.layers.BatchNormalization:
        return fused_batch_norm_class().from_config(layer.get_config())
    return layer
