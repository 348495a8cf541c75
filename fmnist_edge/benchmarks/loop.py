"""The one benchmark loop: warm-up calls, then timed calls with perf_counter, summarised as a flat dict."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def timed_loop(step: Callable[[], object], warmup: int = 20, iters: int = 200, duration: float | None = None) -> dict:
    """Call `step` `warmup` times untimed, then `iters` times (or for `duration` seconds) timed.

    Returns {"first_us", "latency_us": {"p50", "p90", "p99", "mean", "min"}, "n", "total_s"}; the
    first call of all (often a lazy compile) is reported apart as first_us.
    """
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        step()
    times = []
    end = time.perf_counter() + duration if duration else None
    start = time.perf_counter()
    while (end is None and len(times) < iters) or (end is not None and time.perf_counter() < end):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    us = np.asarray(times) * 1e6
    return {
        "first_us": first * 1e6,
        "latency_us": {
            "p50": float(np.percentile(us, 50)),
            "p90": float(np.percentile(us, 90)),
            "p99": float(np.percentile(us, 99)),
            "mean": float(us.mean()),
            "min": float(us.min()),
        },
        "n": len(times),
        "total_s": total,
    }
