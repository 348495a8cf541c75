"""SavedModel -> LiteRT (TensorFlow Lite) flatbuffer, float32: what a LiteRT interpreter runs without TensorFlow."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_error
from ..errors import ConversionError, first_line
from ..quiet import quiet, tensorflow


def export_tflite(saved_model: Path, path: Path) -> Path:
    """Convert the canonical SavedModel (serving signature `image` -> `probabilities`) to `path`."""
    tf = tensorflow()
    try:
        with quiet():
            flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ConversionError(f"the TFLite converter failed on {saved_model}: {first_line(exc)}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(flatbuffer)
    except Exception as exc:  # noqa: BLE001
        raise write_error(path, exc) from None
    return path
