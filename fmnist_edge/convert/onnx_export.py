"""ONNX from the canonical SavedModel with tf2onnx, named like the IR, accepted by onnx.checker."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_error
from ..contract import INPUT_NAME, OUTPUT_NAME
from ..errors import ConversionError, first_line, require
from .source import SIGNATURE

OPSETS = range(13, 19)  # what tf2onnx 1.17 writes and onnxruntime runs
DEFAULT_OPSET = 17
BATCH_DIM = "batch"


def export_onnx(saved_model: Path, path: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Convert the SavedModel's serving signature to `path` (what `python -m tf2onnx.convert --saved-model` does)."""
    from ..quiet import quiet, tensorflow

    tf = tensorflow()
    onnx = require("onnx")
    require("tf2onnx")
    from tf2onnx import convert as t2o_convert
    from tf2onnx import tf_loader

    try:
        with quiet():
            graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
                str(saved_model), None, None, "serve", [SIGNATURE], None, False,
                return_initialized_tables=True, return_tensors_to_rename=True,
            )
            with tf.device("/cpu:0"):
                proto, _ = t2o_convert._convert_common(  # the converter behind tf2onnx's --saved-model CLI
                    graph_def, name=str(saved_model), opset=opset, input_names=inputs, output_names=outputs,
                    tensors_to_rename=renames, initialized_tables=tables,
                )
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types
        raise ConversionError(f"tf2onnx failed on {saved_model}: {first_line(exc)}") from None
    graph = proto.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise ConversionError(f"the ONNX graph has inputs {[i.name for i in graph.input]} and outputs "
                              f"{[o.name for o in graph.output]}; expected ['{INPUT_NAME}'] and ['{OUTPUT_NAME}']")
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM  # tf2onnx names it unk__NN
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"onnx.checker rejects the converted model: {first_line(exc)}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, str(path))
    except Exception as exc:  # noqa: BLE001 - onnx.save raises its own types too
        raise write_error(path, exc) from None
    return path
