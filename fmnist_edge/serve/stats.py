"""The statistics extension of the inference protocol, in Triton's format: per model version, how many requests
succeeded and failed, and where their time went (queue, compute_input, compute_infer, compute_output), plus one
row per batch size the model ran. `GET /v2/models/fmnist/stats` (REST) and `ModelStatistics` (gRPC) answer it;
tritonclient's `get_inference_statistics` reads it.

Requests count once each (`inference_count` counts images, `execution_count` model calls, which dynamic batching
makes fewer). Times are nanoseconds, summed. Updated on the event loop only: no lock.
"""

from __future__ import annotations

import time
from collections import defaultdict

from ..contract import MODEL_NAME

STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")
BATCH_STAGES = ("compute_input", "compute_infer", "compute_output")


def _duration() -> dict:
    return {"count": 0, "ns": 0}


class _Version:
    def __init__(self):
        self.last_inference = 0  # ms since the epoch
        self.inference_count = 0
        self.execution_count = 0
        self.stages = {s: _duration() for s in STAGES}
        self.batches: dict[int, dict] = defaultdict(lambda: {s: _duration() for s in BATCH_STAGES})


class Statistics:
    """Counters per served version."""

    def __init__(self):
        self._versions: dict[str, _Version] = defaultdict(_Version)

    def _add(self, stat: dict, ns: int) -> None:
        stat["count"] += 1
        stat["ns"] += int(ns)

    def success(self, version: str, images: int, total_ns: int, queue_ns: int, input_ns: int, infer_ns: int,
                output_ns: int) -> None:
        v = self._versions[version]
        v.last_inference = int(time.time() * 1000)
        v.inference_count += images
        for stage, ns in (("success", total_ns), ("queue", queue_ns), ("compute_input", input_ns),
                          ("compute_infer", infer_ns), ("compute_output", output_ns)):
            self._add(v.stages[stage], ns)

    def fail(self, version: str, total_ns: int) -> None:
        self._add(self._versions[version].stages["fail"], total_ns)

    def execution(self, version: str, batch: int, infer_ns: int, input_ns: int = 0, output_ns: int = 0) -> None:
        """One model call of `batch` images."""
        v = self._versions[version]
        v.execution_count += 1
        row = v.batches[batch]
        for stage, ns in (("compute_input", input_ns), ("compute_infer", infer_ns), ("compute_output", output_ns)):
            self._add(row[stage], ns)

    def forget(self, keep: list[str]) -> None:
        """Drop the versions no longer served."""
        for version in list(self._versions):
            if version not in keep:
                del self._versions[version]

    def model_stats(self, versions: list[str]) -> dict:
        """The extension's response for `versions` (each served version appears, counted or not)."""
        rows = []
        for version in versions:
            v = self._versions.get(version) or _Version()
            rows.append({
                "name": MODEL_NAME, "version": version, "last_inference": v.last_inference,
                "inference_count": v.inference_count, "execution_count": v.execution_count,
                "inference_stats": {s: dict(d) for s, d in v.stages.items()},
                "batch_stats": [{"batch_size": n, **{s: dict(d) for s, d in row.items()}}
                                for n, row in sorted(v.batches.items())],
            })
        return {"model_stats": rows}
