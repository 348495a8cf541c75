"""The facts train, convert, the runtime, the server, the benchmarks and the CLI agree on (standard library only).

Each fact is written here once; every layer imports it from here, so nothing has to keep a copy in step.
"""

from __future__ import annotations

# The model: a dataset-form image (uint8 28x28, bright garment on black) as pixel / 255 -> class probabilities.
IMAGE_SIZE = 28  # px, square
CHANNELS = 1
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE)  # one dataset-form image, uint8
INPUT_SHAPE = (None, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)  # float32 in [0, 1], NHWC; None: any batch
INPUT_SCALE = 1.0 / 255.0  # uint8 pixel -> model input
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"  # float32 (N, NUM_CLASSES), softmax
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
NUM_CLASSES = len(CLASS_NAMES)


def input_shape_text(batch: str | int = "N") -> str:
    """'[N, 28, 28, 1]': the input shape as error messages and protocol metadata print it."""
    return "[" + ", ".join(str(batch if d is None else d) for d in INPUT_SHAPE) + "]"


def tensor_specs() -> dict:
    """{"input", "output"}: the model's tensors as metadata.json and manifest.json record them (-1: any batch)."""
    shape = [-1 if d is None else d for d in INPUT_SHAPE]
    return {
        "input": {"name": INPUT_NAME, "shape": shape, "dtype": "float32", "layout": "NHWC", "range": [0, 1],
                  "preprocessing": "pixel / 255 of a dataset-form image (uint8 28x28, bright garment on black); a photo "
                                   "becomes one with fmnist_edge.runtime.to_dataset_form"},
        "output": {"name": OUTPUT_NAME, "shape": [-1, NUM_CLASSES], "dtype": "float32", "meaning": "softmax probabilities"},
    }


# What `convert` writes and the runtime loads.
FORMATS = ("openvino", "onnx", "tflite")  # tflite: LiteRT's flatbuffer
DEFAULT_FORMATS = ("openvino", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # OpenVINO precisions a model can be loaded at
IR_OF = {"fp32": "fp32", "bf16": "fp32", "fp16": "fp16", "int8": "int8"}  # bf16 is the fp32 IR computed in bf16
IR_PRECISIONS = tuple(p for p in PRECISIONS if IR_OF[p] == p)  # those with files of their own: fp32, fp16, int8
DEFAULT_PRECISIONS = IR_PRECISIONS
POLARITIES = ("auto", "photo", "dataset")  # photo: dark garment on light ground; dataset: bright garment on black
MANIFEST_SCHEMA = 1  # manifest.json's schema_version, written by `convert`, read by the runtime
BENCH_SCHEMA = 1  # bench.json's schema_version

# A model repository, as OpenVINO Model Server and KServe lay one out: <root>/<MODEL_NAME>/<version>/.
MODEL_NAME = "fmnist"
FIRST_VERSION = "1"

# The pip line that installs what a missing optional import needs.
INSTALL_TRAIN = 'pip install "fmnist-edge[train]"'
INSTALL_KIOSK = 'pip install "fmnist-edge[kiosk]"'
INSTALL_FLEET = 'pip install "fmnist-edge[fleet]"'
