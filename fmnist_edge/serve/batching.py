"""Dynamic batching: concurrent requests merged into one model call, as Triton's dynamic batcher does it.

A request's images (an FP32 batch, or photos already preprocessed into one) wait in a queue on the event loop.
The queue is sent to the model as one batch when it holds the largest preferred batch size, or when its oldest
request has waited `max_delay_s`, whichever comes first, and only while fewer than `slots` batches run; while
the model is busy the queue grows, so the next batch is larger. A batch takes whole requests, oldest first, up
to `max_batch` images, of one classifier only (a version swap or a request for an older version never mixes
models). The model runs in a worker thread; each request gets its own rows of the output back, as if it had
run alone.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Timing:
    """What one request spent, in nanoseconds: waiting in the queue, and in the model call of its batch."""

    queue_ns: int = 0
    infer_ns: int = 0
    batch: int = 0  # the images in the model call the request rode in


@dataclass
class _Item:
    model: object
    x: np.ndarray
    future: asyncio.Future
    t_in: int = field(default_factory=time.perf_counter_ns)


class Batcher:
    """Merges `submit`ted inputs of the same model into batches; `run(model, x)` computes a batch (in a thread).

    `on_batch(model, n, infer_ns)` is told of each model call (for the statistics)."""

    def __init__(self, run: Callable[[object, np.ndarray], np.ndarray], *, max_delay_s: float,
                 preferred: tuple[int, ...] = (), max_batch: int = 64, slots: int = 1,
                 on_batch: Callable[[object, int, int], None] | None = None):
        if max_delay_s <= 0:
            raise ValueError("a batcher needs a positive delay")
        self.run, self.max_delay_s, self.max_batch, self.slots = run, max_delay_s, max_batch, slots
        self.preferred = tuple(sorted(p for p in set(preferred) if 1 <= p <= max_batch)) or (max_batch,)
        self.on_batch = on_batch or (lambda *_: None)
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_images = 0
        self._running = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()

    @property
    def waiting(self) -> int:
        """Requests in the queue now."""
        return len(self._queue)

    async def submit(self, model, x: np.ndarray) -> tuple[np.ndarray, Timing]:
        """The model's output for `x` (N, ...) once its batch has run -> (its (N, 10) rows, what it waited)."""
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        item = _Item(model, x, loop.create_future())
        self._queue.append(item)
        self._queued_images += len(x)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._dispatch())
        return await item.future

    async def _dispatch(self) -> None:
        """Form batches while anything waits: each when the queue is full enough or its oldest is due."""
        while self._queue:
            if self._running >= self.slots or (
                    self._queued_images < self.preferred[-1]
                    and time.perf_counter_ns() - self._queue[0].t_in < self.max_delay_s * 1e9):
                due = self._queue[0].t_in / 1e9 + self.max_delay_s - time.perf_counter() if self._running < self.slots else None
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), due if due is None or due > 0 else 0)
                except asyncio.TimeoutError:
                    pass
                continue
            items = self._take()
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(items))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _take(self) -> list[_Item]:
        """The oldest requests of the oldest request's model, whole, up to the largest preferred size that they
        reach (all of them, up to max_batch, when they reach none)."""
        model = self._queue[0].model
        fits, n = [], 0
        for item in self._queue:
            if item.model is not model:
                continue
            if fits and n + len(item.x) > self.max_batch:
                break
            fits.append(item)
            n += len(item.x)
        reached = [p for p in self.preferred if p <= n]
        if reached and reached[-1] < n:  # cut back to a preferred size where whole requests make one
            total, cut = 0, []
            for item in fits:
                if total + len(item.x) > reached[-1]:
                    break
                cut.append(item)
                total += len(item.x)
            if total == reached[-1]:
                fits = cut
        for item in fits:
            self._queue.remove(item)
            self._queued_images -= len(item.x)
        return fits

    async def _run(self, items: list[_Item]) -> None:
        import anyio

        t0 = time.perf_counter_ns()
        try:
            x = items[0].x if len(items) == 1 else np.concatenate([i.x for i in items])
            probs = await anyio.to_thread.run_sync(self.run, items[0].model, x)
        except BaseException as exc:  # noqa: BLE001 -- every waiting request gets the batch's error, then it goes on
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._running -= 1
            if self._wake is not None:
                self._wake.set()
        t1 = time.perf_counter_ns()
        self.on_batch(items[0].model, len(x), t1 - t0)
        start = 0
        for item in items:
            n = len(item.x)
            if not item.future.done():  # a client that went away cancelled its future
                item.future.set_result((probs[start : start + n], Timing(t0 - item.t_in, t1 - t0, len(x))))
            start += n
