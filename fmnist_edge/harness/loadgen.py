"""Load on a live `fmnist-edge serve` with tritonclient's async clients: requests/s and latency per concurrency.

The server runs in its own process, as in a shop; this process runs the official clients
(`tritonclient.http.aio`, and `tritonclient.grpc.aio` where the server listens for gRPC), `concurrency`
coroutines each sending one request after another for `seconds`. Requests are v2 infer requests with a binary
FP32 tensor of one image, or BYTES camera photos. `compare_batching` runs the same load against servers that
differ only in `--max-batch-delay-us`, alternating between them, so that drift on a shared host hits both.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from ..contract import INPUT_NAME, MODEL_NAME, OUTPUT_NAME
from .load import start_server, stop_server


def _http_inputs(x: np.ndarray | None, photos: list[bytes] | None):
    import tritonclient.http.aio as httpclient

    if photos is not None:
        inp = httpclient.InferInput(INPUT_NAME, [len(photos)], "BYTES")
        inp.set_data_from_numpy(np.array(photos, dtype=np.object_), binary_data=True)
    else:
        inp = httpclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
    return [inp], [httpclient.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]


def _grpc_inputs(x: np.ndarray | None, photos: list[bytes] | None):
    import tritonclient.grpc.aio as grpcclient

    if photos is not None:
        inp = grpcclient.InferInput(INPUT_NAME, [len(photos)], "BYTES")
        inp.set_data_from_numpy(np.array(photos, dtype=np.object_))
    else:
        inp = grpcclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
    return [inp], [grpcclient.InferRequestedOutput(OUTPUT_NAME)]


async def _load(protocol: str, address: str, concurrency: int, seconds: float, x=None, photos=None) -> dict:
    if protocol == "grpc":
        import tritonclient.grpc.aio as client_module

        inputs, outputs = _grpc_inputs(x, photos)
        client = client_module.InferenceServerClient(address)
    else:
        import tritonclient.http.aio as client_module

        inputs, outputs = _http_inputs(x, photos)
        client = client_module.InferenceServerClient(address, conn_limit=max(concurrency, 1))
    latencies: list[float] = []
    errors: list[str] = []
    try:
        await client.infer(MODEL_NAME, inputs, outputs=outputs)  # the connection(s) up, the server warm
        stop = time.perf_counter() + seconds

        async def one_client():
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    await client.infer(MODEL_NAME, inputs, outputs=outputs)
                except Exception as exc:  # noqa: BLE001 -- every failure is counted and shown, the load goes on
                    errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    continue
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    finally:
        await client.close()
    ms = np.asarray(latencies) * 1e3
    return {"protocol": protocol, "concurrency": concurrency, "requests": len(latencies), "failed": len(errors),
            "errors": sorted(set(errors))[:5], "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 3) if len(ms) else None}


def run(protocol: str, address: str, concurrency: int, seconds: float, x=None, photos=None) -> dict:
    """One load step: `concurrency` async clients for `seconds` -> a result row."""
    return asyncio.run(_load(protocol, address, concurrency, seconds, x, photos))


def compare_batching(artifacts, delays_us=(0, 500), concurrency=(1, 8, 32, 64), seconds: float = 5.0,
                     rounds: int = 2, precision: str = "auto", preferred: tuple[int, ...] = (), log=print) -> dict:
    """The same v2 FP32 batch-1 load against one server per `--max-batch-delay-us` (each serving `precision`, as
    `serve` does by default: auto), alternating `rounds` times; each row is the median of its rounds' requests/s,
    p50 and p99."""
    from ..data import load
    from ..runtime import to_model_input

    x = to_model_input(load().x_test[:1])
    servers = {}
    try:
        for delay in delays_us:
            args = ["--model", artifacts, "--precision", precision, "--max-batch-delay-us", str(delay)]
            for p in preferred:
                args += ["--preferred-batch-size", str(p)]
            servers[delay] = start_server(*args)
        runs: dict[tuple[int, int], list[dict]] = {}
        for r in range(rounds):
            for c in concurrency:
                for delay, (_, port) in servers.items():
                    row = run("http", f"127.0.0.1:{port}", c, seconds, x=x)
                    runs.setdefault((delay, c), []).append(row)
                    log(f"round {r + 1} delay {delay:>6} us concurrency {c:>3}: {row['requests_per_s']:>8.1f} req/s, "
                        f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, {row['failed']} failed")
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    rows = []
    for (delay, c), rs in runs.items():
        rows.append({"max_batch_delay_us": delay, "concurrency": c,
                     "requests_per_s": float(np.median([r["requests_per_s"] for r in rs])),
                     "p50_ms": float(np.median([r["p50_ms"] for r in rs if r["p50_ms"] is not None] or [np.nan])),
                     "p99_ms": float(np.median([r["p99_ms"] for r in rs if r["p99_ms"] is not None] or [np.nan])),
                     "failed": sum(r["failed"] for r in rs), "rounds": rs})
    return {"rows": rows, "precision": precision, "seconds_per_step": seconds, "rounds": rounds,
            "preferred_batch_sizes": list(preferred)}


def main(argv: list[str] | None = None) -> int:
    """python -m fmnist_edge.harness.loadgen [ARTIFACTS] [DELAY_US] [SECONDS]: v2 FP32 batch-1 requests at
    concurrency 1, 8, 32 and 64 against `serve --max-batch-delay-us 0` and DELAY_US (default 500), alternating;
    writes benchmarks/results/serve_batching.json and prints the c=32 ratio."""
    import json
    import sys
    from pathlib import Path

    from ..atomic import write_json
    from ..benchmarks.machine import machine

    argv = sys.argv[1:] if argv is None else argv
    artifacts = argv[0] if argv else "artifacts"
    delay = int(argv[1]) if len(argv) > 1 else 500
    seconds = float(argv[2]) if len(argv) > 2 else 5.0
    result = {"machine": machine(), **compare_batching(artifacts, delays_us=(0, delay), seconds=seconds)}
    by = {(r["max_batch_delay_us"], r["concurrency"]): r for r in result["rows"]}
    base, batched = by.get((0, 32)), by.get((delay, 32))
    if base and batched:
        result["c32"] = {"requests_per_s_ratio": round(batched["requests_per_s"] / base["requests_per_s"], 3),
                         "p99_ms": [base["p99_ms"], batched["p99_ms"]]}
    out = Path("benchmarks/results/serve_batching.json")
    write_json(out, result)
    print(json.dumps({"c32": result.get("c32"), "failed": sum(r["failed"] for r in result["rows"]), "results": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
