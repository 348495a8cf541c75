"""Soak a live `fmnist-edge serve --repository` with a mix of good and hostile requests; its memory must stay flat.

Clients (threads of this process, each with a keep-alive connection) send requests drawn from MIX: camera
JPEGs, v2 tensors and multipart uploads that must be answered 200, and corrupt photos, non-images, wrong
content types, malformed protocol bodies, unknown models and oversized uploads that must get their 4xx. One
more thread keeps SILENT connections open that send nothing (each must be dropped with a 408), and new
versions are published while it runs. Any other answer, or a failed connection, is an unexpected error. The
server's RSS is sampled from /proc as the requests go.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .load import _binary_request, serving_version, start_server, stop_server

SILENT = 16  # connections held open without a byte sent, renewed as the server drops them


def _multipart(data: bytes, ctype: str = "image/jpeg") -> tuple[bytes, dict]:
    boundary = "fmnist-soak-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"shot.jpg\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def request_mix(jpeg: bytes, x: np.ndarray, max_upload: int) -> list[tuple[str, float, str, bytes, dict, int]]:
    """(kind, weight, path, body, headers, expected status) for each kind of request the soak sends."""
    tensor, tensor_headers = _binary_request(x)
    form, form_headers = _multipart(jpeg)
    text_form, text_form_headers = _multipart(b"hello", "text/plain")
    jpeg_h = {"Content-Type": "image/jpeg"}
    infer = "/v2/models/fmnist/infer"
    return [
        ("jpeg", 40, "/predict", jpeg, jpeg_h, 200),
        ("v2 tensor", 25, infer, tensor, tensor_headers, 200),
        ("multipart", 5, "/predict", form, form_headers, 200),
        ("truncated jpeg", 8, "/predict", jpeg[: len(jpeg) // 3], jpeg_h, 422),
        ("not an image", 5, "/predict", b"GIF89a" + b"\0" * 200, jpeg_h, 422),
        ("text content type", 2, "/predict", b"hello", {"Content-Type": "text/plain"}, 415),
        ("text in multipart", 2, "/predict", text_form, text_form_headers, 415),
        ("bad v2 json", 5, infer, b'{"inputs": [', {"Content-Type": "application/json"}, 400),
        ("v2 wrong shape", 3, infer, json.dumps({"inputs": [{"name": "image", "shape": [1, 3], "datatype": "FP32",
                                                            "data": [0, 0, 0]}]}).encode(), {"Content-Type": "application/json"}, 400),
        ("unknown model", 2, "/v2/models/other/infer", tensor, tensor_headers, 404),
        ("oversized", 0.2, "/predict", b"\0" * (max_upload + 1024), jpeg_h, 413),
    ]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _client(port, plan, counts, unexpected, latencies, lock):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for kind, path, body, headers, expected in plan:
        t = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            status = r.status
            if r.getheader("connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            status = repr(exc)[:80]
            conn.close()
        with lock:
            counts[(kind, status)] += 1
            if status != expected:
                unexpected.append(f"{kind}: {status}")
            elif expected == 200:
                latencies.append(time.perf_counter() - t)
    conn.close()


def _silent(port, stop, dropped):
    """Keep SILENT idle connections open; count those the server answers 408 and closes."""
    socks = []
    while not stop.is_set():
        while len(socks) < SILENT:
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            s.setblocking(False)
            socks.append(s)
        for s in list(socks):
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 408") or not data:
                dropped[0 if data else 1] += 1
                s.close()
                socks.remove(s)
        stop.wait(0.2)
    for s in socks:
        s.close()


def soak(artifacts, requests: int = 100_000, clients: int = 32, reloads: int = 4, seed: int = 0, log=print) -> dict:
    """Serve `artifacts` from a fresh repository and send `requests` requests of the MIX from `clients` threads,
    publishing `reloads` new versions along the way -> counts, unexpected errors, latency and the RSS trace."""
    from ..convert.serving import publish
    from ..data import load
    from ..runtime import to_model_input
    from ..serve.app import DEFAULT_MAX_UPLOAD
    from .photos import make_photos

    ds = load()
    jpeg = make_photos(ds.x_test[:1], ds.y_test[:1], conditions=("camera",), sizes=("vga",))[0].data
    mix = request_mix(jpeg, to_model_input(ds.x_test[:1]), DEFAULT_MAX_UPLOAD)
    rng = random.Random(seed)
    drawn = rng.choices(mix, weights=[m[1] for m in mix], k=requests)
    plans = [[(k, p, b, h, e) for k, _, p, b, h, e in drawn[i::clients]] for i in range(clients)]
    root = Path(tempfile.mkdtemp(prefix="fmnist-soak-"))
    proc = None
    counts, unexpected, latencies, lock = Counter(), [], [], threading.Lock()
    try:
        publish(artifacts, root)
        proc, port = start_server("--repository", root)
        stop, dropped = threading.Event(), [0, 0]
        hostile = threading.Thread(target=_silent, args=(port, stop, dropped), daemon=True)
        threads = [threading.Thread(target=_client, args=(port, plan, counts, unexpected, latencies, lock))
                   for plan in plans]
        trace, t0 = [(0, rss_mb(proc.pid))], time.perf_counter()
        hostile.start()
        for t in threads:
            t.start()
        published, next_reload, published_at = 0, requests // (reloads + 1), None
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            done = sum(counts.values())
            trace.append((done, rss_mb(proc.pid)))
            if reloads and published < reloads and done >= next_reload * (published + 1):
                publish(artifacts, root)
                published, published_at = published + 1, time.perf_counter()
            if len(trace) % 20 == 0:
                log(f"{done:>7,} requests, {done / (time.perf_counter() - t0):,.0f}/s, server RSS {trace[-1][1]:.0f} MB, "
                    f"{len(unexpected)} unexpected")
        wall = time.perf_counter() - t0
        stop.set()
        hostile.join(10)
        serving, reload_s = _await_version(port, str(1 + published), published_at)
    finally:
        stop_server(proc)
        shutil.rmtree(root, ignore_errors=True)
    return {**_summary(trace, counts, unexpected, latencies, wall, requests, clients, published, serving, dropped),
            "last_version_served_after_s": reload_s}


def _await_version(port: int, version: str, published_at: float | None, patience_s: float = 60.0):
    """Wait (the repository polls) until the server serves `version` -> (what it serves, seconds since publish)."""
    while True:
        serving = serving_version(port)
        if serving == version or published_at is None or time.perf_counter() - published_at > patience_s:
            return serving, None if published_at is None else round(time.perf_counter() - published_at, 2)
        time.sleep(0.1)


def _summary(trace, counts, unexpected, latencies, wall, requests, clients, published, serving, dropped) -> dict:
    done = np.array([d for d, _ in trace], float)
    mb = np.array([m for _, m in trace], float)
    second_half = done >= done[-1] / 2
    slope = float(np.polyfit(done[second_half], mb[second_half], 1)[0]) * 10_000 if second_half.sum() > 2 else None
    after_warmup = mb[done >= done[-1] * 0.1]
    ms = np.asarray(latencies) * 1e3
    by_kind = {}
    for (kind, status), n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        by_kind.setdefault(kind, {})[str(status)] = n
    return {
        "requests": int(sum(counts.values())), "clients": clients, "wall_s": round(wall, 1),
        "requests_per_s": round(sum(counts.values()) / wall, 1),
        "unexpected": len(unexpected), "unexpected_examples": sorted(set(unexpected))[:10],
        "by_kind": by_kind,
        "silent_connections_dropped_408": dropped[0], "silent_connections_closed_without_408": dropped[1],
        "versions_published": published, "serving_at_end": serving,
        "good_p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "good_p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "rss_mb": {"start": round(float(mb[0]), 1), "after_10pct": round(float(after_warmup[0]), 1),
                   "max": round(float(mb.max()), 1), "end": round(float(mb[-1]), 1),
                   "slope_second_half_mb_per_10k": None if slope is None else round(slope, 3)},
        "rss_trace": [[int(d), round(m, 1)] for d, m in trace[:: max(1, len(trace) // 200)]],
    }


def main(argv: list[str] | None = None) -> int:
    """python -m fmnist_edge.harness.serve_soak [ARTIFACTS] [REQUESTS] [CLIENTS]: 100,000 requests by default from 32
    clients, good and hostile, 16 silent connections held open, 4 new versions published along the way; writes
    benchmarks/results/serve_soak.json and exits 1 on any unexpected answer or an RSS still growing in the second half."""
    import json
    import sys

    from ..atomic import write_json
    from ..benchmarks.machine import machine

    argv = sys.argv[1:] if argv is None else argv
    artifacts = argv[0] if argv else "artifacts"
    requests = int(argv[1]) if len(argv) > 1 else 100_000
    clients = int(argv[2]) if len(argv) > 2 else 32
    result = {"machine": machine(), **soak(artifacts, requests=requests, clients=clients)}
    write_json(Path("benchmarks/results/serve_soak.json"), result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("rss_trace", "machine")}, indent=2))
    growing = (result["rss_mb"]["slope_second_half_mb_per_10k"] or 0) > 1.0
    return 1 if result["unexpected"] or growing else 0


if __name__ == "__main__":
    raise SystemExit(main())

