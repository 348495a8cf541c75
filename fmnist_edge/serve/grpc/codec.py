"""Translation between the gRPC messages and the protocol-independent forms: ModelInferRequest -> v2.InferRequest
(through v2.check_request, the validation REST uses too), (N, 10) probabilities -> ModelInferResponse, and the
REST protocol's JSON answers (metadata, statistics) -> their protobuf messages."""

from __future__ import annotations

import numpy as np
from google.protobuf import json_format

from ...contract import INPUT_NAME, INPUT_SHAPE, MODEL_NAME, NUM_CLASSES, OUTPUT_NAME
from .. import v2
from . import grpc_service_pb2 as pb

MISSING = "neither raw_input_contents nor contents of its datatype (fp32_contents or bytes_contents)"


def parameter(p) -> object:
    """An InferParameter's value (bool, int, str or float), None when absent or unset."""
    if p is None:
        return None
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def decode_request(request: pb.ModelInferRequest) -> v2.InferRequest:
    """A ModelInferRequest -> InferRequest; ProtocolError (400) with REST's messages if bad. Tensors come in
    raw_input_contents (one per input, in order: FP32 little-endian, BYTES 4-byte-length-prefixed) or each in its
    `contents` (fp32_contents, bytes_contents)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise v2.ProtocolError(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs; "
                               "send one per input, or none and fill each input's contents")
    inputs = []
    for i, t in enumerate(request.inputs):
        data = None
        if not raw:
            if t.datatype == "FP32" and t.contents.fp32_contents:
                data = np.asarray(t.contents.fp32_contents, np.float32)
            elif t.datatype == "BYTES" and t.contents.bytes_contents:
                data = list(t.contents.bytes_contents)
        inputs.append(v2.TensorIn(t.name, t.datatype, list(t.shape), raw[i] if raw else None, data))
    outputs = [v2.OutputIn(o.name, parameter(o.parameters.get("classification"))) for o in request.outputs]
    return v2.check_request(request.id or None, inputs, outputs or None, missing=MISSING)


def encode_response(probs: np.ndarray, version: str, request_id: str | None, classification: int | None = None,
                    class_names=()) -> pb.ModelInferResponse:
    """(N, 10) probabilities -> ModelInferResponse, the output in raw_output_contents: FP32 (N, 10), or with
    `classification` K, BYTES (N, K) "score:index:label" as REST's classification extension writes them."""
    if classification:
        labels = v2.classify(probs, classification, class_names)
        datatype, shape, raw = "BYTES", labels.shape, v2.bytes_elements(labels.ravel())
    else:
        probs = np.ascontiguousarray(probs, dtype="<f4")
        datatype, shape, raw = "FP32", probs.shape, probs.tobytes()
    out = pb.ModelInferResponse(model_name=MODEL_NAME, model_version=version, id=request_id or "",
                                raw_output_contents=[raw])
    out.outputs.add(name=OUTPUT_NAME, datatype=datatype, shape=list(shape))
    return out


def model_metadata(versions: list[str]) -> pb.ModelMetadataResponse:
    """REST's model metadata (v2.model_metadata), as its message."""
    return json_format.ParseDict(v2.model_metadata(versions), pb.ModelMetadataResponse())


def statistics(answer: dict) -> pb.ModelStatisticsResponse:
    """The statistics extension's answer (Inference.statistics, Triton's JSON), as its message."""
    return json_format.ParseDict(answer, pb.ModelStatisticsResponse())


def model_config(max_batch_delay_us: int = 0, preferred_batch_sizes: tuple[int, ...] = ()) -> pb.ModelConfigResponse:
    """Triton's model configuration of the served model (what tritonclient's get_model_config reads): batched
    (dims without the batch dimension), at most v2.MAX_BATCH per request, and the dynamic batcher when it is on."""
    config = {
        "name": MODEL_NAME, "platform": "openvino_ir", "backend": "openvino", "max_batch_size": v2.MAX_BATCH,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32", "dims": list(INPUT_SHAPE[1:])}],
        "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [NUM_CLASSES]}],
    }
    if max_batch_delay_us:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": max_batch_delay_us,
                                      "preferred_batch_size": list(preferred_batch_sizes)}
    return json_format.ParseDict({"config": config}, pb.ModelConfigResponse())
