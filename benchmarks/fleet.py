"""The fleet benchmark (issue 27): two kiosks pulling signed versions from an S3 store under load.

    python benchmarks/fleet.py [ARTIFACTS] [--publishes 10] [--idle-s 60] [--out benchmarks/results/fleet.json]

Measures, on one machine (the store is moto's S3 server in a child process, each kiosk is `fmnist-edge serve
--repository s3://... --cache ITS_OWN --trust KEY` in its own process, the load is tritonclient's async HTTP
clients, 2 per kiosk):
- time from the start of `publish --sign` to every kiosk serving the version: p50 and max over the publishes;
- requests that failed during the rollouts (target 0);
- store requests per kiosk per minute at idle (counted in the S3 server's own request log);
- restart from the cache with the store down: process start to serving (target < 2 s);
- the cost of verifying one version: signature, hashes and compile, warm-up, golden set (medians of 5).
Needs the [fleet] and [test] extras (s3fs, moto, tritonclient) and the data set (publish writes golden.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fmnist_edge.atomic import write_json
from fmnist_edge.benchmarks.machine import machine
from fmnist_edge.contract import INPUT_SHAPE
from fmnist_edge.convert.serving import publish
from fmnist_edge.data import load
from fmnist_edge.harness.fleet import Load, rollouts, start_kiosks, wait_serving
from fmnist_edge.harness.load import stop_server
from fmnist_edge.harness.stores import S3Server
from fmnist_edge.runtime import Classifier, to_model_input
from fmnist_edge.serve.remote import REMOTE_POLL_S
from fmnist_edge.signing import keygen, trusted_keys, verify
from fmnist_edge.store import _filesystem

URI = "s3://fleet/models"


def _verification_cost(folder: Path, public: Path, rounds: int = 5) -> dict:
    """Milliseconds per gate on one downloaded version, medians of `rounds`."""
    from fmnist_edge import golden

    keys = trusted_keys([public])
    times: dict[str, list[float]] = {"signature_ms": [], "hashes_and_compile_ms": [], "warm_up_ms": [], "golden_set_ms": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        verify(folder, keys)
        t1 = time.perf_counter()
        clf = Classifier.load(folder, precision="fp32")
        t2 = time.perf_counter()
        for batch in (1, 2):
            clf.predict_tensor(np.zeros((batch, *INPUT_SHAPE[1:]), np.float32))
        t3 = time.perf_counter()
        golden.check(folder, clf)
        t4 = time.perf_counter()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[name].append(seconds * 1e3)
    out = {name: round(statistics.median(v), 1) for name, v in times.items()}
    out["total_ms"] = round(sum(out.values()), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="?", default="artifacts")
    ap.add_argument("--publishes", type=int, default=10)
    ap.add_argument("--idle-s", type=float, default=60.0)
    ap.add_argument("--poll-seconds", default=None, help="serve --poll-seconds [default: serve's own, 10 s for a store]")
    ap.add_argument("--out", default="benchmarks/results/fleet.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fmnist-fleet-"))
    store = S3Server(log=work / "s3.log").start()
    os.environ.update(store.env())
    kiosks = []
    try:
        _filesystem("s3://fleet")[0].mkdir("fleet")
        private, public = keygen(work / "shop-key")
        publish(args.artifacts, URI, sign=private)
        caches = [work / "kiosk-a", work / "kiosk-b"]
        serve_args = ["--trust", str(public), *(["--poll-seconds", args.poll_seconds] if args.poll_seconds else [])]
        kiosks = start_kiosks(URI, caches, dict(os.environ), *serve_args)
        ports = [port for _, port in kiosks]
        wait_serving(ports, "1", 120)

        load_ = Load(ports, to_model_input(load().x_test[:1]), concurrency=2).start()
        poll = float(args.poll_seconds) if args.poll_seconds else REMOTE_POLL_S
        rows = rollouts(lambda: publish(args.artifacts, URI, sign=private), ports, first=2, count=args.publishes,
                        gap_s=poll)
        traffic = load_.stop()
        to_all = [max(r["to_kiosks_s"]) for r in rows]

        before = store.requests()
        time.sleep(args.idle_s)
        idle = (store.requests() - before) / len(kiosks) / (args.idle_s / 60.0)
        print(f"idle: {idle:.1f} store requests per kiosk per minute")

        newest = str(1 + args.publishes)
        cost = _verification_cost(caches[0] / "fmnist" / newest, public)
        print(f"verifying one version: {cost}")

        store.stop()  # the store goes down; kiosk A restarts and must serve its cache
        stop_server(kiosks[0][0])
        t0 = time.monotonic()
        kiosks[0] = start_kiosks(URI, caches[:1], dict(os.environ), *serve_args)[0]
        wait_serving([kiosks[0][1]], newest, 60)
        restart = time.monotonic() - t0
        print(f"restart from the cache, store down: {restart:.2f} s")
    finally:
        for proc, _ in kiosks:
            stop_server(proc)
        store.stop()

    result = {
        "machine": machine(), "kiosks": len(caches), "publishes": args.publishes, "load_clients_per_kiosk": 2,
        "poll_seconds": float(args.poll_seconds) if args.poll_seconds else "serve's default",
        "publish_to_all_kiosks_s": {"p50": round(statistics.median(to_all), 3), "max": round(max(to_all), 3)},
        "publish_alone_s": {"p50": round(statistics.median(r["publish_s"] for r in rows), 3)},
        "requests": traffic["requests"], "failed_requests": traffic["failed"], "errors": traffic["errors"],
        "idle_store_requests_per_kiosk_per_min": round(idle, 1), "idle_s": args.idle_s,
        "restart_from_cache_store_down_s": round(restart, 2), "verification_per_version": cost, "rollouts": rows,
    }
    write_json(Path(args.out), result)
    print(json.dumps({k: result[k] for k in ("publish_to_all_kiosks_s", "failed_requests",
                                              "idle_store_requests_per_kiosk_per_min", "restart_from_cache_store_down_s")}))
    return 0 if traffic["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
