"""OpenVINO IR from the canonical SavedModel: tensors named `image`/`probabilities`, NHWC, dynamic batch."""

from __future__ import annotations

from pathlib import Path

from ..artifact import IR_XML, ir_pair
from ..atomic import write_error
from ..contract import INPUT_NAME, OUTPUT_NAME
from ..errors import ConversionError, first_line

_core = None


def core():
    """The one openvino.Core of the converter's checks."""
    global _core
    if _core is None:
        import openvino as ov

        _core = ov.Core()
    return _core


def convert_ir(saved_model: Path):
    """SavedModel folder -> ov.Model with input `image` [?,28,28,1] and output `probabilities` [?,10]."""
    import openvino as ov

    from ..quiet import quiet

    try:
        with quiet():
            model = ov.convert_model(str(saved_model))
    except Exception as exc:  # noqa: BLE001 - the frontends raise their own types
        raise ConversionError(f"openvino.convert_model failed on {saved_model}: {first_line(exc)}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(f"the IR has {len(model.inputs)} inputs and {len(model.outputs)} outputs; expected one of each")
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    in_shape, out_shape = model.inputs[0].get_partial_shape(), model.outputs[0].get_partial_shape()
    if str(in_shape) != "[?,28,28,1]" or str(out_shape) != "[?,10]":
        raise ConversionError(f"the IR has input {in_shape} and output {out_shape}; expected [?,28,28,1] and [?,10]")
    return model


def save_ir(model, folder: Path, compress_to_fp16: bool) -> list[Path]:
    """Write the IR pair (xml + bin) into `folder`; FP32 weights unless `compress_to_fp16`."""
    import openvino as ov

    try:
        folder.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(folder / IR_XML), compress_to_fp16=compress_to_fp16)
    except Exception as exc:  # noqa: BLE001 - OpenVINO reports a full disk as a RuntimeError
        raise write_error(folder / IR_XML, exc) from None
    return ir_pair(folder)
