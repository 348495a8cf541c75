"""Soak: many predictions through one shared Classifier from several threads; memory must stay flat."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def soak(folder: str | Path, n: int, images: np.ndarray, precision: str = "fp32", threads: int = 4,
         progress=None) -> dict:
    """Run `n` predictions of dataset-form uint8 `images` from `threads` threads on one Classifier.

    Compares every answer with a single-thread pass and samples RSS along the way.
    """
    from ..runtime import Classifier

    clf = Classifier.load(folder, precision=precision)
    expected = [clf.predict(img).index for img in images]
    for img in images[:50]:  # settle caches and lazily created requests before the first RSS sample
        clf.predict(img)
    rss_start = rss_mb()
    samples = [rss_start]
    mismatches = []
    lock = threading.Lock()
    per_thread = n // threads

    def work(tid: int):
        for i in range(per_thread):
            j = (tid * 7919 + i) % len(images)
            got = clf.predict(images[j]).index
            if got != expected[j]:
                with lock:
                    mismatches.append({"thread": tid, "image": int(j), "expected": expected[j], "got": int(got)})
            if i % 1000 == 999:
                with lock:
                    samples.append(rss_mb())
                    if progress:
                        progress(1000)

    t = time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    wall = time.perf_counter() - t
    rss_end = rss_mb()
    return {"predictions": per_thread * threads, "threads": threads, "precision": precision, "wall_s": wall,
            "predictions_per_s": per_thread * threads / wall, "rss_start_mb": rss_start, "rss_end_mb": rss_end,
            "rss_max_mb": max(samples + [rss_end]), "rss_growth_mb": rss_end - rss_start,
            "mismatches": len(mismatches), "mismatch_examples": mismatches[:10]}
