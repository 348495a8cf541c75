"""onnxruntime's own int8 model: static QDQ quantization of the fp32 ONNX model, per channel, as its docs do it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME
from ..errors import ConversionError, first_line, require

CALIB_BATCH = 32  # images per calibration call (MinMax ranges do not depend on it)


def quantize_onnx(fp32: Path, path: Path, calib: np.ndarray) -> Path:
    """fp32 ONNX file + (N, 28, 28, 1) float32 calibration images -> int8 QDQ ONNX at `path`.

    onnxruntime's documented recipe: `quant_pre_process` (shape inference, graph optimisation), then
    `quantize_static` with QDQ format, per-channel int8 weights, uint8 activations (U8S8: the pair its x86
    kernels run fast; int8 activations took 3x longer on an AVX-512 VNNI host), MinMax calibration, and
    `reduce_range` (7-bit weights), which its docs advise for CPUs without VNNI: there its int8 kernels (u8 x s8
    pairs summed in 16 bits) saturate with full-range per-channel weights (the measurements: docs/results.md)."""
    require("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(range(0, len(calib), CALIB_BATCH))

        def get_next(self):
            i = next(self._batches, None)
            return None if i is None else {INPUT_NAME: np.ascontiguousarray(calib[i : i + CALIB_BATCH], np.float32)}

    from ..quiet import quiet

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp, quiet():
            pre = Path(tmp) / "preprocessed.onnx"
            quant_pre_process(str(fp32), str(pre))
            quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True)
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
        raise ConversionError(f"onnxruntime's static quantization failed on {fp32}: {first_line(exc)}") from None
    return path
