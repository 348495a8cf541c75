"""The Open Inference Protocol (KServe v2 REST) for one served model: request decoding and response encoding.

What `fmnist-edge serve` answers under /v2, the protocol OpenVINO Model Server, Triton and KServe speak, so a
client moves between a kiosk and a serving engine by changing its URL. The model is named `fmnist`, with the
tensors of the repository `convert` writes: input `image` FP32 [-1, 28, 28, 1] (pixel / 255), output
`probabilities` FP32 [-1, 10]. Besides the FP32 tensor, `image` takes BYTES: encoded photos (JPEG, PNG, WebP,
BMP), one per batch element, run through the runtime's photo preprocessing, as OVMS accepts them.

Tensors travel as JSON (`data`, row-major) or in the binary tensor data extension: the request's JSON header
is the first `Inference-Header-Content-Length` bytes of the body and each input with a `binary_data_size`
parameter follows in order (BYTES elements each prefixed with their length as 4-byte little-endian); outputs
asked for with `binary_data: true` (or all, with the request parameter `binary_data_output: true`, the
official clients' default) come back the same way. In JSON, a BYTES element is a base64 string or
{"b64": "..."}. Errors are `{"error": "..."}`: 400 for a bad request, 404 for an unknown model or version.

`check_request` is the one validation of a decoded infer request: the gRPC service (serve/grpc/) hands it the
tensors of a ModelInferRequest, so both protocols accept and refuse the same requests with the same messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..contract import INPUT_NAME, INPUT_SHAPE, MODEL_NAME, NUM_CLASSES, OUTPUT_NAME, input_shape_text
from .status import HTTPError

MAX_BATCH = 64  # batch elements per request
EXTENSIONS = ("binary_tensor_data", "classification", "statistics", "model_repository")
HEADER_LENGTH = "inference-header-content-length"
DATATYPES = {"FP32": np.float32}


class ProtocolError(HTTPError):
    """A request the protocol refuses: `status` (400 or 404) and a one-line message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(status, message)


class ModelUnloaded(ProtocolError):
    """A request for the model after an operator unloaded it (400 over REST, as Triton answers; UNAVAILABLE over gRPC)."""

    def __init__(self):
        super().__init__(f"model {MODEL_NAME!r} is unloaded; an operator's load request "
                         f"(POST /v2/repository/models/{MODEL_NAME}/load) serves it again")


@dataclass
class InferRequest:
    """A decoded infer request: the FP32 batch or the encoded photos, and how to answer."""

    id: str | None
    tensor: np.ndarray | None = None  # float32 (N, 28, 28, 1)
    photos: list[bytes] = field(default_factory=list)
    binary_output: bool = False
    classification: int | None = None  # the classification extension: the top K as "score:index:label" strings

    @property
    def batch(self) -> int:
        return len(self.photos) if self.tensor is None else int(self.tensor.shape[0])


def model_metadata(versions: list[str], platform: str = "openvino_ir") -> dict:
    return {
        "name": MODEL_NAME,
        "versions": list(versions),
        "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *INPUT_SHAPE[1:]]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, NUM_CLASSES]}],
    }


def check_model(name: str) -> None:
    """404 unless `name` is the model being served (its versions are the repository's business)."""
    if name != MODEL_NAME:
        raise ProtocolError(f"unknown model {name!r}; this server serves {MODEL_NAME!r}", 404)


def load_version(parameters: dict) -> str | None:
    """The version a repository load request pins (None: unpin, back to the version policy's newest), from its
    parameters: `version` (a number or its text), or Triton's `config` (model configuration JSON, the way
    tritonclient's load_model(config=...) sends it) with `version_policy` {"specific": {"versions": [N]}} or
    {"latest": {"num_versions": 1}}. ProtocolError (400) for anything else."""
    unknown = sorted(set(parameters) - {"version", "config"})
    if unknown:
        raise ProtocolError(f"unknown load parameter {unknown[0]!r}; give `version` (the version to pin) or none")
    if "config" in parameters:
        if "version" in parameters:
            raise ProtocolError("give the version to pin as `version` or in `config`, not both")
        return _config_version(parameters["config"])
    version = parameters.get("version")
    if version is None or version == "":
        return None
    if isinstance(version, bool) or not str(version).isdigit():
        raise ProtocolError(f"the load parameter `version` must be a version number, got {version!r}")
    return str(int(version))


def _config_version(config) -> str | None:
    bad = ProtocolError('a load request\'s `config` may hold only a version_policy: {"specific": {"versions": [N]}} '
                        'pins version N, {"latest": {"num_versions": 1}} unpins')
    try:
        cfg = json.loads(config) if isinstance(config, str | bytes) else None
    except ValueError:
        cfg = None
    if not isinstance(cfg, dict) or set(cfg) - {"name", "version_policy"} or cfg.get("name", MODEL_NAME) != MODEL_NAME:
        raise bad
    policy = cfg.get("version_policy")
    if policy in (None, {"latest": {"num_versions": 1}}, {"latest": {}}):
        return None
    versions = policy.get("specific", {}).get("versions") if isinstance(policy, dict) and len(policy) == 1 else None
    if (not isinstance(versions, list) or len(versions) != 1 or isinstance(versions[0], bool)
            or not str(versions[0]).isdigit()):
        raise bad
    return str(int(versions[0]))


@dataclass
class TensorIn:
    """One input tensor as a protocol carried it, not yet checked: name, datatype and shape as sent, and the
    elements either as raw bytes (REST's binary tensor extension, gRPC's raw_input_contents: FP32 little-endian,
    BYTES length-prefixed) or as typed `data` (REST's JSON `data`, gRPC's `contents`): FP32 numbers, or a list of
    BYTES elements that `element(item, index)` turns into bytes (REST: base64 text; gRPC: bytes already)."""

    name: object
    datatype: object
    shape: object
    raw: bytes | None = None
    data: object = None
    element: Callable[[object, int], bytes] | None = None


@dataclass
class OutputIn:
    """One requested output as a protocol carried it: its name and its `classification` parameter (K or None)."""

    name: object
    classification: object = None
    binary: bool = False  # REST's binary_data parameter


def check_request(rid: str | None, inputs: list[TensorIn], outputs: list[OutputIn] | None = None, *,
                  binary_output: bool = False, missing: str = "no data") -> InferRequest:
    """The one validation of an infer request, whichever protocol brought it -> InferRequest; ProtocolError (400)
    with the same message for REST and gRPC. `missing`: how the protocol says that an input carried no elements."""
    if len(inputs) != 1:
        raise ProtocolError(f"the model takes one input, {INPUT_NAME!r}; the request has {len(inputs)}")
    inp = inputs[0]
    if inp.name != INPUT_NAME:
        raise ProtocolError(f"unknown input {inp.name!r}; the model's input is {INPUT_NAME!r}")
    out = InferRequest(id=rid, binary_output=binary_output)
    for o in outputs or ():
        if o.name != OUTPUT_NAME:
            raise ProtocolError(f"unknown output {o.name!r}; the model's output is {OUTPUT_NAME!r}")
        out.binary_output = o.binary
        out.classification = check_classification(o.classification)
    shape = inp.shape
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input shape {shape!r} is not a list of non-negative integers")
    if inp.raw is None and inp.data is None:
        raise ProtocolError(f"input {INPUT_NAME!r} has {missing}")
    if inp.datatype == "FP32":
        out.tensor = _fp32(shape, inp.data, inp.raw)
    elif inp.datatype == "BYTES":
        out.photos = _bytes(shape, inp.data, inp.raw, inp.element or _as_bytes)
    else:
        raise ProtocolError(f"input datatype {inp.datatype!r} is not accepted; send FP32 {input_shape_text()} or BYTES [N] photos")
    if not 1 <= out.batch <= MAX_BATCH:
        raise ProtocolError(f"a batch of {out.batch} is outside 1..{MAX_BATCH}; split it into requests of at most {MAX_BATCH}")
    return out


def decode_request(body: bytes, headers) -> InferRequest:
    """A REST infer request's body (JSON, or JSON + binary tensors) -> InferRequest; ProtocolError (400) if bad."""
    raw_length = headers.get(HEADER_LENGTH)
    if raw_length is not None:
        if not raw_length.strip().isdigit() or int(raw_length) > len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {raw_length!r} is not a length within the "
                                f"{len(body)}-byte body")
        head, binary = body[: int(raw_length)], memoryview(body)[int(raw_length) :]
    else:
        head, binary = body, memoryview(b"")
    try:
        req = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"the request is not valid JSON ({exc}); send the v2 infer request body") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise ProtocolError("the request has no 'inputs' list")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError("'id' must be a string")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    outputs = req.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or any(not isinstance(o, dict) for o in outputs):
            raise ProtocolError("'outputs' must be a list of objects")
        if any(not isinstance(o.get("parameters") or {}, dict) for o in outputs):
            raise ProtocolError("an output's 'parameters' must be an object")
        outputs = [OutputIn(o.get("name"), (o.get("parameters") or {}).get("classification"),
                            bool((o.get("parameters") or {}).get("binary_data", False))) for o in outputs]
    inputs, pos = [], 0
    for inp in req["inputs"]:
        if not isinstance(inp, dict):
            inputs.append(TensorIn(inp, None, None))
            continue
        size, raw = (inp.get("parameters") or {}).get("binary_data_size"), None
        if size is not None:  # binary inputs follow the JSON header in order
            if not isinstance(size, int) or size < 0 or pos + size > len(binary):
                raise ProtocolError(f"binary_data_size {size!r} is more than the {len(binary) - pos} binary bytes sent")
            raw, pos = bytes(binary[pos : pos + size]), pos + size
        data = inp.get("data")
        if raw is None and inp.get("datatype") == "BYTES" and "data" in inp and not isinstance(data, list):
            raise ProtocolError("BYTES 'data' must be a list of base64 strings (or {\"b64\": ...} objects)")
        inputs.append(TensorIn(inp.get("name"), inp.get("datatype"), inp.get("shape"), raw, data, _b64))
    return check_request(rid, inputs, outputs, binary_output=bool(params.get("binary_data_output", False)),
                         missing="neither 'data' nor a binary_data_size parameter")


def check_classification(k) -> int | None:
    """The classification extension's K (None when not asked for); ProtocolError unless 1..NUM_CLASSES."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= NUM_CLASSES:
        raise ProtocolError(f"classification {k!r} is not a class count in 1..{NUM_CLASSES}")
    return k


def classify(probs: np.ndarray, k: int, class_names) -> np.ndarray:
    """(N, 10) probabilities -> (N, k) object array of b"score:index:label", best first, as Triton writes them."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return np.array([[f"{p[i]:f}:{i}:{class_names[i]}".encode() for i in row] for p, row in zip(probs, order, strict=True)],
                    dtype=object).reshape(len(probs), k)


def bytes_elements(items) -> bytes:
    """BYTES elements in the binary tensor form: each prefixed with its length, 4 bytes little-endian."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def _fp32(shape: list[int], data, blob: bytes | None) -> np.ndarray:
    if len(shape) != 4 or shape[1:] != list(INPUT_SHAPE[1:]):
        raise ProtocolError(f"FP32 input shape {shape} is not {input_shape_text()}")
    n = int(np.prod(shape))
    if blob is not None:
        if len(blob) != 4 * n:
            raise ProtocolError(f"FP32 {shape} needs {4 * n} bytes, {len(blob)} came")
        return np.frombuffer(blob, "<f4").reshape(shape)
    try:
        x = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError):
        raise ProtocolError("FP32 data must hold numbers only") from None
    if x.size != n:
        raise ProtocolError(f"FP32 {shape} needs {n} numbers, {x.size} came")
    return x.reshape(shape)


def _bytes(shape: list[int], data, blob: bytes | None, element: Callable[[object, int], bytes]) -> list[bytes]:
    if len(shape) != 1:
        raise ProtocolError(f"BYTES input shape {shape} is not [N]: one encoded photo per batch element")
    if blob is not None:
        items, pos = [], 0
        while pos < len(blob):
            if pos + 4 > len(blob):
                raise ProtocolError("BYTES binary data ends inside an element's 4-byte length")
            (length,) = struct.unpack_from("<I", blob, pos)
            if pos + 4 + length > len(blob):
                raise ProtocolError(f"BYTES element {len(items)} says {length} bytes, fewer are left")
            items.append(blob[pos + 4 : pos + 4 + length])
            pos += 4 + length
    else:
        items = [element(d, i) for i, d in enumerate(data)]
    if len(items) != shape[0]:
        raise ProtocolError(f"BYTES shape [{shape[0]}] but {len(items)} elements were sent")
    return items


def _as_bytes(value, index: int) -> bytes:
    if not isinstance(value, bytes):
        raise ProtocolError(f"BYTES element {index} is not bytes")
    return value


def _b64(value, index: int) -> bytes:
    if isinstance(value, dict):
        value = value.get("b64")
    if not isinstance(value, str):
        raise ProtocolError(f"BYTES element {index} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"BYTES element {index} is not valid base64") from None


def encode_response(probs: np.ndarray, version: str, request_id: str | None, binary: bool,
                    classification: int | None = None, class_names=()) -> tuple[bytes, dict]:
    """(N, 10) probabilities -> (body, extra headers) of the infer response; with `classification` K, the output
    is BYTES (N, K) "score:index:label" strings instead."""
    if classification:
        labels = classify(probs, classification, class_names)
        output = {"name": OUTPUT_NAME, "datatype": "BYTES", "shape": list(labels.shape)}
        raw = bytes_elements(labels.ravel()) if binary else b""
        if not binary:
            output["data"] = [b.decode() for b in labels.ravel()]
    else:
        probs = np.ascontiguousarray(probs, dtype="<f4")
        output = {"name": OUTPUT_NAME, "datatype": "FP32", "shape": list(probs.shape)}
        raw = probs.tobytes() if binary else b""
        if not binary:
            output["data"] = probs.ravel().tolist()
    if binary:
        output["parameters"] = {"binary_data_size": len(raw)}
    head = {"model_name": MODEL_NAME, "model_version": version, "outputs": [output]}
    if request_id is not None:
        head["id"] = request_id
    text = json.dumps(head, separators=(",", ":")).encode()
    if not binary:
        return text, {"content-type": "application/json"}
    return text + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
