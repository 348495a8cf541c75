"""The inference engine behind `Classifier`: the model compiled once per shape and its pooled infer requests.

Every prediction runs the same way: borrow a request of batch n from a pool (n = 1: the static batch-1
compile, the kiosk's path; n > 1: the dynamic-batch compile, made on first use), write the batch straight
into the request's input buffer, run it, read its output buffer, give the request back. `Engine.map` is that
loop over many batches, with several requests in flight where the device has several streams.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from .. import contract
from ..data import normalize
from ..errors import DeviceError, ImageShapeError, ImageTypeError, ImageValueError, ModelFileError, first_line
from .core import ov

INPUT = contract.INPUT_SHAPE[1:]  # one image as the model takes it: (28, 28, 1)
# batch sizes whose requests are pooled at once (a batching server sees every size to 64); a new one beyond drops
# the oldest size's pool
BATCH_SHAPES = 64
K = TypeVar("K")
# The infer request's own synchronous call (C++; the GIL released while it runs), below the Python wrapper's
# input dispatch: the tensors are set once on each request, and its outputs are our own buffers.
_INFER = ov.InferRequest.__mro__[1].infer


class _Request:
    """An infer request of one batch size for life, whose input and output tensors share memory with numpy
    arrays: a batch is written into `x` and read from `probs` without allocating or asking OpenVINO for them.
    (Swapping shapes on one request crashed OpenVINO 2026.4's CPU plugin in our tests.)"""

    __slots__ = ("request", "n", "x", "probs", "pixels", "scores")

    def __init__(self, compiled: ov.CompiledModel, n: int):
        self.n = n
        self.x = np.zeros((n, *INPUT), np.float32)  # (n, 28, 28, 1) float32 in [0, 1]
        self.probs = np.zeros((n, contract.NUM_CLASSES), np.float32)  # (n, 10) softmax probabilities
        self.pixels, self.scores = self.x[0, :, :, 0], self.probs[0]  # the first image's (28, 28) in, (10,) out
        self.request = compiled.create_infer_request()
        self.request.set_input_tensor(ov.Tensor(self.x, shared_memory=True))
        self.request.set_output_tensor(0, ov.Tensor(self.probs, shared_memory=True))

    def run(self) -> None:
        """Infer `x` into `probs`; the GIL is released while OpenVINO runs (10 us less a call than
        `start_async` + `wait`, 7% of an int8 batch-1 call on AVX-512)."""
        _INFER(self.request, {}, True, False)


class Engine:
    """A model compiled once for batch 1 and, on first use, for any batch; pools of infer requests per batch
    size that threads borrow for the length of one call (deque append/pop are atomic: no lock)."""

    def __init__(self, single: ov.CompiledModel, compile_batches: Callable[[], ov.CompiledModel] | None = None):
        self.single = single  # the static batch-1 compile
        self._compile_batches = compile_batches or (lambda: single)
        self._batches: ov.CompiledModel | None = None
        self._lock = threading.Lock()
        self.singles: collections.deque[_Request] = collections.deque([_Request(single, 1)])  # batch-1 pool
        self._pools: dict[int, collections.deque[_Request]] = {1: self.singles}
        self._streams: dict[int, int] = {}

    def batches(self) -> ov.CompiledModel:
        """The dynamic-batch compiled model, compiled once on first use (thread-safe)."""
        if self._batches is None:
            with self._lock:
                if self._batches is None:
                    self._batches = self._compile_batches()
        return self._batches

    def batch_size(self, wanted: int) -> int:
        """The batch size to run `wanted` images at a time with: 1 stays on the batch-1 compile (nothing else is
        compiled); more is capped by what the batch model takes."""
        if wanted <= 1:
            return 1
        return min(wanted, _batch_limit(self.batches()) or wanted)

    def streams(self, n: int) -> int:
        """Parallel streams of the model that runs batches of `n` (> 1 with hint="throughput" on a multi-core CPU)."""
        key = min(n, 2)
        if key not in self._streams:
            self._streams[key] = _streams(self.single if n == 1 else self.batches())
        return self._streams[key]

    def borrow(self, n: int) -> _Request:
        """A request of batch `n` for this thread alone; hand it back with `give_back`, error or not."""
        pool = self.singles if n == 1 else self._pools.get(n)
        if pool is None:  # a batch size not seen lately: keep the pools bounded (a server sees every size to 64)
            if len(self._pools) > BATCH_SHAPES:
                self._pools.pop(next(k for k in list(self._pools) if k != 1), None)
            pool = self._pools.setdefault(n, collections.deque())
        try:
            return pool.pop()
        except IndexError:  # every request of this size is busy in another thread: make one more
            return _Request(self.single if n == 1 else self.batches(), n)

    def give_back(self, request: _Request) -> None:
        pool = self.singles if request.n == 1 else self._pools.get(request.n)
        if pool is not None:  # else its size's pool was dropped meanwhile: let the request go too
            pool.append(request)

    def map(self, keys: Iterable[K], fill: Callable[[K, np.ndarray], None], n: int,
            jobs: int = 1) -> Iterator[tuple[K, np.ndarray]]:
        """The inference loop: for each key, `fill(key, x)` writes a batch into a request's (n, 28, 28, 1) input,
        the request runs, and (key, its (n, 10) output) comes back in key order. The output is the request's
        own buffer: read it before asking for the next one.

        jobs=1 runs each batch to its end before the next key is read (a stream's results come as soon as
        their batch is done); jobs > 1 keeps that many requests in flight while the next batch is prepared,
        one per device stream. An error in `fill` or in OpenVINO is raised after nothing is left in flight."""
        borrowed: list[_Request] = []
        flight: collections.deque[tuple[K, _Request]] = collections.deque()
        try:
            for key in keys:
                if len(borrowed) < jobs:
                    request = self.borrow(n)
                    borrowed.append(request)
                elif jobs == 1:
                    request = borrowed[0]
                else:  # every request is in flight: the oldest is the next one to report anyway
                    done, request = flight.popleft()
                    request.request.wait()
                    yield done, request.probs
                fill(key, request.x)
                if jobs == 1:
                    request.run()
                    yield key, request.probs
                else:
                    request.request.start_async()
                    flight.append((key, request))
            while flight:
                done, request = flight[0]
                request.request.wait()
                flight.popleft()
                yield done, request.probs
        finally:
            for _, request in flight:  # an error or an early stop: let what runs finish before reuse
                try:
                    request.request.wait()
                except RuntimeError:
                    pass
            for request in borrowed:
                self.give_back(request)

    def one(self, pixels: np.ndarray) -> np.ndarray:
        """One dataset-form image (28, 28) -> a new float32 (10,): the batch-1 path, no batching loop."""
        request = self.borrow(1)
        try:
            normalize(pixels, request.pixels)
            request.run()
            return request.scores.copy()
        finally:
            self.give_back(request)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The model on its own input, checked: float32 (N, 28, 28, 1) in [0, 1] -> a new float32 (N, 10)."""
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise ImageTypeError(f"the model's input is float32, got {x.dtype}")
        if x.ndim != 4 or x.shape[1:] != INPUT or x.shape[0] < 1:
            raise ImageShapeError(f"the model's input is {contract.input_shape_text()} with N >= 1, got shape {x.shape}")
        if not (x.min() >= 0.0 and x.max() <= 1.0):  # NaN fails both comparisons; inf fails one: no isfinite pass
            raise ImageValueError("the model's input holds values outside [0, 1] (pixel / 255), or NaN/inf")
        total = x.shape[0]
        if total == 1:  # the batch-1 path, as `Classifier.predict` runs it
            request = self.borrow(1)
            try:
                request.x[...] = x
                request.run()
                return request.probs.copy()
            finally:
                self.give_back(request)
        n = self.batch_size(total)
        out = np.empty((total, contract.NUM_CLASSES), np.float32)

        def fill(start: int, buffer: np.ndarray) -> None:
            buffer[...] = x[start : start + n]  # n divides total: the batch model takes any n, or only 1

        for start, probs in self.map(range(0, total, n), fill, n):
            out[start : start + n] = probs
        return out


def compile_model(c: ov.Core, xml: Path, device: str, config: dict) -> tuple[ov.CompiledModel, Callable[[], ov.CompiledModel]]:
    """Read and check an IR, compile it for batch 1 now -> (that, a function that compiles the batch model)."""
    try:
        model = c.read_model(str(xml))
    except RuntimeError as exc:
        raise ModelFileError(f"{xml} is not a readable OpenVINO model ({first_line(exc, 300)})") from None
    batch_limit = _check_ports(model, xml)
    single = model.clone()  # the kiosk path: a static batch of 1 runs ~8% faster than a dynamic batch (measured)
    single.reshape({single.input(0): ov.PartialShape([1, *INPUT])})
    compiled = _compile(c, single, device, config, xml)

    def compile_batches() -> ov.CompiledModel:
        return _compile(c, model, device, config, xml) if batch_limit is None else compiled

    return compiled, compile_batches


def check_device(c: ov.Core, device: str) -> None:
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
