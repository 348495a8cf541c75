"""The training twin: fused batch norm computes what Keras' layer computes, and its weights load into the
plain float32 model that training saves."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist_edge.host import cpu_has_bf16


def _pair(channels=16, momentum=0.9):
    import keras

    from fmnist_edge.train.fastbn import swap_in

    plain = keras.layers.BatchNormalization(momentum=momentum)
    fused = swap_in(keras.layers.BatchNormalization(momentum=momentum))
    rng = np.random.default_rng(0)
    for layer in (plain, fused):
        layer.build((None, 7, 7, channels))
    weights = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 1, channels), rng.normal(0, 1, channels),
               rng.uniform(0.5, 2, channels)]
    for layer in (plain, fused):
        layer.set_weights([w.astype("float32") for w in weights])
    return plain, fused


def _op_types(layer, x, training):
    import tensorflow as tf

    fn = tf.function(lambda t: layer(t, training=training))
    return {op.type for op in fn.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph.get_operations()}


def test_fused_matches_keras_batch_norm_in_training_and_inference():
    plain, fused = _pair()
    before = fused.get_weights()
    x = np.random.default_rng(1).normal(2.0, 3.0, (32, 7, 7, 16)).astype("float32")
    for training in (True, False):
        a, b = np.asarray(plain(x, training=training)), np.asarray(fused(x, training=training))
        np.testing.assert_allclose(b, a, atol=2e-5, rtol=1e-5)
    # one training step moved the moving statistics the same way (population variance, momentum 0.9)
    for w_plain, w_fused in zip(plain.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_allclose(w_fused, w_plain, atol=1e-5, rtol=1e-5)
    assert not np.allclose(fused.get_weights()[2], before[2]) and not np.allclose(fused.get_weights()[3], before[3])


def test_fused_kernel_is_what_runs_and_other_shapes_fall_back():
    import tensorflow as tf

    _, fused = _pair()
    x = tf.zeros((4, 7, 7, 16), tf.float32)
    assert "FusedBatchNormV3" in _op_types(fused, x, True)
    assert "FusedBatchNormV3" in _op_types(fused, x, False)
    assert "FusedBatchNormV3" in _op_types(fused, tf.cast(x, tf.bfloat16), True)  # mixed bfloat16 activations
    import keras

    from fmnist_edge.train.fastbn import swap_in

    flat = swap_in(keras.layers.BatchNormalization())
    flat.build((None, 16))
    assert "FusedBatchNormV3" not in _op_types(flat, tf.zeros((4, 16)), True)  # 2-D (after a Dense): Keras' path


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_export_twin_is_the_plain_float32_model_with_the_trained_weights(policy, fmnist):
    import keras

    from fmnist_edge import data
    from fmnist_edge.train.devices import dtype_policy
    from fmnist_edge.train.fastbn import fused_batch_norm_class
    from fmnist_edge.train.modelio import export_twin
    from fmnist_edge.train.models import create_model

    with dtype_policy(policy):
        twin = create_model("edgenet", fused_bn=True)
    assert keras.mixed_precision.global_policy().name == "float32", "the policy is restored after building"
    assert any(isinstance(layer, fused_batch_norm_class()) for layer in twin.layers)
    x = data.normalize(fmnist.x_train[:256])
    y = keras.utils.to_categorical(fmnist.y_train[:256], 10)
    twin.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    twin.fit(x, y, batch_size=64, epochs=1, verbose=0)  # moving statistics and weights move away from init

    plain = export_twin(twin, "edgenet")
    assert not any(isinstance(layer, fused_batch_norm_class()) for layer in plain.layers)
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    for mine, trained in zip(plain.get_weights(), twin.get_weights(), strict=True):  # float32 under both policies
        np.testing.assert_array_equal(mine, trained)
    got, ref = np.asarray(plain(x, training=False)), np.asarray(twin(x, training=False))
    assert got.dtype == np.float32
    if policy == "float32":
        np.testing.assert_allclose(got, ref, atol=1e-5)
        assert (got.argmax(1) == ref.argmax(1)).all()
    else:  # bfloat16 activations carry ~3 significant digits; after one epoch at lr 1e-2 the logits are large
        # and a bfloat16 logit step moves a saturated softmax visibly, so compare on average and by class
        assert np.abs(got - ref).mean() < 0.01
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.97


def test_precision_resolves_per_device():
    from fmnist_edge.errors import ConfigError
    from fmnist_edge.train.devices import dtype_policy_name

    assert dtype_policy_name("auto", gpu=False) == ("mixed_bfloat16" if cpu_has_bf16() else "float32")
    assert dtype_policy_name("auto", gpu=True) == "float32"
    assert dtype_policy_name("float16", gpu=True) == "mixed_float16"
    with pytest.raises(ConfigError, match="needs a GPU"):
        dtype_policy_name("float16", gpu=False)
    if cpu_has_bf16():
        assert dtype_policy_name("bfloat16", gpu=False) == "mixed_bfloat16"
    else:
        with pytest.raises(ConfigError, match="no bfloat16 instructions"):
            dtype_policy_name("bfloat16", gpu=False)
