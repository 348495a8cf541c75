"""A fleet under rollouts: kiosks that pull from one model store, under load, while versions are published.

Each kiosk is `fmnist-edge serve --repository STORE --cache ITS_OWN_FOLDER` in its own process, as on a shop's
boxes. `Load` runs tritonclient's async HTTP clients against every kiosk from a thread of this process and keeps
every answer's version and every failure. `rollouts` publishes versions one after another and times each from the
publish command's start to the moment every kiosk's /health names it. Shared by tests/test_fleet.py (a few
rollouts, every request must succeed) and benchmarks/fleet.py (the figures).
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAME, MODEL_NAME, OUTPUT_NAME
from .load import serving_version, start_server, stop_server


class Load:
    """`concurrency` clients per kiosk port, sending v2 FP32 batch-1 requests one after another until `stop()`."""

    def __init__(self, ports: list[int], x: np.ndarray, concurrency: int = 2):
        self.ports, self.x, self.concurrency = ports, x, concurrency
        self.answered: collections.Counter = collections.Counter()  # (port, version) -> requests answered
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="fleet-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> dict:
        """Stop the clients -> {"requests", "failed", "errors" (the first few, distinct), "versions" per port}."""
        self._stop.set()
        self._thread.join(60)
        by_port: dict[int, dict[str, int]] = {}
        for (port, version), n in sorted(self.answered.items()):
            by_port.setdefault(port, {})[version] = n
        return {"requests": sum(self.answered.values()), "failed": len(self.errors),
                "errors": sorted(set(self.errors))[:5], "versions": by_port}

    def total(self) -> int:
        return sum(self.answered.values()) + len(self.errors)

    async def _run(self) -> None:
        import tritonclient.http.aio as httpclient

        inp = httpclient.InferInput(INPUT_NAME, list(self.x.shape), "FP32")
        inp.set_data_from_numpy(self.x, binary_data=True)
        out = [httpclient.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]
        clients = {port: httpclient.InferenceServerClient(f"127.0.0.1:{port}", conn_limit=self.concurrency)
                   for port in self.ports}

        async def one(port: int, client) -> None:
            while not self._stop.is_set():
                try:
                    result = await client.infer(MODEL_NAME, [inp], outputs=out)
                    self.answered[port, result.get_response()["model_version"]] += 1
                except Exception as exc:  # noqa: BLE001 -- every failure is counted and shown, the load goes on
                    self.errors.append(f"{port}: {type(exc).__name__}: {str(exc)[:160]}")

        try:
            await asyncio.gather(*(one(port, c) for port, c in clients.items() for _ in range(self.concurrency)))
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()))


def start_kiosks(uri: str, caches: list[Path], env: dict, *extra: str) -> list[tuple]:
    """One `serve --repository URI --cache C` process per cache folder -> [(process, port)]."""
    kiosks = []
    try:
        for cache in caches:
            kiosks.append(start_server("--repository", uri, "--cache", cache, "--precision", "fp32", *extra, env=env))
    except BaseException:
        for proc, _ in kiosks:
            stop_server(proc)
        raise
    return kiosks


def wait_serving(ports: list[int], version: str, timeout_s: float) -> list[float]:
    """Wait until every kiosk serves `version` -> seconds until each did, from now; TimeoutError past the deadline."""
    start = time.monotonic()
    done: dict[int, float] = {}
    while len(done) < len(ports):
        for port in ports:
            if port not in done and _version(port) == version:
                done[port] = time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            missing = [p for p in ports if p not in done]
            raise TimeoutError(f"kiosks on ports {missing} did not serve version {version} within {timeout_s:.0f} s")
        time.sleep(0.02)
    return [done[p] for p in ports]


def _version(port: int) -> str | None:
    try:
        return serving_version(port)
    except OSError:  # not listening yet, or restarting
        return None


def rollouts(publish, ports: list[int], first: int, count: int, timeout_s: float = 120.0, gap_s: float = 0.0,
             log=print) -> list[dict]:
    """Call `publish()` `count` times (versions first .. first+count-1); after each, wait for every kiosk to serve
    it -> one row per rollout: seconds from the publish's start to each kiosk serving it, and the publish alone.
    Each publish waits a random 0..`gap_s` first: right after a swap the kiosks' next poll is a whole interval
    away, so back-to-back publishes would all be timed at the worst phase of the poll."""
    rows = []
    for version in range(first, first + count):
        time.sleep(random.uniform(0.0, gap_s))
        t0 = time.monotonic()
        publish()
        published = time.monotonic() - t0
        each = [published + s for s in wait_serving(ports, str(version), timeout_s)]
        rows.append({"version": version, "publish_s": round(published, 3), "to_kiosks_s": [round(s, 3) for s in each]})
        log(f"version {version}: published in {published:.2f} s, serving on every kiosk after {max(each):.2f} s")
    return rows
