"""The registry: every entry builds, the report networks' parameter counts match their reports, unknown names fail."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist_edge.errors import ConfigError, UnknownModelError
from fmnist_edge.train.config import make_config
from fmnist_edge.train.models import ALIASES, DEFAULT_ARCH, create_model, get_entry, list_models, macs


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_with_the_io_contract(name):
    model = create_model(name)
    assert model.input.shape == (None, 28, 28, 1)
    assert model.output.shape == (None, 10)
    probs = np.asarray(model(np.zeros((2, 28, 28, 1), np.float32), training=False))
    assert probs.shape == (2, 10) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    expected = get_entry(name).expected_params
    if expected is not None:
        assert model.count_params() == expected


def test_every_report_network_has_a_figure_to_check_and_its_old_name_still_works():
    reports = [n for n in list_models() if get_entry(n).source.startswith("report ")]
    # a figure from its report to hold ours against: its parameter count, or its test accuracy
    assert len(reports) >= 10 and all(get_entry(n).expected_params or get_entry(n).reported_accuracy for n in reports)
    for old, new in ALIASES.items():
        assert new in reports and get_entry(old) is get_entry(new)
        cfg = make_config(old)
        assert cfg.arch == new and cfg.epochs == make_config(new).epochs  # the recipe follows the name
        assert create_model(old).name == new


def test_default_is_small_for_edge_cpus():
    model = create_model(DEFAULT_ARCH)
    assert model.count_params() < 1_000_000
    assert macs(model) < 60_000_000


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_any_network_reshapes_by_width_activation_and_dropout_with_its_classifier_kept():
    plain, wide = create_model("edgenet"), create_model("edgenet", width=0.5, activation="swish", dropout=0.1)
    convs = [layer for layer in wide.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [16, 40, 40, 88, 88]  # 32, 80, 80, 176, 176 halved
    assert "ReLU" not in _kinds(wide) and _kinds(wide).count("Activation") == _kinds(plain).count("ReLU") + 1  # + softmax
    assert all(layer.rate == 0.1 for layer in wide.layers if type(layer).__name__ == "Dropout")
    assert wide.layers[-2].units == 10 and wide.layers[-2].get_config()["activation"] == "linear"
    assert wide.count_params() < plain.count_params() / 3 and macs(wide) < macs(plain) / 3
    probs = np.asarray(wide(np.zeros((2, 28, 28, 1), np.float32), training=False))
    assert probs.shape == (2, 10) and np.allclose(probs.sum(1), 1.0, atol=1e-5)

    # inline activations are replaced, a linear hidden layer stays linear, a network without dropout gets one
    leaky = create_model("cnn2_leaky", activation="tanh", dropout=0.2)
    dense = [layer for layer in leaky.layers if type(layer).__name__ == "Dense"]
    assert [d.get_config()["activation"] for d in dense] == ["linear", "linear"]  # the report's linear dense 128
    assert "LeakyReLU" not in _kinds(leaky) and _kinds(leaky)[-3:] == ["Dropout", "Dense", "Activation"]
    mlp = create_model("mlp_tanh", width=2.0, activation="relu")
    assert [d.units for d in mlp.layers if type(d).__name__ == "Dense"] == [100, 100, 10]
    assert [d.get_config()["activation"] for d in mlp.layers if type(d).__name__ == "Dense"] == ["relu", "relu", "linear"]
    assert "Dropout" not in _kinds(mlp)  # no dropout asked for: none added
    assert create_model("edgenet", width=1.0).count_params() == plain.count_params()


def test_unknown_arch_lists_known_names():
    with pytest.raises(UnknownModelError, match="known: .*edgenet.*tiny"):
        create_model("resnet9000")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": -1}, "epochs must be >= 1"),
        ({"batch_size": 0}, "batch size"),
        ({"learning_rate": 0.0}, "learning rate"),
        ({"val_fraction": 0.9}, "validation fraction"),
        ({"limit": 5}, "limit must be >= 100"),
        ({"device": "tpu"}, "device must be one of"),
        ({"width": 0.0}, "width multiplier must be in"),
        ({"activation": "softmax"}, "activation must be one of"),
        ({"dropout": 1.0}, "dropout rate must be in"),
        ({"colour": "red"}, "unknown training option"),
    ],
)
def test_config_rejects_bad_values_up_front(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("tiny", **overrides)


def test_config_merges_recipe_quick_and_overrides():
    from fmnist_edge.train.config import TrainConfig

    assert make_config("edgenet").epochs == TrainConfig().epochs == 40  # the default recipe the README reports
    assert make_config("edgenet", quick=True).epochs == 2
    assert make_config("edgenet", quick=True, epochs=3).epochs == 3
    seed = make_config("cnn4_bn")
    assert (seed.batch_size, seed.optimizer, seed.augment) == (80, "adam", False)


def test_picking_another_optimizer_brings_its_learning_rate_and_weight_decay():
    sgd = make_config("edgenet", optimizer="sgd")
    assert (sgd.optimizer, sgd.learning_rate, sgd.weight_decay) == ("sgd", 0.1, 5e-4)
    assert make_config("edgenet", optimizer="sgd", learning_rate=0.05).learning_rate == 0.05  # explicit wins
    seed = make_config("cnn4_bn", optimizer="adamw")
    assert (seed.learning_rate, seed.weight_decay, seed.batch_size) == (3e-3, 5e-2, 80)  # rest of the recipe kept
    assert make_config("cnn4_bn", optimizer="adam").learning_rate == 1e-3  # the recipe's own optimizer: as is
    with pytest.raises(ConfigError, match="optimizer must be adamw, sgd or adam"):
        make_config("edgenet", optimizer="rmsprop")


def test_missing_extra_names_the_pip_line():
    from fmnist_edge.errors import MissingDependencyError, require

    with pytest.raises(MissingDependencyError, match=r'pip install "fmnist-edge\[train\]"'):
        require("surely_not_installed_module_xyz")
