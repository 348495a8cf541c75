"""Conversion of a trained model to OpenVINO IR (fp32, fp16, int8) and ONNX, each checked against TensorFlow."""

from .pipeline import DEFAULT_FORMATS, DEFAULT_PRECISIONS, FORMATS, PRECISIONS, convert

__all__ = ["convert", "FORMATS", "DEFAULT_FORMATS", "PRECISIONS", "DEFAULT_PRECISIONS"]
