"""Numerical parity of each artifact, run in its own runtime, with the TensorFlow reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME, OUTPUT_NAME
from ..errors import require

# fp32 IR and ONNX must compute what TensorFlow computes.
PARITY_MAX_ABS_DIFF = 1e-4
PARITY_MIN_AGREEMENT = 0.999
BATCH = 250


def compare(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 agreement, max |diff| of the probabilities, and the accuracy of each; all (N, 10) float32."""
    ref_top, top = reference.argmax(axis=1), probs.argmax(axis=1)
    return {
        "n": int(len(labels)),
        "agreement": float((ref_top == top).mean()),
        "max_abs_diff": float(np.abs(reference - probs).max()),
        "accuracy": float((top == labels).mean()),
        "reference_accuracy": float((ref_top == labels).mean()),
    }


def verdict(precision: str, fmt: str, check: dict, max_drop: float) -> tuple[str, str | None]:
    """(status, reason): fp32 must be at parity, int8 may lose at most `max_drop` accuracy, the rest is reported."""
    if precision == "fp32":
        if check["max_abs_diff"] > PARITY_MAX_ABS_DIFF or check["agreement"] < PARITY_MIN_AGREEMENT:
            return "check_failed", (
                f"{fmt} fp32 differs from TensorFlow: max abs diff {check['max_abs_diff']:.2e} (limit {PARITY_MAX_ABS_DIFF:.0e}), "
                f"agreement {check['agreement']:.4f} (limit {PARITY_MIN_AGREEMENT})"
            )
    if precision == "int8":
        drop = check["reference_accuracy"] - check["accuracy"]
        if drop > max_drop:
            return "check_failed", (
                f"int8 accuracy {check['accuracy']:.4f} is {drop:.4f} below TensorFlow's {check['reference_accuracy']:.4f} "
                f"(--max-drop {max_drop}); try a larger --calib-size or NNCF's accuracy-control quantization"
            )
    return "ok", None


def openvino_probs(xml: Path, images: np.ndarray, hint: str) -> tuple[np.ndarray, str]:
    """Compile the IR on CPU with INFERENCE_PRECISION_HINT `hint` ('f32' or 'bf16'); (probabilities, precision used).

    The hint matters: on CPUs with AVX512_BF16 or AMX the plugin computes in bf16 unless told f32."""
    import openvino as ov
    import openvino.properties.hint as hints

    from .openvino_ir import core

    want = {"f32": ov.Type.f32, "bf16": ov.Type.bf16}[hint]
    compiled = core().compile_model(str(xml), "CPU", {hints.inference_precision: want})
    used = compiled.get_property(hints.inference_precision)
    used = {ov.Type.f32: "f32", ov.Type.bf16: "bf16"}.get(used, str(used))
    request = compiled.create_infer_request()
    out = [request.infer({INPUT_NAME: images[i : i + BATCH]})[OUTPUT_NAME].copy() for i in range(0, len(images), BATCH)]
    return np.concatenate(out).astype(np.float32), used


def onnx_probs(path: Path, images: np.ndarray) -> np.ndarray:
    """Run the ONNX model with onnxruntime's CPU provider."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = [session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + BATCH]})[0] for i in range(0, len(images), BATCH)]
    return np.concatenate(out).astype(np.float32)


def tflite_probs(path: Path, images: np.ndarray) -> np.ndarray:
    """Run the .tflite model on LiteRT's interpreter (ai-edge-litert), as a kiosk without TensorFlow would."""
    interp = require("ai_edge_litert.interpreter").Interpreter(model_path=str(path))
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    probs = []
    for i in range(0, len(images), BATCH):
        x = np.ascontiguousarray(images[i : i + BATCH], np.float32)
        interp.resize_tensor_input(inp, list(x.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp, x)
        interp.invoke()
        probs.append(interp.get_tensor(out).copy())
    return np.concatenate(probs).astype(np.float32)
