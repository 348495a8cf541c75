"""Load on a live `fmnist-edge serve --repository`: requests/s and latency per concurrency, a hot reload in the middle.

The server runs in its own process (as in a shop), the clients are threads of this one, each with its own
keep-alive connection (`http.client`), so the figures include HTTP, the protocol and the model, and nothing
of the client's own imports. Two kinds of request: the Open Inference Protocol with a binary FP32 tensor
(batch 1), and a camera JPEG (640x480) posted to the kiosk's /predict. Midway through each step a new
version is published into the repository: every request must still succeed.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..contract import MODEL_NAME


def _binary_request(x: np.ndarray) -> tuple[bytes, dict]:
    raw = np.ascontiguousarray(x, "<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(x.shape),
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    return head + raw, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}


# The lines `serve` announces its ports with: the kiosk's URL, then (with --grpc-port) the gRPC address
ANNOUNCED = {"http": r"^kiosk: https?://127\.0\.0\.1:(\d+)/", "grpc": r"^grpc: 127\.0\.0\.1:(\d+) "}


def _launch(args, names: tuple[str, ...], timeout: float, env: dict | None) -> tuple[subprocess.Popen, list[int]]:
    """`fmnist-edge serve ARGS --port 0` in a child process -> (process, the ports its lines `names` announce)."""
    proc = subprocess.Popen([sys.executable, "-m", "fmnist_edge.cli", "serve", *map(str, args), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + timeout
    lines, ports = [], {}
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        for name in names:
            m = re.search(ANNOUNCED[name], line)
            if m:
                ports[name] = int(m.group(1))
        if len(ports) == len(names):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep the pipe drained
            return proc, [ports[n] for n in names]
    proc.kill()
    raise RuntimeError("the server did not start: " + "".join(lines)[-2000:])


def start_server(*args: str, timeout: float = 60.0, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    """`fmnist-edge serve ARGS` on a free port of 127.0.0.1 in a child process -> (process, port)."""
    proc, (port,) = _launch(args, ("http",), timeout, env)
    return proc, port


def start_grpc_server(*args: str, timeout: float = 60.0, env: dict | None = None) -> tuple[subprocess.Popen, int, int]:
    """`fmnist-edge serve ARGS --grpc-port 0` (REST and gRPC on free ports of 127.0.0.1) in a child process ->
    (process, REST port, gRPC port)."""
    proc, (port, grpc_port) = _launch([*args, "--grpc-port", "0"], ("http", "grpc"), timeout, env)
    return proc, port, grpc_port


def serving_version(port: int) -> str:
    """The version a live server's /health says it serves."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())["model"]["version"]
    finally:
        conn.close()


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM (a graceful shutdown), SIGKILL after 10 s."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _client(port: int, path: str, body: bytes, headers: dict, stop: threading.Event, out: list, errors: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        t = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append(f"HTTP {r.status}")
            else:
                out.append(time.perf_counter() - t)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def run(port: int, path: str, body: bytes, headers: dict, concurrency: int, seconds: float,
        midway=None) -> dict:
    """`concurrency` clients for `seconds`; `midway()` is called halfway through -> one result row."""
    stop, latencies, errors = threading.Event(), [], []
    threads = [threading.Thread(target=_client, args=(port, path, body, headers, stop, latencies, errors))
               for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds / 2)
    if midway is not None:
        midway()
    time.sleep(seconds / 2)
    stop.set()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1e3
    return {"concurrency": concurrency, "requests": len(latencies), "failed": len(errors),
            "errors": sorted(set(errors))[:5], "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 3) if len(ms) else None}


def load_test(artifacts, concurrency=(1, 8, 32), seconds: float = 10.0, precision: str = "fp32",
              reload: bool = True, log=print) -> dict:
    """Publish `artifacts` into a fresh repository, serve it, and measure both request kinds at each
    concurrency, publishing a new version midway through each step."""
    from ..artifact import precision_of
    from ..convert.serving import publish
    from ..data import load
    from ..runtime import to_model_input
    from .photos import make_photos

    ds = load()
    x = to_model_input(ds.x_test[:1])
    jpeg = make_photos(ds.x_test[:1], ds.y_test[:1], conditions=("camera",), sizes=("vga",))[0].data
    kinds = {"v2 binary FP32": ("/v2/models/fmnist/infer", *_binary_request(x)),
             "JPEG 640x480 /predict": ("/predict", jpeg, {"Content-Type": "image/jpeg"})}
    root = Path(tempfile.mkdtemp(prefix="fmnist-load-"))
    proc = None
    try:
        publish(artifacts, root, precision_of(precision).ir)  # the IR the precision loads (bf16: fp32's)
        proc, port = start_server("--repository", root, "--precision", precision)
        rows = []
        for kind, (path, body, headers) in kinds.items():
            for c in concurrency:
                midway = (lambda: publish(artifacts, root, precision_of(precision).ir)) if reload else None
                row = {"kind": kind, **run(port, path, body, headers, c, seconds, midway)}
                log(f"{kind:<22} concurrency {c:>3}: {row['requests_per_s']:>8.1f} req/s, p50 {row['p50_ms']} ms, "
                    f"p99 {row['p99_ms']} ms, {row['failed']} failed")
                rows.append(row)
        versions = sorted((p.name for p in (root / MODEL_NAME).iterdir() if p.name.isdigit()), key=int)
        return {"rows": rows, "published": len(versions), "serving_at_end": serving_version(port), "precision": precision,
                "seconds_per_step": seconds}
    finally:
        stop_server(proc)
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """python -m fmnist_edge.harness.load [ARTIFACTS] [SECONDS]: both request kinds at concurrency 1, 8 and 32, a new
    version published midway through each step; writes benchmarks/results/serve_load.json."""
    import json
    import sys

    from ..atomic import write_json
    from ..benchmarks.machine import machine

    argv = sys.argv[1:] if argv is None else argv
    artifacts = argv[0] if argv else "artifacts"
    seconds = float(argv[1]) if len(argv) > 1 else 10.0
    result = {"machine": machine(), **load_test(artifacts, concurrency=(1, 8, 32), seconds=seconds)}
    out = Path("benchmarks/results/serve_load.json")
    write_json(out, result)
    print(json.dumps({"failed": sum(r["failed"] for r in result["rows"]), "results": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

