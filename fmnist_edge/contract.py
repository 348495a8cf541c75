"""The names every layer agrees on for a served model: its tensors and its name in a model repository (standard library only)."""

INPUT_NAME = "image"  # float32 (N, 28, 28, 1) in [0, 1], NHWC
OUTPUT_NAME = "probabilities"  # float32 (N, 10), softmax
MODEL_NAME = "fmnist"  # the model's name in an OpenVINO Model Server / KServe repository: <root>/fmnist/<version>/
FIRST_VERSION = "1"
