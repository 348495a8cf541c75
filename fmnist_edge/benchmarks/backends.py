"""Benchmark backends: each loads one artifact and exposes the same `infer(batch)`; they differ only there."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import contract
from ..artifact import Layout, peer_precisions
from ..errors import ConfigError, MissingDependencyError, ModelFileError, require
from ..quiet import tensorflow
from .loop import timed_loop


@dataclass
class Backend:
    """One runtime x precision. `infer` takes float32 (B, 28, 28, 1) in [0, 1] and returns (B, 10); `measure`
    times it (and the backend's asynchronous API, where it has one) through the one loop, `timed_loop`."""

    cold_start = True  # a fresh process can load it (benchmarks.coldstart has its recipe)

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

    def accuracy(self, x: np.ndarray, y: np.ndarray, batch: int = 250) -> float | None:
        """Top-1 accuracy on native-form `x` with labels `y`."""
        preds = [np.asarray(self.infer(x[i : i + batch])).argmax(1) for i in range(0, len(x), batch)]
        return float((np.concatenate(preds) == y).mean())

    # run_async(images, batch_size): push all of `images` through the backend's own asynchronous API; a backend
    # that has one defines it
    run_async = None

    def measure(self, pool: np.ndarray, batch_size: int, mode: str, iters: int, warmup: int,
                duration: float | None = None) -> dict | None:
        """{"latency_us", "first_us", "throughput_ips"} of `mode` ("sync": one call per batch of `batch_size`,
        `iters` of them; "async": the asynchronous API over as many images), or None when the backend has no
        such mode. `pool` is native-form images to draw the batches from."""
        if mode == "async":
            if self.run_async is None:
                return None
            images = np.concatenate([pool] * max(2, -(-iters * batch_size // len(pool))))
            self.run_async(images[: min(len(images), 4 * batch_size)], batch_size)  # creates its requests
            stats = timed_loop(lambda: self.run_async(images, batch_size), warmup=0, iters=1)
            return {"latency_us": None, "first_us": None, "throughput_ips": len(images) * 1e6 / stats["latency_us"]["mean"]}
        batches = [pool[i : i + batch_size] for i in range(0, len(pool) - batch_size + 1, batch_size)]
        batches = batches or [np.resize(pool, (batch_size, *pool.shape[1:]))]
        call = self.infer_one if batch_size == 1 else self.infer
        k = itertools.count()
        stats = timed_loop(lambda: call(batches[next(k) % len(batches)]), warmup=warmup, iters=iters, duration=duration)
        return {"latency_us": stats["latency_us"], "first_us": stats["first_us"],
                "throughput_ips": batch_size * 1e6 / stats["latency_us"]["mean"]}

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
        self.model_path = _need(Layout(self.folder).saved_model, "run `fmnist-edge train` first")
        self._tf = tf
        self._fn = tf.saved_model.load(str(self.model_path)).signatures["serving_default"]

    def infer(self, x):
        return self._fn(image=self._tf.constant(x))["probabilities"].numpy()


class KerasBackend(Backend):
    """`model.predict`, as the seed reports call it (for reference: it pays Keras' per-call overhead)."""

    def load(self):
        from ..train.modelio import load_keras

        self.model_path = _need(Layout(self.folder).keras, "run `fmnist-edge train` first")
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
        self.model_path = Layout(self.folder).ir_xml(self.precision)
        self.notes.append(f"{self._clf.inference_precision} math on {self._clf.device}")

    def native(self, images):
        return np.ascontiguousarray(images)  # uint8 (N, 28, 28)

    def infer(self, x):
        return self._clf.predict_proba(x, batch_size=len(x))

    def infer_one(self, x):
        return self._clf.predict(x[0])

    def run_async(self, images, batch_size):
        """On a throughput-hint compile (one stream per core): batch 1 streams the images one by one through
        `predict_async` (a camera's frames); larger batches go through `predict_proba`, which keeps one batch
        in flight per stream."""
        from ..runtime import Classifier

        if self._tput is None:
            self._tput = Classifier.load(self.folder, precision=self.precision, threads=self.threads, hint="throughput")
        if batch_size == 1:
            self._tput.predict_async(images)
        else:
            self._tput.predict_proba(images, batch_size)


class OnnxRuntimeBackend(Backend):
    """onnxruntime's CPU provider on the fp32 ONNX model, or on its own static QDQ int8 one (both made by `convert`)."""

    def load(self):
        ort = require("onnxruntime")
        self.model_path = _need(Layout(self.folder).peer_file("onnx", self.precision),
                                f"run `fmnist-edge convert` with --precision {self.precision} first")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])
        self._in = self._sess.get_inputs()[0].name

    def infer(self, x):
        return self._sess.run(None, {self._in: x})[0]


class TFLiteBackend(Backend):
    """LiteRT (ai-edge-litert, TensorFlow Lite's successor, without TensorFlow) on the .tflite model of its precision
    (fp32, fp16 weights, full-integer int8). `convert --format tflite` makes and checks them; a folder without one
    gets it here, once, made the same way from the same calibration images (this needs TensorFlow)."""

    def load(self):
        path = Layout(self.folder).peer_file("tflite", self.precision)
        if not path.exists():
            self._convert(path)
        self.model_path = path
        Interpreter = require("ai_edge_litert.interpreter").Interpreter
        self._interp = Interpreter(model_path=str(path), num_threads=self.threads)
        self._inp = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]
        self._batch = None

    def _convert(self, path: Path) -> None:
        from ..convert.tflite_export import export_tflite

        saved = _need(Layout(self.folder).saved_model, "run `fmnist-edge train` first")
        calib = None
        if self.precision == "int8":
            from .. import data
            from ..artifact import read_metadata
            from ..convert.pipeline import ConvertConfig
            from ..convert.quantize import calibration_set

            calib = calibration_set(data.load(), read_metadata(self.folder, strict=False).config, ConvertConfig().calib_size)
        export_tflite(saved, path, self.precision, calib)
        self.notes.append("converted by bench, not checked by convert")

    def infer(self, x):
        if self._batch != len(x):
            self._interp.resize_tensor_input(self._inp, list(x.shape))
            self._interp.allocate_tensors()
            self._batch = len(x)
        self._interp.set_tensor(self._inp, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._out)


class BenchmarkAppBackend(Backend):
    """OpenVINO's own `benchmark_app` on the fp32 IR: its C++ loop, on random inputs, is the ceiling our Python
    runtime is held against. It times itself (that is the point), so `measure` reads its report; it has no
    accuracy and no cold start of ours."""

    cold_start = False
    _NUM = re.compile(r"(Median|Average|Min|Max):\s+([\d.]+)\s*(ms|us)")
    _TPUT = re.compile(r"Throughput:\s+([\d.]+)\s*FPS")

    def load(self):
        self.model_path = _need(Layout(self.folder).ir_xml("fp32"), "run `fmnist-edge convert` first")
        self._exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
        if not Path(self._exe).exists():
            raise MissingDependencyError("benchmark_app is not installed (it comes with the openvino wheel); "
                                         f"{contract.INSTALL_TRAIN}, or leave it out of --backends")
        self.notes.append("reference ceiling, random inputs")

    def native(self, images):
        return images  # benchmark_app makes its own random inputs

    def accuracy(self, x, y, batch=250):
        return None

    def measure(self, pool, batch_size, mode, iters, warmup, duration=None):
        seconds = max(1, int(duration or (2 if iters < 500 else 10)))
        streams = 1 if mode == "sync" else self.threads
        cmd = [self._exe, "-m", str(Path(self.model_path).resolve()), "-d", "CPU", "-hint", "none", "-nthreads",
               str(self.threads), "-nstreams", str(streams), "-api", mode, "-shape",
               contract.input_shape_text(batch_size).replace(" ", ""), "-t", str(seconds), "-infer_precision", "f32"]
        if mode == "sync":
            cmd += ["-nireq", "1"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, cwd=tempfile.gettempdir()).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        stats = {m.group(1).lower(): float(m.group(2)) * (1000 if m.group(3) == "ms" else 1) for m in self._NUM.finditer(out)}
        tput = self._TPUT.search(out)
        if "median" not in stats or not tput:
            return None
        latency = {"p50": stats["median"], "mean": stats.get("average"), "p90": None, "p99": None, "min": stats.get("min")}
        return {"latency_us": latency if mode == "sync" else None, "first_us": None, "throughput_ips": float(tput.group(1))}


PEER_FORMAT = {"onnxruntime": "onnx", "tflite": "tflite"}  # the peers' runtimes and the format each runs
BACKENDS = {
    "tensorflow": (TensorFlowBackend, ("fp32",)),
    "keras": (KerasBackend, ("fp32",)),
    "openvino": (OpenVINOBackend, contract.PRECISIONS),
    "onnxruntime": (OnnxRuntimeBackend, peer_precisions("onnx")),
    "tflite": (TFLiteBackend, peer_precisions("tflite")),
    "benchmark_app": (BenchmarkAppBackend, ("fp32",)),
}
DEFAULT_BACKENDS = tuple(BACKENDS)


def make_backends(names, folder: Path, threads: int, precisions=None) -> list[Backend]:
    """Instantiate (not load) every requested backend x precision."""
    out = []
    for name in names:
        if name not in BACKENDS:
            raise ConfigError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
        cls, precs = BACKENDS[name]
        for p in precs:
            if precisions and (name == "openvino" or name in PEER_FORMAT) and p not in precisions:
                continue
            out.append(cls(name, p, Path(folder), threads))
    return out


def env_threads(threads: int) -> dict:
    """Environment that pins OpenMP/oneDNN-based libraries to `threads` in a child process."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
