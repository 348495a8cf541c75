"""The way from a decoded infer request to its answer, shared by the protocols (REST and gRPC): the served model
by name and version, the worker threads and their queue limit, dynamic batching, and the statistics.

With `max_batch_delay_us` 0 every request runs alone: a small FP32 batch on the event loop (a sub-millisecond
model call costs less there than the hop to a worker thread and back), photos and large batches in a worker
thread. With a delay, requests go through `batching.Batcher`: photos are prepared in a worker thread first,
then their tensors join the queue like any other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from .. import faults
from ..errors import FmnistEdgeError
from . import v2
from .batching import Batcher
from .limits import INLINE_BATCH, MAX_QUEUE
from .repository import ServedModel, UnknownVersion, Unloaded
from .stats import Statistics
from .status import HTTPError

T = TypeVar("T")


class Busy(HTTPError):
    """Too many requests already wait for the model (503)."""

    def __init__(self, queued: int):
        super().__init__(503, f"the server is busy ({queued} requests in the queue); try again in a moment")


class Inference:
    """What every infer request shares, whatever protocol brought it."""

    def __init__(self, models: ServedModel, *, metrics=None, max_queue: int = MAX_QUEUE, max_batch_delay_us: int = 0,
                 preferred_batch_sizes: tuple[int, ...] = (), max_batch: int = v2.MAX_BATCH):
        if max_batch_delay_us < 0:
            raise ValueError("--max-batch-delay-us must be 0 (no batching) or more")
        self.models, self.metrics, self.max_queue = models, metrics, max_queue
        self.queued = 0  # requests waiting for or running in the worker threads, or waiting for a batch
        self.stats = Statistics()
        self.max_batch_delay_us = max_batch_delay_us
        self._versions: dict[int, str] = {}  # id(classifier) -> its version, for the batch statistics
        self.batcher = None if max_batch_delay_us == 0 else Batcher(
            lambda clf, x: clf.predict_tensor(x), max_delay_s=max_batch_delay_us / 1e6,
            preferred=preferred_batch_sizes, max_batch=max_batch, on_batch=self._executed)

    def model(self, name: str, version: str | None = None):
        """(version, classifier) of model `name`: the version asked for, else the current one; 404 if neither, 400
        (v2.ModelUnloaded) after an operator's unload."""
        v2.check_model(name)
        try:
            return self.models.get(version)
        except Unloaded:
            raise v2.ModelUnloaded() from None
        except UnknownVersion:
            raise v2.ProtocolError(f"model {v2.MODEL_NAME!r} has no version {version!r} loaded; it serves "
                                   f"{', '.join(self.models.served_versions())}", 404) from None

    async def in_worker(self, fn: Callable[..., T], *args) -> T:
        """Run `fn` in the thread pool, unless `max_queue` requests already wait: then 503 at once, so a burst is
        told to come back instead of growing a queue whose tail times out anyway."""
        from starlette.concurrency import run_in_threadpool

        self._admit()
        self.queued += 1
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self.queued -= 1

    def _admit(self) -> None:
        if self.queued >= self.max_queue:
            raise Busy(self.queued)

    async def infer(self, req: v2.InferRequest, served: str, clf, endpoint: str, encode: Callable[[np.ndarray], T]) -> T:
        """Run `req` on `clf` (version `served`) and `encode` its (N, 10) probabilities; counted in the statistics
        and metrics whether it succeeds or fails, and reported to the served model (a canary is judged on it)."""
        t0 = time.perf_counter_ns()
        try:
            faults.serving(served)
            prep_ns = 0
            if req.tensor is not None:
                x = req.tensor
            else:
                x = await self.in_worker(clf.to_input, req.photos)
                prep_ns = time.perf_counter_ns() - t0
            if self.batcher is not None:
                self._admit()
                self.queued += 1
                self._versions[id(clf)] = served
                try:
                    probs, timing = await self.batcher.submit(clf, x)
                finally:
                    self.queued -= 1
                queue_ns, infer_ns = timing.queue_ns, timing.infer_ns
            else:
                t1 = time.perf_counter_ns()
                if req.tensor is not None and req.batch <= INLINE_BATCH:
                    probs = clf.predict_tensor(x)
                else:
                    probs = await self.in_worker(clf.predict_tensor, x)
                queue_ns, infer_ns = 0, time.perf_counter_ns() - t1
                self.stats.execution(served, req.batch, infer_ns, prep_ns)
            t2 = time.perf_counter_ns()
            out = encode(probs)
        except BaseException as exc:
            self.stats.fail(served, time.perf_counter_ns() - t0)
            self.outcome(served, exc, time.perf_counter_ns() - t0)
            raise
        t3 = time.perf_counter_ns()
        self.stats.success(served, req.batch, t3 - t0, queue_ns, prep_ns, infer_ns, t3 - t2)
        self.outcome(served, None, t3 - t0)
        if self.metrics is not None:
            self.metrics.observe_model(endpoint, prep_ns / 1e9 if req.tensor is None else None, infer_ns / 1e9)
        return out

    def outcome(self, served: str, exc: BaseException | None, ns: int) -> None:
        """Report a request's end to the served model: a success, or a failure that is the server's fault -- not
        a bad input, a refusal (4xx, a full queue) or a client that went away, which say nothing of a version."""
        if exc is None:
            self.models.record(served, True, ns / 1e9)
        elif not isinstance(exc, (HTTPError, FmnistEdgeError, asyncio.CancelledError)):
            self.models.record(served, False, ns / 1e9)

    def _executed(self, clf, n: int, infer_ns: int) -> None:
        self.stats.execution(self._versions.get(id(clf), "?"), n, infer_ns)

    def statistics(self, name: str = v2.MODEL_NAME, version: str | None = None) -> dict:
        """The statistics extension's answer for model `name` (all its served versions, or `version`)."""
        if name:
            self.model(name, version)
        served = self.models.served_versions()
        self.stats.forget(served)
        return self.stats.model_stats([version] if version else served)
