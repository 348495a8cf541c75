"""SavedModel -> LiteRT (TensorFlow Lite) flatbuffer at fp32, fp16 weights or full-integer int8, by TF's converter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import write_error
from ..errors import ConversionError, first_line
from ..quiet import quiet, tensorflow

TFLITE_PRECISIONS = ("fp32", "fp16", "int8")


def export_tflite(saved_model: Path, path: Path, precision: str = "fp32", calib: np.ndarray | None = None) -> Path:
    """Convert the canonical SavedModel (serving signature `image` -> `probabilities`) to `path`.

    fp16: weights stored as float16 (LiteRT's float16 post-training quantization). int8: full-integer
    quantization, int8 weights and activations calibrated on `calib` ((N, 28, 28, 1) float32) as the
    representative dataset, every op int8 (TFLITE_BUILTINS_INT8); the input and output stay float32, so the
    model is fed what the fp32 one is."""
    if precision not in TFLITE_PRECISIONS:
        raise ConversionError(f"LiteRT models are made at {', '.join(TFLITE_PRECISIONS)}, not {precision}")
    if precision == "int8" and (calib is None or not len(calib)):
        raise ConversionError("LiteRT int8 needs calibration images")
    tf = tensorflow()
    try:
        with quiet():
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            if precision == "fp16":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            elif precision == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ([np.asarray(x[None], np.float32)] for x in calib)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            flatbuffer = converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ConversionError(f"the TFLite converter failed on {saved_model} ({precision}): {first_line(exc)}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(flatbuffer)
    except Exception as exc:  # noqa: BLE001
        raise write_error(path, exc) from None
    return path
