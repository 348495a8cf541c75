"""The one registry of Keras architectures: `@register` an entry, `create_model(name)` builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAME
from ..errors import UnknownModelError
from ..quiet import keras as _keras

DEFAULT_ARCH = "edgenet"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable  # (keras) -> list of layers after the input
    source: str
    summary: str
    expected_params: int | None = None  # the count the source report prints
    reported_accuracy: float | None = None  # the test accuracy the source report states for this network
    report: str | None = None  # which report, as a reader finds it
    compared: bool = True  # in `fmnist-edge compare`'s default set (not the test model, not a study's variants)


_REGISTRY: dict[str, ModelEntry] = {}
# The names the report networks had before they were named for what they are; still accepted everywhere.
ALIASES = {
    "seed000_cnn": "cnn4_bn",
    "seed001_cnn": "cnn1",
    "seed001_cnn3": "cnn3_wide",
    "seed001_mlp": "mlp_tanh",
    "seed001_mlp_sigmoid": "mlp_sigmoid",
    "seed001_mlp_relu": "mlp_relu",
    "seed001_mlp_leaky_relu": "mlp_leaky_relu",
    "seed003_baseline": "cnn2",
    "seed003_cnn": "cnn3_dropout",
    "seed004_leaky": "cnn2_leaky",
}


def register(name: str, source: str, summary: str, expected_params: int | None = None,
             reported_accuracy: float | None = None, report: str | None = None, compared: bool = True):
    def deco(fn):
        _REGISTRY[name] = ModelEntry(name, fn, source, summary, expected_params, reported_accuracy, report, compared)
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry's entry for `name` (or one of its old names, ALIASES)."""
    try:
        return _REGISTRY[ALIASES.get(name, name)]
    except KeyError:
        raise UnknownModelError(f"unknown architecture {name!r}; known: {', '.join(list_models())}") from None


def create_model(name: str = DEFAULT_ARCH, fused_bn: bool = False, width: float = 1.0, activation: str | None = None,
                 dropout: float | None = None):
    """Build the named architecture as a Keras model: input `image` (N, 28, 28, 1) float32 in [0, 1],
    output `probabilities` (N, 10) softmax. `width`, `activation`, `dropout`: the network reshaped (`reshape`).

    `fused_bn=True` builds the training twin: the same layers and weights, with batch norm on
    TensorFlow's fused kernel (see fastbn.py); its weights load into the plain model unchanged.
    """
    entry = get_entry(name)
    keras = _keras()
    inputs = keras.Input(shape=INPUT_SHAPE[1:], name=INPUT_NAME, dtype="float32")
    x = inputs
    layers = reshape(keras, entry.build(keras), width=width, activation=activation, dropout=dropout)
    if fused_bn:
        from .fastbn import swap_in

        layers = [swap_in(layer) for layer in layers]
    for layer in layers:
        x = layer(x)
    # The softmax is its own float32 layer so that mixed precision never returns float16 probabilities.
    outputs = keras.layers.Activation("softmax", dtype="float32", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=entry.name)


# What `reshape` can put in a network's hidden layers (Keras' names; leaky_relu has slope 0.2, swish is x * sigmoid(x)).
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "swish", "tanh", "sigmoid")


def reshape(keras, layers: list, width: float = 1.0, activation: str | None = None, dropout: float | None = None) -> list:
    """Any registered network's layers, reshaped the same way (a sweep's width, activation and dropout):
    `width` scales the filters of every convolution and the units of every hidden dense layer (rounded, at least 1);
    `activation` replaces every hidden activation, inline or a layer of its own; `dropout` sets the rate of every
    dropout layer, and a network without one gets one before its classifier. The classifier (the last dense layer,
    10 units, linear) is never changed. Defaults: the network as registered."""
    if width == 1.0 and activation is None and dropout is None:
        return layers
    if activation is not None and activation not in ACTIVATIONS:
        raise UnknownModelError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    L = keras.layers
    head = max(i for i, layer in enumerate(layers) if isinstance(layer, L.Dense))
    out = []
    for i, layer in enumerate(layers):
        config = layer.get_config()
        if isinstance(layer, (L.Conv2D, L.Dense)) and i != head:
            size = "filters" if isinstance(layer, L.Conv2D) else "units"
            config[size] = max(1, round(config[size] * width))
            if activation is not None and config.get("activation") not in (None, "linear"):
                config["activation"] = activation
            layer = type(layer).from_config(config)
        elif activation is not None and isinstance(layer, (L.ReLU, L.LeakyReLU, L.ELU, L.Activation)):
            layer = L.Activation(activation, name=config["name"])
        elif dropout is not None and isinstance(layer, L.Dropout):
            layer = L.Dropout.from_config({**config, "rate": dropout})
        out.append(layer)
    if dropout and not any(isinstance(layer, L.Dropout) for layer in out):
        out.insert(head, L.Dropout(dropout))
    return out


def _conv_bn(keras, filters, kernel=3, **kw):
    L = keras.layers
    return [L.Conv2D(filters, kernel, padding="same", use_bias=False, **kw), L.BatchNormalization(), L.ReLU()]


def _vgg5(keras, widths: tuple[int, int, int], head: str):
    """conv c1 @28x28 | pool | conv c2, conv c2 @14x14 | pool | conv c3, conv c3 @7x7 | head | dropout | dense 10."""
    L = keras.layers
    c1, c2, c3 = widths
    return [
        *_conv_bn(keras, c1),
        L.MaxPooling2D(2),  # 14x14
        *_conv_bn(keras, c2),
        *_conv_bn(keras, c2),
        L.MaxPooling2D(2),  # 7x7
        *_conv_bn(keras, c3),
        *_conv_bn(keras, c3),
        L.Flatten() if head == "flatten" else L.GlobalAveragePooling2D(),
        L.Dropout(0.3),
        L.Dense(10),
    ]


@register(
    "edgenet",
    source="fmnist-edge (ours)",
    summary="5 conv (32 / 80-80 / 176-176) + BN + ReLU, 2 max-pools, flatten 7x7, dropout, dense 10",
)
def edgenet(keras):
    """Our default: a VGG-style stack sized for batch-1 CPU inference, ~0.57 M parameters, ~36 M multiply-adds.

    One conv at full resolution (a second one there costs far more training time than it buys), then the
    widths where they are cheap: on oneDNN with bfloat16 the cost of a training step goes with the number of
    layers more than with their width (the probes are in docs/design.md, "How edgenet got there"). The head
    keeps the 7x7 layout (flatten, 86 k weights) instead of averaging it
    away: where a sleeve or a collar is matters for shirt vs T-shirt vs pullover. Batch norm folds into the
    convolutions at conversion.
    """
    return _vgg5(keras, (32, 80, 176), head="flatten")


@register(
    "edgenet_small",
    source="fmnist-edge (ours): the first default",
    summary="5 conv (32 / 64-64 / 128-128) + BN + ReLU, 2 max-pools, global average pool, dropout, dense 10",
)
def edgenet_small(keras):
    """edgenet's predecessor as the default, for the slowest CPUs: ~0.28 M parameters, ~22 M multiply-adds,
    global average pooling before the classifier."""
    return _vgg5(keras, (32, 64, 128), head="average")


@register("tiny", source="fmnist-edge (tests)", summary="1 conv 8 + max-pool + dense 10, for the test suite", compared=False)
def tiny(keras):
    """A few thousand parameters: trains in seconds, converts in seconds."""
    L = keras.layers
    return [L.Conv2D(8, 3, strides=2, padding="same", activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dense(10)]


@register(
    "cnn4_bn",
    source="report 000 (Shruthi M, 2021): 4-conv BN/dropout/L2 net, 93.40% test",
    summary="conv32-conv64-pool-conv64(5x5,L2)-pool-conv128(L2), BN+dropout each, dense 512-128-10",
    expected_params=3_477_578,
    reported_accuracy=0.9340,
    report="report 000: Shruthi M, Deep Learning CNN project (2021), 'Accuracy of the model: 0.9340'",
)
def cnn4_bn(keras):
    """Seed 000's network exactly as its code listing builds it: BN after each ReLU conv/dense and
    dropouts 0.3/0.4/0.5/0.25/0.5/0.5, L2(0.01) on the 3rd and 4th conv."""
    L, l2 = keras.layers, keras.regularizers.l2
    return [
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.BatchNormalization(),
        L.Dropout(0.3),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.BatchNormalization(),
        L.Dropout(0.4),
        L.MaxPooling2D(2),
        L.Conv2D(64, 5, padding="same", activation="relu", kernel_regularizer=l2(0.01)),
        L.BatchNormalization(),
        L.Dropout(0.5),
        L.MaxPooling2D(2),
        L.Conv2D(128, 3, padding="same", activation="relu", kernel_regularizer=l2(0.01)),
        L.BatchNormalization(),
        L.Dropout(0.25),
        L.Flatten(),
        L.Dense(512, activation="relu"),
        L.BatchNormalization(),
        L.Dropout(0.5),
        L.Dense(128, activation="relu"),
        L.BatchNormalization(),
        L.Dropout(0.5),
        L.Dense(10),
    ]


@register(
    "cnn1",
    source="report 001: one-conv CNN, 89.02% test",
    summary="conv32 (valid) + max-pool + dense 128 + dense 10",
    expected_params=693_962,
    reported_accuracy=0.8902,
    report="report 001: Fashion-MNIST classification project, first CNN, test accuracy 0.8902",
)
def cnn1(keras):
    L = keras.layers
    return [L.Conv2D(32, 3, padding="valid", activation="relu"), L.MaxPooling2D(2), L.Flatten(),
            L.Dense(128, activation="relu"), L.Dense(10)]


@register(
    "cnn3_wide",
    source="report 001: its third CNN, 91.78% test",
    summary="conv64 (valid) + pool + conv128 + pool + conv64 + dense 128-256-256-128 with dropout + dense 10",
    reported_accuracy=0.9178,
    report="report 001: Fashion-MNIST classification project, CNN model 3 (50 epochs), test accuracy 0.9178",
)
def cnn3_wide(keras):
    """The report feeds its CNNs 3-channel copies of the gray images; ours takes the one channel (576 fewer
    weights in the first conv, nothing else differs). Dropout 0.25/0.5/0.25/0.10 as listed."""
    L = keras.layers
    return [
        L.Conv2D(64, 3, padding="valid", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(128, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dropout(0.25),
        L.Dense(256, activation="relu"),
        L.Dropout(0.5),
        L.Dense(256, activation="relu"),
        L.Dropout(0.25),
        L.Dense(128, activation="relu"),
        L.Dropout(0.10),
        L.Dense(10),
    ]


@register(
    "mlp_tanh",
    source="report 001: MLP 784-50-50-10 with tanh (its from-scratch numpy net, rebuilt in Keras)",
    summary="flatten + dense 50 tanh + dense 50 tanh + dense 10",
    expected_params=42_310,
)
def mlp_tanh(keras):
    L = keras.layers
    return [L.Flatten(), L.Dense(50, activation="tanh"), L.Dense(50, activation="tanh"), L.Dense(10)]


MLP_ACTIVATIONS = ("tanh", "sigmoid", "relu", "leaky_relu")  # report 001's activation study


def _mlp_with(activation: str):
    def build(keras):
        L = keras.layers

        def act():
            return L.LeakyReLU(negative_slope=0.01) if activation == "leaky_relu" else L.Activation(activation)

        return [L.Flatten(), L.Dense(50), act(), L.Dense(50), act(), L.Dense(10)]

    return build


for _act in MLP_ACTIVATIONS[1:]:
    register(f"mlp_{_act}", source=f"report 001's activation study: its MLP with {_act} hidden units",
             summary=f"flatten + dense 50 {_act} + dense 50 {_act} + dense 10", expected_params=42_310,
             compared=False)(_mlp_with(_act))


@register(
    "cnn2",
    source="report 003: unregularised 2-conv baseline, 91.14% test (overfits)",
    summary="conv32-pool-conv64-pool (valid) + dense 256-512-10",
    expected_params=565_386,
    reported_accuracy=0.9114,
    report="report 003: CodeRed, Conquering Fashion MNIST with CNNs (2023), baseline, 91.14% test",
)
def cnn2(keras):
    L = keras.layers
    return [
        L.Conv2D(32, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(256, activation="relu"),
        L.Dense(512, activation="relu"),
        L.Dense(10),
    ]


@register(
    "cnn3_dropout",
    source="report 003: 3-conv dropout net, 91.68% test",
    summary="conv32-pool-drop-conv64-pool-drop-conv128 (valid) + dense 256-drop-256-drop-512-10",
    expected_params=590_346,
    reported_accuracy=0.9168,
    report="report 003: CodeRed, Conquering Fashion MNIST with CNNs (2023), final model, 91.68% test",
)
def cnn3_dropout(keras):
    """The report prints the layer order but not the dropout rates; 0.25 is our choice (the usual
    Keras-tutorial value the report's wording follows). Rates do not change the parameter count."""
    L = keras.layers
    return [
        L.Conv2D(32, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Dropout(0.25),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Dropout(0.25),
        L.Conv2D(128, 3, activation="relu"),
        L.Flatten(),
        L.Dense(256, activation="relu"),
        L.Dropout(0.25),
        L.Dense(256, activation="relu"),
        L.Dropout(0.25),
        L.Dense(512, activation="relu"),
        L.Dense(10),
    ]


@register(
    "cnn2_leaky",
    source="report 004: LeakyReLU 2-conv net, 90.02% test",
    summary="conv32 (same) + LeakyReLU + pool + conv128 + LeakyReLU + pool + dense 128 + dense 10",
    expected_params=841_546,
    reported_accuracy=0.9002,
    report="report 004: Keras 2-layer CNN with LeakyReLU, 90.02% test",
)
def cnn2_leaky(keras):
    """The report's prose says 'conv -> max-pool -> LeakyReLU' and gives the 2nd conv a softmax, but its
    printed summary shows LeakyReLU directly after each conv at full resolution; we follow the summary
    (linear conv -> LeakyReLU(0.1) -> max-pool) and a linear dense 128 as the prose says."""
    L = keras.layers
    return [
        L.Conv2D(32, 3, padding="same"),
        L.LeakyReLU(negative_slope=0.1),
        L.MaxPooling2D(2),
        L.Conv2D(128, 3, padding="same"),
        L.LeakyReLU(negative_slope=0.1),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(128),
        L.Dense(10),
    ]


def catalog() -> list[dict]:
    """Every registered architecture, built once: {"name", "params", "macs", "source", "summary"}."""
    rows = []
    for name in list_models():
        model, entry = create_model(name), get_entry(name)
        rows.append({"name": name, "params": int(model.count_params()), "macs": macs(model), "source": entry.source,
                     "summary": entry.summary})
    return rows


def macs(model) -> int:
    """Multiply-adds per image of Conv2D and Dense layers (the ones that matter for CPU cost)."""
    keras = _keras()
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k_h, k_w, c_in, _ = layer.kernel.shape
            total += h * w * c_out * k_h * k_w * c_in
        elif isinstance(layer, keras.layers.Dense):
            c_in, c_out = layer.kernel.shape
            total += c_in * c_out
    return int(total)
