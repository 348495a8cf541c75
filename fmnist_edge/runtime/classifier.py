"""Classifier: one compiled OpenVINO model that many threads share to classify garment images."""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import contract
from ..artifact import PRECISION_TABLE, locate, usable_precisions
from ..data import normalize
from ..errors import ConfigError, ImageShapeError, ImageTypeError, InputImageError, check_int
from ..host import usable_cores
from .core import core, ov
from .engine import Engine, check_device, compile_model
from .preprocess import POLARITIES, prepare

INPUT = contract.INPUT_SHAPE[1:]  # one image as the model takes it: (28, 28, 1)

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
PROCESSES_FROM = 500  # predict_iter(processes="auto") starts worker processes (~0.5 s) from this many images on
AUTO_TIMED_CALLS = 40  # batch-1 calls timed per candidate precision when precision="auto"
# What each precision computes in (INFERENCE_PRECISION_HINT): the compute column of the one precision table.
MATH = {name: p.compute for name, p in PRECISION_TABLE.items()}
_COMPUTE_OPS = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"}


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


class Classifier:
    """A Fashion-MNIST classifier compiled once for one device and precision; safe to share between threads.

    Make one with `Classifier.load`. Every predict method takes the inputs listed in
    `fmnist_edge.runtime.decode` (arrays, PIL images, file paths, encoded bytes) and preprocesses them with
    `fmnist_edge.runtime.preprocess`. Every one runs on the same `engine.Engine`: each call borrows infer
    requests from its pools for its own length, so concurrent calls never share a request and an error never
    leaves one borrowed.
    """

    def __init__(self, compiled: ov.CompiledModel, class_names: tuple[str, ...], *, path: Path, precision: str,
                 requested_device: str, polarity: str = "auto", verified: bool = True,
                 compile_batches: Callable[[], ov.CompiledModel] | None = None):
        # Batch 1 runs on `compiled`; batches on the dynamic-batch model, compiled on first use so that a kiosk
        # that classifies one image at a time never pays for it.
        self._engine = Engine(compiled, compile_batches)
        self.class_names = class_names
        self.path = path
        self.precision = precision
        self.requested_device = requested_device
        self.polarity = polarity
        self.verified = verified
        self.choice: dict | None = None  # how precision="auto" chose: candidates and their batch-1 times

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike = "artifacts", precision: str = "fp32", device: str = "CPU",
             cache_dir: str | os.PathLike | None = None, threads: int | None = None, *,
             hint: str = "latency", verify: bool = True, polarity: str = "auto",
             trust: Iterable[str | os.PathLike | bytes] | None = None) -> Classifier:
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
            trust: public keys (paths or PEM bytes) one of which must have signed `path` (a version folder that
                `fmnist-edge publish --sign` wrote); checked before anything is compiled. None: no check.

        Raises:
            ConfigError: an unknown precision, hint, polarity or a bad thread count.
            ModelFileError (ManifestError, IntegrityError, PrecisionNotAvailableError): the folder lacks the
                model, its manifest, or a file differs from what the manifest records.
            SignatureError: with `trust`, the folder's signature is missing, invalid or by another key, or a
                file differs from what was signed.
            DeviceError: the device is not present or cannot compile the model.
        """
        if trust is not None:
            from ..signing import verify as verify_signature

            verify_signature(path, trust)  # before the manifest, so that a consistent rewrite is named as such
        if precision == "auto":
            return cls._load_fastest(path, device, cache_dir, threads, hint=hint, verify=verify, polarity=polarity)
        if hint not in HINTS:
            raise ConfigError(f"unknown hint {hint!r}; choose one of {', '.join(HINTS)}")
        if polarity not in POLARITIES:
            raise ConfigError(f"unknown polarity {polarity!r}; choose one of {', '.join(POLARITIES)}")
        check_int("threads", threads, optional=True)
        files = locate(path, precision, verify=verify)
        c = core()
        device = str(device).upper()
        check_device(c, device)
        config = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_PRECISION_HINT": MATH[precision]}
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        if threads is not None:
            if not device.startswith("CPU"):
                raise ConfigError(f"threads sets CPU inference threads; device {device} does not take it")
            config["INFERENCE_NUM_THREADS"] = threads
        compiled, compile_batches = compile_model(c, files.xml, device, config)
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
        return self._engine.single

    @property
    def device(self) -> str:
        """The device(s) the model really executes on, read back from the compiled model (e.g. "CPU")."""
        try:
            return ",".join(self._engine.single.get_property("EXECUTION_DEVICES"))
        except RuntimeError:
            return self.requested_device

    @property
    def inference_precision(self) -> str | None:
        """The arithmetic precision the compiled model reports ("f32", "bf16", "f16"); devices that do not
        report it (AUTO, HETERO) are read from the runtime graph's activations; None if still unknown."""
        try:
            return self._engine.single.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except (RuntimeError, AttributeError):
            floats = [t for t in self.compute_precisions["activations"] if t in ("f32", "bf16", "f16")]
            return floats[0] if len(floats) == 1 else None

    @property
    def compute_precisions(self) -> dict[str, list[str]]:
        """Element types of the convolution and dense layers in OpenVINO's runtime graph, e.g.
        {"activations": ["u8"], "weights": ["i8"]} for int8 or {"activations": ["f32"], "weights": ["f16"]} for fp16."""
        acts, weights = set(), set()
        try:
            for op in self._engine.single.get_runtime_model().get_ordered_ops():
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
        check_int("top_k", top_k, 1, contract.NUM_CLASSES)
        t0 = time.perf_counter()
        pixels = prepare(image, self.polarity)  # uint8 or float32 (28, 28)
        t1 = time.perf_counter()
        engine = self._engine
        request = engine.borrow(1)  # the batch-1 path: a batch of one on the static batch-1 compile
        try:
            normalize(pixels, request.pixels)
            request.run()
            if timings is not None:
                timings["prepare_s"], timings["infer_s"] = t1 - t0, time.perf_counter() - t1
            return self._prediction(request.scores, top_k)
        finally:
            engine.give_back(request)

    def to_input(self, images) -> np.ndarray:
        """A sequence of images (any accepted input) -> the model's input, float32 (N, 28, 28, 1) in [0, 1],
        decoded and preprocessed on the thread pool; a bad item raises its InputImageError with `index` set."""
        batch = _Images(images, self.polarity)
        if batch.stack is not None:
            return normalize(batch.stack)
        x = np.empty((batch.count, *INPUT), np.float32)
        for i, result in enumerate(batch.pixels()):
            normalize(_unwrap(result), x[i, :, :, 0])
        return x

    def predict_tensor(self, x: np.ndarray) -> np.ndarray:
        """The model on its own input, no preprocessing: float32 (N, 28, 28, 1) in [0, 1] -> float32 (N, 10).

        What a serving protocol hands over (tensor `image` of the model repository). Batch 1 runs on the
        static batch-1 compile, larger batches on the dynamic-batch one."""
        return self._engine.infer(x)

    def predict_proba(self, images, batch_size: int = 64) -> np.ndarray:
        """Class probabilities float32 (N, 10) for a sequence of images or an (N, H, W[, C]) array.

        Photos (encoded bytes, paths, PIL images, frames) are decoded and preprocessed on every core at once,
        in input order. On a classifier loaded with hint="throughput" the batches run through OpenVINO's
        streams in parallel (one request in flight per stream); otherwise one after another."""
        batch = _Images(images, self.polarity)
        check_int("batch_size", batch_size)
        total = batch.count
        stack = batch.stack
        if total == 1:  # one image: straight to the batch-1 request, as predict does
            return self._engine.one(stack[0] if stack is not None else _unwrap(next(batch.pixels())))[None]
        n = self._engine.batch_size(min(batch_size, total))
        pixels = batch.pixels() if stack is None else None

        def fill(start: int, x: np.ndarray) -> None:  # x: the request's (n, 28, 28, 1) input
            k = min(n, total - start)
            if stack is not None:  # a dataset-form stack: one normalisation for the whole batch
                normalize(stack[start : start + k], x[:k, :, :, 0])
            else:
                for j in range(k):
                    normalize(_unwrap(next(pixels)), x[j, :, :, 0])
            x[k:] = 0.0  # a short last batch is padded: a request keeps one shape (see engine._Request)

        out = np.empty((total, contract.NUM_CLASSES), np.float32)
        jobs = self._engine.streams(n) if total > n else 1
        for start, probs in self._engine.map(range(0, total, n), fill, n, jobs):
            out[start : start + n] = probs[: min(n, total - start)]
        return out

    def predict_batch(self, images, top_k: int = 3, batch_size: int = 64) -> list[Prediction]:
        """Classify many images in batches of `batch_size`; one Prediction per image, in input order.

        A bad item raises its InputImageError subclass with `index` set and named in the message."""
        check_int("top_k", top_k, 1, contract.NUM_CLASSES)
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
        check_int("top_k", top_k, 1, contract.NUM_CLASSES)
        if processes == "auto":
            many = hasattr(images, "__len__") and len(images) >= PROCESSES_FROM
            processes = usable_cores() if many and usable_cores() > 1 else 0
        check_int("processes", processes, 0)
        if errors not in ("raise", "return"):
            raise ConfigError(f"errors must be 'raise' or 'return', got {errors!r}")
        check_int("batch_size", batch_size)
        n = self._engine.batch_size(batch_size)
        reader = _Images(images, self.polarity, stream=True)
        leftover: list[InputImageError] = []  # bad items after the last image: nothing to infer for them

        def groups() -> Iterator[list]:
            """The stream cut into groups of `n` good images, each bad item (errors="return") in its place."""
            group, rows = [], 0
            for result in reader.pixels(processes):
                if isinstance(result, InputImageError) and errors == "raise":
                    raise result
                group.append(result)
                rows += not isinstance(result, InputImageError)
                if rows == n:
                    yield group
                    group, rows = [], 0
            if rows:
                yield group
            else:
                leftover.extend(group)

        def fill(group: list, x: np.ndarray) -> None:
            good = [p for p in group if not isinstance(p, InputImageError)]
            for j, p in enumerate(good):
                normalize(p, x[j, :, :, 0])
            x[len(good) :] = 0.0

        for group, probs in self._engine.map(groups(), fill, n):
            row = 0
            for item in group:
                if isinstance(item, InputImageError):
                    yield item
                else:
                    yield self._prediction(probs[row], top_k)
                    row += 1
        yield from leftover

    def predict_async(self, images: Iterable, top_k: int = 3, jobs: int | None = None) -> list[Prediction]:
        """Classify an iterable of images with `jobs` batch-1 infer requests in flight: preprocessing of the next
        image overlaps inference of the previous ones. Results come back in input order.

        jobs: infer requests in flight (default: the compiled model's optimal number; load with
        hint="throughput" to get several streams)."""
        check_int("top_k", top_k, 1, contract.NUM_CLASSES)
        if jobs is None:
            jobs = max(2, int(self._engine.single.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        check_int("jobs", jobs, optional=True)

        def fill(pixels: np.ndarray | InputImageError, x: np.ndarray) -> None:
            normalize(_unwrap(pixels), x[0, :, :, 0])

        reader = _Images(images, self.polarity, stream=True)
        return [self._prediction(probs[0], top_k) for _, probs in self._engine.map(reader.pixels(ahead=False), fill, 1, jobs)]

    def __call__(self, image, top_k: int = 3) -> Prediction:
        return self.predict(image, top_k)

    # ------------------------------------------------------------------ internals

    def _prediction(self, probabilities: np.ndarray, top_k: int) -> Prediction:
        p = probabilities.tolist()  # 10 Python floats: cheaper to rank than numpy calls on 10 elements
        names = self.class_names
        if top_k == 1:
            best = p.index(max(p))
            return Prediction(names[best], best, p[best], ((names[best], p[best]),))
        order = sorted(range(len(p)), key=p.__getitem__, reverse=True)[:top_k]  # stable: ties keep class order
        best = order[0]
        return Prediction(names[best], best, p[best], tuple([(names[j], p[j]) for j in order]))


class _Images:
    """The one reader of many images: a sequence, an (N, H, W[, C]) array or (`stream`) any iterable ->
    dataset-form pixels of each, in input order, or a bad item's InputImageError (with `index`) in its place.

    `stack` is a dataset-form array (N, 28, 28) -- uint8, or float in [0, 1] -- that needs no per-image work
    at all (None otherwise); `count` is the number of images where it is known."""

    def __init__(self, images, polarity: str, stream: bool = False):
        self.polarity = polarity
        self.stack: np.ndarray | None = None
        if isinstance(images, np.ndarray):
            if images.ndim < 3:
                raise ImageShapeError(
                    f"a batch must be a sequence of images or an (N, H, W[, C]) array, got shape {images.shape}; "
                    "for one image use predict()"
                )
            self.stack = _dataset_stack(images)
            self.items = images if self.stack is None else self.stack
        elif isinstance(images, (str, bytes, os.PathLike)) or not hasattr(images, "__iter__"):
            raise ImageTypeError(
                f"a batch must be a sequence of images, got a {type(images).__name__}; for one image use predict()"
            )
        else:
            self.items = images if stream else list(images)
        self.count: int | None = len(self.items) if hasattr(self.items, "__len__") else None

    def pixels(self, processes: int = 0, ahead: bool = True) -> Iterator[np.ndarray | InputImageError]:
        """Each item's pixels: a stack's rows as they are; a single item, or all with ahead=False, prepared
        here one by one; else prepared a few items ahead on the shared thread pool (decoding releases the GIL)
        or on `processes` worker processes."""
        if self.stack is not None:
            return iter(self.stack)
        if not ahead or (self.count is not None and self.count <= 1):
            return (_prepare_or_error(item, i, self.polarity) for i, item in enumerate(self.items))
        return _ahead(self.items, self.polarity, processes)


def _dataset_stack(images: np.ndarray) -> np.ndarray | None:
    """(N, 28, 28[, 1]) uint8, or float with every value in [0, 1] -> an (N, 28, 28) view; None for anything
    else, which goes image by image (and a bad one is named by its index)."""
    if type(images) is not np.ndarray or images.shape[1:3] != contract.IMAGE_SHAPE or images.shape[3:] not in ((), (1,)):
        return None
    if images.dtype != np.uint8:
        if images.dtype.kind != "f" or not images.size or not (images.min() >= 0.0 and images.max() <= 1.0):
            return None  # NaN fails both comparisons, inf one of them
    return images.reshape(images.shape[:3])


def _ahead(items: Iterable, polarity: str, processes: int) -> Iterator[np.ndarray | InputImageError]:
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
                window.append(pool.submit(_prepare_or_error, item, i, polarity))
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
