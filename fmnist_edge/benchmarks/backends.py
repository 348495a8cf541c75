"""Benchmark backends: each loads one artifact and exposes the same `infer(batch)`; they differ only there."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelFileError, require
from ..quiet import tensorflow


@dataclass
class Backend:
    """One runtime x precision. `infer` takes float32 (B, 28, 28, 1) in [0, 1] and returns (B, 10)."""

    name: str
    precision: str
    folder: Path
    threads: int
    model_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def load(self) -> None:
        raise NotImplementedError

    def native(self, images: np.ndarray) -> np.ndarray:
        """Dataset-form uint8 (N, 28, 28) -> what this backend is fed (done once, outside the timing)."""
        from ..runtime.preprocess import to_model_input

        return to_model_input(images)  # (N, 28, 28, 1) float32 in [0, 1]

    def infer(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def infer_one(self, x: np.ndarray) -> object:
        """The batch-1 call a kiosk makes (defaults to `infer`)."""
        return self.infer(x)

    def async_throughput(self, x: np.ndarray, batch_size: int, repeat: int) -> float | None:
        """Images/s with the backend's own asynchronous API over `x` (`repeat` times), or None when it has none."""
        return None

    @property
    def label(self) -> str:
        return f"{self.name}/{self.precision}"

    def size_bytes(self) -> int:
        p = self.model_path
        if p is None or not p.exists():
            return 0
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        size = p.stat().st_size
        if p.suffix == ".xml" and p.with_suffix(".bin").exists():
            size += p.with_suffix(".bin").stat().st_size
        return size


def _need(path: Path, hint: str) -> Path:
    if not path.exists():
        raise ModelFileError(f"{path} is missing; {hint}")
    return path


class TensorFlowBackend(Backend):
    """The TF baseline done properly: the SavedModel's serving function called on a tensor."""

    def load(self):
        tf = tensorflow()
        self.model_path = _need(self.folder / "saved_model", "run `fmnist-edge train` first")
        self._tf = tf
        self._fn = tf.saved_model.load(str(self.model_path)).signatures["serving_default"]

    def infer(self, x):
        return self._fn(image=self._tf.constant(x))["probabilities"].numpy()


class KerasBackend(Backend):
    """`model.predict`, as the seed reports call it (for reference: it pays Keras' per-call overhead)."""

    def load(self):
        from ..train.modelio import load_keras

        self.model_path = _need(self.folder / "model.keras", "run `fmnist-edge train` first")
        self._model = load_keras(self.model_path)

    def infer(self, x):
        return self._model.predict(x, verbose=0, batch_size=max(1, len(x)))


class OpenVINOBackend(Backend):
    """Our runtime (`fmnist_edge.runtime.Classifier`), the path a kiosk app uses: it is fed the uint8
    dataset-form images a kiosk has, so its timings include its own preprocessing."""

    def load(self):
        from ..runtime import Classifier

        self._clf = Classifier.load(self.folder, precision=self.precision, threads=self.threads)
        self._tput = None
        ir = "fp32" if self.precision == "bf16" else self.precision
        self.model_path = self.folder / "openvino" / ir / "model.xml"
        self.notes.append(f"{self._clf.inference_precision} math on {self._clf.device}")

    def native(self, images):
        return np.ascontiguousarray(images)  # uint8 (N, 28, 28)

    def infer(self, x):
        return self._clf.predict_proba(x, batch_size=len(x))

    def infer_one(self, x):
        return self._clf.predict(x[0])

    def async_throughput(self, x, batch_size, repeat):
        """Images/s on a throughput-hint compile (one stream per core): batch 1 streams the images one by one
        through `predict_async` (a camera's frames); larger batches go through `predict_proba`, which keeps
        one batch in flight per stream."""
        import time

        from ..runtime import Classifier

        if self._tput is None:
            self._tput = Classifier.load(self.folder, precision=self.precision, threads=self.threads, hint="throughput")
        images = np.concatenate([x] * max(1, repeat))
        run = (lambda a: self._tput.predict_async(a)) if batch_size == 1 else (lambda a: self._tput.predict_proba(a, batch_size))
        run(images[: min(len(images), 4 * batch_size)])  # warm-up: creates the requests
        t = time.perf_counter()
        run(images)
        return len(images) / (time.perf_counter() - t)


class OnnxRuntimeBackend(Backend):
    def load(self):
        ort = require("onnxruntime")
        self.model_path = _need(self.folder / "onnx" / "model.onnx", "run `fmnist-edge convert` first")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])
        self._in = self._sess.get_inputs()[0].name

    def infer(self, x):
        return self._sess.run(None, {self._in: x})[0]


class TFLiteBackend(Backend):
    """TensorFlow Lite (LiteRT) on a float32 conversion of the SavedModel (made once, cached in the folder)."""

    def load(self):
        tf = tensorflow()
        saved = _need(self.folder / "saved_model", "run `fmnist-edge train` first")
        path = self.folder / "tflite" / "model.tflite"
        if not path.exists():
            from ..atomic import write_bytes

            conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            write_bytes(path, conv.convert())
        self.model_path = path
        try:  # the standalone LiteRT interpreter when installed, else TensorFlow's own
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            Interpreter = tf.lite.Interpreter
        self._interp = Interpreter(model_path=str(path), num_threads=self.threads)
        self._inp = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]
        self._batch = None

    def infer(self, x):
        if self._batch != len(x):
            self._interp.resize_tensor_input(self._inp, list(x.shape))
            self._interp.allocate_tensors()
            self._batch = len(x)
        self._interp.set_tensor(self._inp, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._out)


BACKENDS = {
    "tensorflow": (TensorFlowBackend, ("fp32",)),
    "keras": (KerasBackend, ("fp32",)),
    "openvino": (OpenVINOBackend, ("fp32", "bf16", "fp16", "int8")),
    "onnxruntime": (OnnxRuntimeBackend, ("fp32",)),
    "tflite": (TFLiteBackend, ("fp32",)),
}
DEFAULT_BACKENDS = ("tensorflow", "keras", "openvino", "onnxruntime", "tflite", "benchmark_app")


def make_backends(names, folder: Path, threads: int, precisions=None) -> list[Backend]:
    """Instantiate (not load) every requested backend x precision."""
    out = []
    for name in names:
        if name == "benchmark_app":
            continue
        if name not in BACKENDS:
            raise ConfigError(f"unknown backend {name!r}; known: {', '.join([*BACKENDS, 'benchmark_app'])}")
        cls, precs = BACKENDS[name]
        for p in precs:
            if precisions and name == "openvino" and p not in precisions:
                continue
            out.append(cls(name, p, Path(folder), threads))
    return out


def env_threads(threads: int) -> dict:
    """Environment that pins OpenMP/oneDNN-based libraries to `threads` in a child process."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
