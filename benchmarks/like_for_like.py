"""Like for like, interleaved: our precisions against onnxruntime and LiteRT at the same precisions, in one process.

Every backend is loaded once; then, round after round (the order rotated each round), each is timed at batch 1
(our side through `Classifier.predict`, fed uint8 dataset images) and at batch 64 (one synchronous call per
batch) through the one benchmark loop; the table shows each figure's median over the rounds and each model's
accuracy on the whole test set. A measurement for docs/results.md, not a test:

    python benchmarks/like_for_like.py ARTIFACTS [--rounds 7] [--seconds 1] [--precision fp32,fp16,int8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from fmnist_edge import data
from fmnist_edge.benchmarks.backends import make_backends
from fmnist_edge.benchmarks.machine import machine
from fmnist_edge.host import StealMeter, usable_cores

RUNTIMES = ("openvino", "onnxruntime", "tflite")
BATCH = 64


def measure(folder: Path, precisions: tuple[str, ...], rounds: int, seconds: float, threads: int) -> dict:
    ds = data.load()
    backends = make_backends(RUNTIMES, folder, threads, precisions)
    pools, acc = {}, {}
    for b in backends:
        b.load()
        acc[b.label] = b.accuracy(b.native(ds.x_test), ds.y_test)
        pools[b.label] = b.native(ds.x_test[:512])
    p50 = {b.label: [] for b in backends}
    ips = {b.label: [] for b in backends}
    with StealMeter() as steal:
        for r in range(rounds):
            k = r % len(backends)
            for b in backends[k:] + backends[:k]:
                one = b.measure(pools[b.label], 1, "sync", iters=1000, warmup=50, duration=seconds)
                many = b.measure(pools[b.label], BATCH, "sync", iters=50, warmup=3, duration=seconds)
                p50[b.label].append(one["latency_us"]["p50"])
                ips[b.label].append(many["throughput_ips"])
    rows = [{"runtime": b.name, "precision": b.precision, "accuracy": acc[b.label], "size_bytes": b.size_bytes(),
             "batch1_p50_us": statistics.median(p50[b.label]), "batch1_p50_us_rounds": p50[b.label],
             "batch64_ips": statistics.median(ips[b.label]), "batch64_ips_rounds": ips[b.label]} for b in backends]
    return {"machine": machine(), "threads": threads, "rounds": rounds, "seconds": seconds,
            "cpu_steal_s": steal.seconds, "rows": rows}


def table(result: dict) -> str:
    """Markdown: precision x runtime, batch-1 p50 and batch-64 throughput (median of the rounds), accuracy,
    each precision's best peer marked and our ratio to it."""
    lines = ["| precision | runtime | batch-1 p50 (ms) | batch-64 (img/s) | accuracy | size |",
             "|---|---|---:|---:|---:|---:|"]
    by = {}
    for r in result["rows"]:
        by.setdefault(r["precision"], []).append(r)
    for p, rows in by.items():
        ours = next((r for r in rows if r["runtime"] == "openvino"), None)
        peers = [r for r in rows if r["runtime"] != "openvino"]
        best_lat = min(peers, key=lambda r: r["batch1_p50_us"], default=None)
        best_tput = max(peers, key=lambda r: r["batch64_ips"], default=None)
        for r in rows:
            lat, tput = f"{r['batch1_p50_us'] / 1000:.3f}", f"{r['batch64_ips']:,.0f}"
            if r is ours and best_lat:
                lat += f" ({r['batch1_p50_us'] / best_lat['batch1_p50_us']:.2f}x the best peer)"
                tput += f" ({r['batch64_ips'] / best_tput['batch64_ips']:.2f}x)"
            name = "OpenVINO, `Classifier`" if r is ours else {"onnxruntime": "onnxruntime", "tflite": "LiteRT"}[r["runtime"]]
            lines.append(f"| {p} | {name} | {lat} | {tput} | {r['accuracy'] * 100:.2f}% | {r['size_bytes'] / 1024:.0f} KiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--precision", default="fp32,fp16,int8")
    ap.add_argument("--threads", type=int, default=0, help="0: every usable core")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)
    precisions = tuple(p.strip() for p in args.precision.split(",") if p.strip())
    result = measure(args.folder, precisions, args.rounds, args.seconds, args.threads or usable_cores())
    m = result["machine"]
    print(f"{m.get('cpu')}, {m.get('usable_cores')} usable cores, ISA {' '.join(m.get('isa', []))}; threads "
          f"{result['threads']}; {result['rounds']} interleaved rounds; steal {result['cpu_steal_s']} CPU-s")
    print(table(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
