"""Classifier: one compiled OpenVINO model that many threads share to classify garment images."""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import contract
from ..errors import (
    ConfigError,
    DeviceError,
    ImageShapeError,
    ImageTypeError,
    ImageValueError,
    InputImageError,
    ModelFileError,
    first_line,
)
from ..host import usable_cores
from .core import core, ov
from .manifest import locate, usable_precisions
from .preprocess import POLARITIES, prepare, to_model_input

INPUT = contract.INPUT_SHAPE[1:]  # one image as the model takes it: (28, 28, 1)

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
PROCESSES_FROM = 500  # predict_iter(processes="auto") starts worker processes (~0.5 s) from this many images on
AUTO_TIMED_CALLS = 40  # batch-1 calls timed per candidate precision when precision="auto"
# What each precision computes in: fp32/fp16/int8 keep FP32 arithmetic wherever they do not run int8;
# without the hint the CPU plugin silently computes in bf16 on CPUs with AVX512_BF16/AMX.
MATH = {"fp32": "f32", "bf16": "bf16", "fp16": "f32", "int8": "f32"}
_COMPUTE_OPS = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"}
_SCALE = np.float32(contract.INPUT_SCALE)


class Prediction(NamedTuple):
    """One image's answer: the best class, its probability (`confidence`) and the `top_k` (label, probability)
    pairs, best first. `to_dict()` is the JSON schema of `predict --json` and of HTTP POST /predict."""

    label: str
    index: int
    confidence: float
    top_k: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict:
        return {"label": self.label, "index": self.index, "confidence": self.confidence,
                "top_k": [{"label": n, "confidence": p} for n, p in self.top_k]}


class _Slot:
    """An infer request whose batch-1 input and output tensors share memory with numpy views: the hot path
    writes `pixels` and reads `probs` without allocating or asking OpenVINO for its tensors."""

    __slots__ = ("request", "pixels", "probs", "_buffers")

    def __init__(self, compiled: ov.CompiledModel):
        x = np.zeros((1, *INPUT), np.float32)  # (1, 28, 28, 1) float32 in [0, 1]
        y = np.zeros((1, contract.NUM_CLASSES), np.float32)  # (1, 10) softmax probabilities
        self._buffers = (x, y)  # the tensors below borrow this memory: keep it alive as long as the request
        self.pixels, self.probs = x[0, :, :, 0], y[0]
        self.request = compiled.create_infer_request()
        self.request.set_input_tensor(ov.Tensor(x, shared_memory=True))
        self.request.set_output_tensor(0, ov.Tensor(y, shared_memory=True))

    def run(self) -> None:
        """Infer `pixels` into `probs`; the GIL is released while OpenVINO runs."""
        self.request.start_async()
        self.request.wait()


class Classifier:
    """A Fashion-MNIST classifier compiled once for one device and precision; safe to share between threads.

    Make one with `Classifier.load`. Every predict method takes the inputs listed in
    `fmnist_edge.runtime.decode` (arrays, PIL images, file paths, encoded bytes) and preprocesses them with
    `fmnist_edge.runtime.preprocess`. Each thread borrows an infer request from a pool for the length of one
    call, so concurrent calls never share a request and an error never leaves one borrowed.
    """

    def __init__(self, compiled: ov.CompiledModel, class_names: tuple[str, ...], *, path: Path, precision: str,
                 requested_device: str, polarity: str = "auto", verified: bool = True,
                 compile_batches: Callable[[], ov.CompiledModel] | None = None):
        self._compiled = compiled  # batch 1: predict, predict_async
        # Batches (predict_proba, predict_batch) use the dynamic-batch model, compiled on first use so that
        # a kiosk that classifies one image at a time never pays for it.
        self._compile_batches = compile_batches or (lambda: compiled)
        self._batch_compiled: ov.CompiledModel | None = None
        self._batch_lock = threading.Lock()
        self.class_names = class_names
        self.path = path
        self.precision = precision
        self.requested_device = requested_device
        self.polarity = polarity
        self.verified = verified
        self.choice: dict | None = None  # how precision="auto" chose: candidates and their batch-1 times
        self._free: collections.deque[_Slot] = collections.deque()  # append/pop are atomic: no lock needed
        self._free.append(_Slot(compiled))
        # Batches run on requests of the batch model, one shape each (a short last batch is padded):
        # swapping shapes on one request crashed OpenVINO 2026.4's CPU plugin in our tests.
        self._batch_free: collections.deque[ov.InferRequest] = collections.deque()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike = "artifacts", precision: str = "fp32", device: str = "CPU",
             cache_dir: str | os.PathLike | None = None, threads: int | None = None, *,
             hint: str = "latency", verify: bool = True, polarity: str = "auto") -> Classifier:
        """Verify and compile the OpenVINO model that `fmnist-edge convert` wrote.

        Args:
            path: the artifact folder (holds manifest.json and openvino/<precision>/model.xml|bin).
            precision: "fp32" (FP32 weights and arithmetic), "bf16" (the FP32 model computed in bf16),
                "fp16" (FP16 weights, FP32 arithmetic), "int8" (quantized; FP32 where not int8), or "auto":
                the fastest at batch 1 on this device of those `convert` verified (bf16 only where the CPU
                computes it natively), timed at load; `precision` then says which, `choice` how.
            device: an OpenVINO device: "CPU", "GPU", "NPU", "AUTO", ... (see `fmnist-edge info`).
            cache_dir: OpenVINO's model cache folder; the next load of the same model starts faster.
            threads: CPU inference threads (INFERENCE_NUM_THREADS); None lets OpenVINO choose.
            hint: "latency" (one image at a time, the kiosk case) or "throughput" (several streams,
                for `predict_async` and large batches).
            verify: check the files against the sha256 hashes in manifest.json before loading.
            polarity: how photos are negated: "auto", "photo" or "dataset" (see `preprocess.to_dataset_form`).

        Raises:
            ConfigError: an unknown precision, hint, polarity or a bad thread count.
            ModelFileError (ManifestError, IntegrityError, PrecisionNotAvailableError): the folder lacks the
                model, its manifest, or a file differs from what the manifest records.
            DeviceError: the device is not present or cannot compile the model.
        """
        if precision == "auto":
            return cls._load_fastest(path, device, cache_dir, threads, hint=hint, verify=verify, polarity=polarity)
        if hint not in HINTS:
            raise ConfigError(f"unknown hint {hint!r}; choose one of {', '.join(HINTS)}")
        if polarity not in POLARITIES:
            raise ConfigError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        files = locate(path, precision, verify=verify)
        c = core()
        device = str(device).upper()
        _check_device(c, device)
        config = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_PRECISION_HINT": MATH[precision]}
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        if threads is not None:
            if not device.startswith("CPU"):
                raise ConfigError(f"threads sets CPU inference threads; device {device} does not take it")
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            model = c.read_model(str(files.xml))
        except RuntimeError as exc:
            raise ModelFileError(f"{files.xml} is not a readable OpenVINO model ({first_line(exc, 300)})") from None
        batch_limit = _check_ports(model, files.xml)
        single = model.clone()  # the kiosk path: a static batch of 1 runs ~8% faster than a dynamic batch (measured)
        single.reshape({single.input(0): ov.PartialShape([1, *INPUT])})
        compiled = _compile(c, single, device, config, files.xml)

        def compile_batches() -> ov.CompiledModel:
            return _compile(c, model, device, config, files.xml) if batch_limit is None else compiled

        return cls(compiled, files.class_names, path=Path(path), precision=precision, requested_device=device,
                   polarity=polarity, verified=files.verified, compile_batches=compile_batches)

    @classmethod
    def _load_fastest(cls, path, device, cache_dir, threads, **kw) -> Classifier:
        """precision="auto": of the precisions that `convert` checked and marked ok, the fastest at batch 1 on
        this device, timed here. bf16 competes only where the CPU computes it natively (elsewhere OpenVINO
        runs it in f32, so it is fp32 again); fp16 never does (FP16 weights, f32 arithmetic on CPUs)."""
        ok = usable_precisions(path) if kw.get("verify", True) else ["fp32"]
        try:
            caps = core().get_property(str(device).upper().split(":")[0].split(".")[0], "OPTIMIZATION_CAPABILITIES")
        except RuntimeError:
            caps = []
        candidates = [p for p in ("int8", "bf16", "fp32") if p in ok and (p != "bf16" or "BF16" in caps)] or ["fp32"]
        timed: dict[str, float] = {}
        best: Classifier | None = None
        probe = np.zeros(contract.IMAGE_SHAPE, np.uint8)
        for precision in candidates:
            clf = cls.load(path, precision, device, cache_dir, threads, **kw)
            if len(candidates) > 1:
                for _ in range(10):
                    clf.predict(probe, top_k=1)
                times = []
                for _ in range(AUTO_TIMED_CALLS):
                    t = time.perf_counter()
                    clf.predict(probe, top_k=1)
                    times.append(time.perf_counter() - t)
                timed[precision] = round(float(np.median(times)) * 1e6, 1)
            if best is None or (timed and timed[precision] < timed[best.precision]):
                best = clf
        best.choice = {"requested": "auto", "candidates": candidates, "batch1_us": timed}
        return best

    # ------------------------------------------------------------------ what it runs with

    @property
    def compiled_model(self) -> ov.CompiledModel:
        """The batch-1 OpenVINO CompiledModel behind `predict` and `predict_async` (for benchmarks and
        inspection); batches run on a dynamic-batch compile of the same IR, made on first use."""
        return self._compiled

    @property
    def device(self) -> str:
        """The device(s) the model really executes on, read back from the compiled model (e.g. "CPU")."""
        try:
            return ",".join(self._compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:
            return self.requested_device

    @property
    def inference_precision(self) -> str | None:
        """The arithmetic precision the compiled model reports ("f32", "bf16", "f16"); devices that do not
        report it (AUTO, HETERO) are read from the runtime graph's activations; None if still unknown."""
        try:
            return self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except (RuntimeError, AttributeError):
            floats = [t for t in self.compute_precisions["activations"] if t in ("f32", "bf16", "f16")]
            return floats[0] if len(floats) == 1 else None

    @property
    def compute_precisions(self) -> dict[str, list[str]]:
        """Element types of the convolution and dense layers in OpenVINO's runtime graph, e.g.
        {"activations": ["u8"], "weights": ["i8"]} for int8 or {"activations": ["f32"], "weights": ["f16"]} for fp16."""
        acts, weights = set(), set()
        try:
            for op in self._compiled.get_runtime_model().get_ordered_ops():
                rt = op.get_rt_info()
                if "layerType" in rt and rt["layerType"].astype(str) in _COMPUTE_OPS and op.get_input_size() >= 2:
                    acts.add(op.input(0).get_element_type().get_type_name())
                    weights.add(op.input(1).get_element_type().get_type_name())
        except RuntimeError:
            pass
        return {"activations": sorted(acts), "weights": sorted(weights)}

    def describe(self) -> dict:
        return {"path": str(self.path), "precision": self.precision, "device": self.device,
                "inference_precision": self.inference_precision, "compute_precisions": self.compute_precisions,
                "verified": self.verified, "precision_choice": self.choice}

    def __repr__(self) -> str:
        return (f"Classifier(path={str(self.path)!r}, precision={self.precision!r}, device={self.device!r}, "
                f"inference_precision={self.inference_precision!r})")

    # ------------------------------------------------------------------ predicting

    def predict(self, image, top_k: int = 3, timings: dict | None = None) -> Prediction:
        """Classify one image (any accepted input) -> Prediction with the `top_k` best classes.
        `timings`, if given, gets "prepare_s" (decode + preprocessing) and "infer_s" (the model)."""
        _check_top_k(top_k)
        t0 = time.perf_counter()
        pixels = prepare(image, self.polarity)  # uint8 or float32 (28, 28)
        t1 = time.perf_counter()
        with self._slot() as slot:
            _write(pixels, slot.pixels)
            slot.run()
            if timings is not None:
                timings["prepare_s"], timings["infer_s"] = t1 - t0, time.perf_counter() - t1
            return self._prediction(slot.probs, top_k)

    def to_input(self, images) -> np.ndarray:
        """A sequence of images (any accepted input) -> the model's input, float32 (N, 28, 28, 1) in [0, 1],
        decoded and preprocessed on the thread pool; a bad item raises its InputImageError with `index` set."""
        items = _as_items(images)
        x = np.empty((len(items), *INPUT), np.float32)
        for i, result in enumerate(self._prepared(items)):
            _write(_unwrap(result), x[i, :, :, 0])
        return x

    def predict_tensor(self, x: np.ndarray) -> np.ndarray:
        """The model on its own input, no preprocessing: float32 (N, 28, 28, 1) in [0, 1] -> float32 (N, 10).

        What a serving protocol hands over (tensor `image` of the model repository). Batch 1 runs on the
        static batch-1 compile, larger batches on the dynamic-batch one."""
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise ImageTypeError(f"the model's input is float32, got {x.dtype}")
        if x.ndim != 4 or x.shape[1:] != contract.INPUT_SHAPE[1:] or x.shape[0] < 1:
            raise ImageShapeError(f"the model's input is {contract.input_shape_text()} with N >= 1, got shape {x.shape}")
        if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
            raise ImageValueError("the model's input holds values outside [0, 1] (pixel / 255), or NaN/inf")
        if x.shape[0] == 1:
            with self._slot() as slot:
                slot.pixels[...] = x[0, :, :, 0]
                slot.run()
                return slot.probs[None].copy()
        batched = self._batches()
        limit = _batch_limit(batched)
        if limit is not None and x.shape[0] > limit:
            return np.concatenate([self.predict_tensor(x[i : i + 1]) for i in range(x.shape[0])])
        return self._infer_batch(batched, np.ascontiguousarray(x))

    def predict_proba(self, images, batch_size: int = 64) -> np.ndarray:
        """Class probabilities float32 (N, 10) for a sequence of images or an (N, H, W[, C]) array.

        Photos (encoded bytes, paths, PIL images, frames) are decoded and preprocessed on every core at once,
        in input order. On a classifier loaded with hint="throughput" the batches run through OpenVINO's
        streams in parallel (an AsyncInferQueue, one request per stream); otherwise one after another."""
        items = _as_items(images)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        batched = self._batches()
        batch_size = min(batch_size, _batch_limit(batched) or batch_size, max(1, len(items)))
        stacked = isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape[1:3] == contract.IMAGE_SHAPE \
            and images.shape[3:] in ((), (1,))  # a dataset-form stack: no per-image work at all

        def chunks():
            prepared = None if stacked else self._prepared(items)
            for start in range(0, len(items), batch_size):
                n = min(batch_size, len(items) - start)
                if stacked:
                    x = to_model_input(images[start : start + n])  # (n, 28, 28, 1) float32 in [0, 1]
                else:
                    x = np.empty((n, *INPUT), np.float32)
                    for j in range(n):
                        _write(_unwrap(next(prepared)), x[j, :, :, 0])
                if n < batch_size:  # a short last batch is padded: a request keeps one shape (see __init__)
                    x = np.concatenate([x, np.zeros((batch_size - n, *INPUT), np.float32)])
                yield x, (start, n)

        out = np.empty((len(items), contract.NUM_CLASSES), np.float32)
        streams = _streams(batched)
        if streams > 1 and len(items) > batch_size:
            for (start, n), probs in self._pipeline(batched, chunks(), streams):
                out[start : start + n] = probs[:n]
            return out
        for x, (start, n) in chunks():
            out[start : start + n] = self._infer_batch(batched, x)[:n]
        return out

    def predict_batch(self, images, top_k: int = 3, batch_size: int = 64) -> list[Prediction]:
        """Classify many images in batches of `batch_size`; one Prediction per image, in input order.

        A bad item raises its InputImageError subclass with `index` set and named in the message."""
        _check_top_k(top_k)
        return [self._prediction(row, top_k) for row in self.predict_proba(images, batch_size)]

    def predict_iter(self, images: Iterable, top_k: int = 3, batch_size: int = 16, errors: str = "raise",
                     processes: int | str = 0) -> Iterator[Prediction | InputImageError]:
        """Classify an iterable of images (e.g. the files of a folder) as a stream, in input order.

        Images are decoded and preprocessed on every core while earlier ones are classified in batches of
        `batch_size`; results are yielded as soon as their batch is done. errors="return" yields a bad
        item's InputImageError (with `index` set) in its place and goes on; errors="raise" raises it.
        processes > 0 prepares images in that many worker processes instead of threads: ~0.5 s to start,
        then free of the GIL (about 1.6x the photos/s of threads on 2 cores), for thousands of files.
        processes="auto": one per usable core when there are at least PROCESSES_FROM images, else threads."""
        _check_top_k(top_k)
        if processes == "auto":
            many = hasattr(images, "__len__") and len(images) >= PROCESSES_FROM
            processes = usable_cores() if many and usable_cores() > 1 else 0
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
            raise ConfigError(f"processes must be a non-negative integer, got {processes!r}")
        if errors not in ("raise", "return"):
            raise ConfigError(f"errors must be 'raise' or 'return', got {errors!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        batched = self._batches()
        batch_size = min(batch_size, _batch_limit(batched) or batch_size)
        x = np.zeros((batch_size, *INPUT), np.float32)
        pending: list[InputImageError | int] = []  # an error, or the row of x that holds the image
        rows = 0

        def flush():
            probs = self._infer_batch(batched, x) if rows else None
            for item in pending:
                if isinstance(item, InputImageError):
                    yield item
                else:
                    yield self._prediction(probs[item], top_k)

        for result in self._prepared(_iter_items(images), processes):
            if isinstance(result, InputImageError):
                if errors == "raise":
                    raise result
                pending.append(result)
                continue
            _write(result, x[rows, :, :, 0])
            pending.append(rows)
            rows += 1
            if rows == batch_size:
                yield from flush()
                pending, rows = [], 0
        if pending:
            x[rows:] = 0.0
            yield from flush()

    def predict_async(self, images: Iterable, top_k: int = 3, jobs: int | None = None) -> list[Prediction]:
        """Classify an iterable of images through OpenVINO's AsyncInferQueue: preprocessing of the next image
        overlaps inference of the previous ones. Results come back in input order.

        jobs: infer requests in flight (default: the compiled model's optimal number; load with
        hint="throughput" to get several streams)."""
        _check_top_k(top_k)
        if jobs is None:
            jobs = max(2, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        if not isinstance(jobs, int) or jobs < 1:
            raise ConfigError(f"jobs must be a positive integer or None, got {jobs!r}")

        def singles():
            for i, image in enumerate(_iter_items(images)):
                x = np.empty((1, *INPUT), np.float32)
                _write(self._prepare_item(image, i), x[0, :, :, 0])
                yield x, i

        return [self._prediction(probs[0], top_k) for _, probs in self._pipeline(self._compiled, singles(), jobs)]

    def __call__(self, image, top_k: int = 3) -> Prediction:
        return self.predict(image, top_k)

    # ------------------------------------------------------------------ internals

    def _batches(self) -> ov.CompiledModel:
        """The dynamic-batch compiled model, compiled once on first use (thread-safe)."""
        if self._batch_compiled is None:
            with self._batch_lock:
                if self._batch_compiled is None:
                    self._batch_compiled = self._compile_batches()
        return self._batch_compiled

    @staticmethod
    def _pipeline(compiled: ov.CompiledModel, feeds: Iterable, jobs: int) -> list:
        """Run (input, key) pairs through an AsyncInferQueue of `jobs` requests -> [(key, output)] in feed
        order. Preparing the next input overlaps inference of the previous ones; an error in a feed or a
        callback is raised here, after nothing is left in flight."""
        queue = ov.AsyncInferQueue(compiled, jobs)
        results: list = []
        failures: list[BaseException] = []

        def done(request: ov.InferRequest, slot: int) -> None:
            try:
                results[slot][1] = request.get_output_tensor(0).data.copy()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
                failures.append(exc)

        queue.set_callback(done)
        try:
            for x, key in feeds:
                results.append([key, None])
                queue.start_async({0: x}, userdata=len(results) - 1)
        finally:
            queue.wait_all()  # nothing stays in flight, even when an item was bad
        if failures:
            raise failures[0]
        return [(key, probs) for key, probs in results]

    def _infer_batch(self, batched: ov.CompiledModel, x: np.ndarray) -> np.ndarray:
        """One (n, 28, 28, 1) batch on a pooled request of the batch model -> a copy of its (n, 10) output."""
        try:
            request = self._batch_free.pop()
        except IndexError:
            request = batched.create_infer_request()
        try:
            request.infer({0: x}, share_inputs=True, share_outputs=True)
            return request.get_output_tensor(0).data.copy()
        finally:
            self._batch_free.append(request)

    def _prepared(self, items: Iterable, processes: int = 0) -> Iterator[np.ndarray | InputImageError]:
        """Dataset-form pixels of each item, in input order, prepared a few items ahead on the shared thread
        pool (decoding releases the GIL) or on `processes` worker processes; a bad item gives its
        InputImageError in its place."""
        if processes:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            pool = ProcessPoolExecutor(processes, mp_context=mp.get_context(method))
        else:
            pool = _workers()
        window: collections.deque = collections.deque()
        depth = 4 * pool._max_workers
        try:
            for i, item in enumerate(items):
                if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.shape == contract.IMAGE_SHAPE:
                    window.append(item)  # dataset form: nothing to do, no thread hop
                else:
                    window.append(pool.submit(_prepare_or_error, item, i, self.polarity))
                if len(window) >= depth:
                    yield _result(window.popleft())
            while window:
                yield _result(window.popleft())
        finally:
            for f in window:  # the consumer stopped early: do not decode what nobody will read
                if not isinstance(f, np.ndarray):
                    f.cancel()
            if processes:
                pool.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[_Slot]:
        """A batch-1 request for this thread alone, returned to the pool when the block ends, error or not."""
        try:
            slot = self._free.pop()
        except IndexError:  # every request is busy in another thread: make one more
            slot = _Slot(self._compiled)
        try:
            yield slot
        finally:
            self._free.append(slot)

    def _prepare_item(self, image, index: int) -> np.ndarray:
        return _prepare_item(image, index, self.polarity)

    def _prediction(self, probabilities: np.ndarray, top_k: int) -> Prediction:
        p = probabilities.tolist()  # 10 Python floats: cheaper to rank than numpy calls on 10 elements
        names = self.class_names
        if top_k == 1:
            best = p.index(max(p))
            return Prediction(names[best], best, p[best], ((names[best], p[best]),))
        order = sorted(range(len(p)), key=p.__getitem__, reverse=True)[:top_k]  # stable: ties keep class order
        best = order[0]
        return Prediction(names[best], best, p[best], tuple([(names[j], p[j]) for j in order]))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> ThreadPoolExecutor:
    """One thread per usable core, shared by every Classifier of the process, started on first use."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="fmnist-prep")
    return _pool


def _prepare_item(image, index: int, polarity: str) -> np.ndarray:
    try:
        return prepare(image, polarity)
    except InputImageError as exc:
        err = type(exc)(f"image {index}: {exc}")
        err.index, err.reason = index, str(exc)
        raise err from None


def _prepare_or_error(image, index: int, polarity: str) -> np.ndarray | InputImageError:
    """A pool's task (module level, so that worker processes can run it too)."""
    try:
        return _prepare_item(image, index, polarity)
    except InputImageError as exc:
        return exc


def _result(item) -> np.ndarray | InputImageError:
    return item if isinstance(item, np.ndarray) else item.result()


def _unwrap(result: np.ndarray | InputImageError) -> np.ndarray:
    if isinstance(result, InputImageError):
        raise result
    return result


def _write(pixels: np.ndarray, out: np.ndarray) -> None:
    """Dataset-form uint8 or float32 (28, 28) -> model input in `out`, float32 in [0, 1], as `to_model_input`."""
    if pixels.dtype == np.uint8:
        np.multiply(pixels, _SCALE, out=out, casting="unsafe")
    else:
        out[...] = pixels


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= contract.NUM_CLASSES:
        raise ConfigError(f"top_k must be an integer from 1 to {contract.NUM_CLASSES}, got {top_k!r}")


def _as_items(images) -> list:
    """A sequence of images or an (N, H, W[, C]) array -> a list of single images."""
    if isinstance(images, np.ndarray):
        if images.ndim < 3:
            raise ImageShapeError(
                f"a batch must be a sequence of images or an (N, H, W[, C]) array, got shape {images.shape}; "
                "for one image use predict()"
            )
        return list(images)
    if isinstance(images, (str, bytes, os.PathLike)) or not hasattr(images, "__iter__"):
        raise ImageTypeError(
            f"a batch must be a sequence of images, got a {type(images).__name__}; for one image use predict()"
        )
    return list(images)


def _iter_items(images):
    if isinstance(images, np.ndarray) or isinstance(images, (str, bytes, os.PathLike)):
        return iter(_as_items(images))
    return iter(images)


def _check_device(c: ov.Core, device: str) -> None:
    available = c.available_devices
    base = device.split(":")[0].split(".")[0]
    if base in ("AUTO", "HETERO", "MULTI", "BATCH") or device in available or base in {d.split(".")[0] for d in available}:
        return
    raise DeviceError(f"OpenVINO device {device!r} is not present; this machine has {', '.join(available)} (see `fmnist-edge info`)")


def _compile(c: ov.Core, model: ov.Model, device: str, config: dict, xml: Path) -> ov.CompiledModel:
    try:
        return c.compile_model(model, device, config)
    except RuntimeError as exc:
        raise DeviceError(f"OpenVINO cannot compile {xml} for {device}: {first_line(exc, 300)}") from None


def _batch_limit(compiled: ov.CompiledModel) -> int | None:
    batch = compiled.input(0).get_partial_shape()[0]
    return None if batch.is_dynamic else batch.get_length()


def _check_ports(compiled: ov.Model | ov.CompiledModel, path: Path) -> int | None:
    """The IR must take [?, 28, 28, 1] and give [?, 10]; returns the largest batch it takes (None: any)."""
    if len(compiled.inputs) != 1 or len(compiled.outputs) != 1:
        raise ModelFileError(f"{path}: the model has {len(compiled.inputs)} inputs and {len(compiled.outputs)} outputs, expected 1 and 1")
    shape_in = compiled.input(0).get_partial_shape()
    shape_out = compiled.output(0).get_partial_shape()
    ok = (shape_in.rank.is_static and shape_in.rank.get_length() == 4
          and [str(d) for d in list(shape_in)[1:]] == [str(d) for d in contract.INPUT_SHAPE[1:]]
          and shape_out.rank.is_static and shape_out.rank.get_length() == 2 and str(shape_out[1]) == str(contract.NUM_CLASSES))
    if not ok:
        raise ModelFileError(f"{path}: the model takes {shape_in} and gives {shape_out}; "
                             f"expected {contract.input_shape_text('?')} -> [?, {contract.NUM_CLASSES}]")
    batch = shape_in[0]
    if batch.is_static and batch.get_length() != 1:
        raise ModelFileError(f"{path}: the model takes a fixed batch of {batch}; the runtime needs a dynamic batch or 1")
    return None if batch.is_dynamic else 1


def _streams(compiled: ov.CompiledModel) -> int:
    """Parallel streams the compiled model runs (> 1 with hint="throughput" on a multi-core CPU)."""
    try:
        return max(1, int(compiled.get_property("NUM_STREAMS")))
    except (RuntimeError, TypeError, ValueError):  # AUTO and some plugins do not report streams
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

