"""`fmnist-edge bench`: every backend measured in one run with one loop, against the TensorFlow baseline."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import data
from ..errors import ConfigError, FmnistEdgeError
from ..host import StealMeter, steal_seconds, usable_cores
from .backends import BACKENDS, DEFAULT_BACKENDS, Backend, make_backends
from .coldstart import cold_start
from .loop import timed_loop
from .machine import machine

SCHEMA_VERSION = 1


@dataclass
class BenchConfig:
    folder: str = "artifacts"
    backends: tuple = DEFAULT_BACKENDS
    precisions: tuple = ("fp32", "bf16", "fp16", "int8")
    batch_sizes: tuple = (1, 64)
    warmup: int = 50
    iters: int = 1000
    duration: float | None = None  # seconds per latency measurement instead of `iters`
    threads: int = 0  # 0 = every usable core
    quick: bool = False  # accuracy on 1,000 test images and fewer iterations
    cold_start: bool = True
    data_dir: str | None = None
    min_acc: float | None = None
    photos: bool = True  # the photo path: JPEG bytes -> label per frame size, agreement per condition

    def validate(self) -> "BenchConfig":
        known = {*BACKENDS, "benchmark_app"}
        bad = [b for b in self.backends if b not in known]
        if bad:
            raise ConfigError(f"unknown backend(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        badp = [p for p in self.precisions if p not in BACKENDS["openvino"][1]]
        if badp:
            raise ConfigError(f"unknown precision(s) {', '.join(badp)}; known: fp32, bf16, fp16, int8")
        if not self.batch_sizes or any(b < 1 or b > 4096 for b in self.batch_sizes):
            raise ConfigError(f"batch sizes must be in 1..4096, got {self.batch_sizes}")
        if self.warmup < 0 or self.iters < 10:
            raise ConfigError("need --warmup >= 0 and --iters >= 10")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError("--duration must be > 0 seconds")
        if self.min_acc is not None and not 0 <= self.min_acc <= 1:
            raise ConfigError("--min-acc is a fraction in [0, 1], e.g. 0.9")
        if self.threads < 0:
            raise ConfigError("--threads must be >= 1 (0 = all usable cores)")
        if not self.threads:
            self.threads = usable_cores()
        if not (Path(self.folder) / "saved_model").is_dir() and not (Path(self.folder) / "openvino").is_dir():
            raise ConfigError(f"{self.folder} holds no trained or converted model; run `fmnist-edge train` and `fmnist-edge convert` first")
        return self


def _pin_tensorflow(threads: int) -> None:
    """TF's thread pools must be sized before TensorFlow runs anything."""
    from ..quiet import tensorflow

    tf = tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process: record, don't fail
        pass


def _accuracy(b: Backend, x: np.ndarray, y: np.ndarray, batch: int = 250) -> float:
    preds = [np.asarray(b.infer(x[i : i + batch])).argmax(1) for i in range(0, len(x), batch)]
    return float((np.concatenate(preds) == y).mean())


def _row(b: Backend, batch: int, mode: str, **kw) -> dict:
    return {"backend": b.name, "precision": b.precision, "batch_size": batch, "mode": mode,
            "latency_us": None, "first_inference_us": None, "throughput_ips": None, "accuracy": None,
            "size_bytes": b.size_bytes(), "cold_start_s": None, "peak_rss_mb": None, "notes": "; ".join(b.notes), **kw}


def bench_backend(b: Backend, cfg: BenchConfig, x_acc, y_acc, pool: np.ndarray) -> list[dict]:
    """Latency at batch 1, sync (and async) throughput per batch size, accuracy: rows for one backend.
    `x_acc` and `pool` are dataset-form uint8 (N, 28, 28); each backend gets them in its native form."""
    b.load()
    acc = _accuracy(b, b.native(x_acc), y_acc)
    pool = b.native(pool)
    rows = []
    iters = cfg.iters if not cfg.quick else max(10, cfg.iters // 10)
    for bs in cfg.batch_sizes:
        batches = [pool[i : i + bs] for i in range(0, len(pool) - bs + 1, bs)] or [np.resize(pool, (bs, *pool.shape[1:]))]
        k = {"i": 0}

        def step(bs=bs, batches=batches):
            k["i"] += 1
            xb = batches[k["i"] % len(batches)]
            return b.infer_one(xb) if bs == 1 else b.infer(xb)

        n = iters if bs == 1 else max(10, iters // max(1, bs // 8))
        stats = timed_loop(step, warmup=cfg.warmup, iters=n, duration=cfg.duration)
        rows.append(_row(b, bs, "sync", latency_us=stats["latency_us"], first_inference_us=stats["first_us"],
                         throughput_ips=bs * 1e6 / stats["latency_us"]["mean"], accuracy=acc))
        # async: the backend's own pipelining, over as many images as the sync loop saw (at least the pool twice)
        ips = b.async_throughput(pool, bs, repeat=max(2, -(-n * bs // len(pool))))
        if ips:
            rows.append(_row(b, bs, "async", throughput_ips=ips, accuracy=acc))
    return rows


_BA_NUM = re.compile(r"(Median|Average|Min|Max):\s+([\d.]+)\s*(ms|us)")
_BA_TPUT = re.compile(r"Throughput:\s+([\d.]+)\s*FPS")


def benchmark_app(xml: Path, batch: int, mode: str, threads: int, precision_hint: str, seconds: float) -> dict | None:
    """OpenVINO's own C++-loop `benchmark_app` on the same IR and shape: the reference ceiling."""
    exe = shutil.which("benchmark_app") or str(Path(os.sys.executable).parent / "benchmark_app")
    if not Path(exe).exists():
        return None
    streams = 1 if mode == "sync" else threads
    cmd = [exe, "-m", str(Path(xml).resolve()), "-d", "CPU", "-hint", "none", "-nthreads", str(threads), "-nstreams", str(streams),
           "-api", mode, "-shape", f"[{batch},28,28,1]", "-t", str(max(1, int(seconds))), "-infer_precision", precision_hint]
    if mode == "sync":
        cmd += ["-nireq", "1"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, cwd=tempfile.gettempdir()).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    stats = {m.group(1).lower(): float(m.group(2)) * (1000 if m.group(3) == "ms" else 1) for m in _BA_NUM.finditer(out)}
    tput = _BA_TPUT.search(out)
    if "median" not in stats or not tput:
        return None
    return {"latency_us": {"p50": stats["median"], "mean": stats.get("average"), "p90": None, "p99": None, "min": stats.get("min")},
            "throughput_ips": float(tput.group(1)) * (1 if mode == "sync" else 1)}


def _ba_rows(cfg: BenchConfig) -> list[dict]:
    xml = Path(cfg.folder) / "openvino" / "fp32" / "model.xml"
    if not xml.exists():
        return []
    rows = []
    secs = 2 if cfg.quick else 10
    size = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    for bs in cfg.batch_sizes:
        for mode in ("sync", "async"):
            r = benchmark_app(xml, bs, mode, cfg.threads, "f32", secs)
            if r:
                rows.append({"backend": "benchmark_app", "precision": "fp32", "batch_size": bs, "mode": mode,
                             "latency_us": r["latency_us"] if mode == "sync" else None, "first_inference_us": None,
                             "throughput_ips": r["throughput_ips"], "accuracy": None, "size_bytes": size,
                             "cold_start_s": None, "peak_rss_mb": None, "notes": "reference ceiling, random inputs"})
    return rows


def ratios(rows: list[dict]) -> dict:
    """The ratios a deployer asks for, each with the issue's target and whether it is met."""

    def find(backend, precision="fp32", batch=1, mode="sync"):
        for r in rows:
            if (r["backend"], r["precision"], r["batch_size"], r["mode"]) == (backend, precision, batch, mode):
                return r
        return None

    def best_tput(backend, precision="fp32"):
        cands = [r for r in rows if r["backend"] == backend and r["precision"] == precision and r["throughput_ips"]]
        return max(cands, key=lambda r: r["throughput_ips"], default=None)

    out = {}

    def put(name, value, target, ok):
        if value is not None:
            out[name] = {"value": round(float(value), 4), "target": target, "met": bool(ok)}

    ov, tf = find("openvino"), find("tensorflow")
    p50 = lambda r: r["latency_us"]["p50"] if r and r["latency_us"] else None  # noqa: E731
    if ov and tf:
        v = p50(tf) / p50(ov)
        put("openvino_vs_tensorflow_latency_speedup", v, ">= 30", v >= 30)
    peers = [p50(find(n)) for n in ("onnxruntime", "tflite") if find(n)]
    if ov and peers:
        v = p50(ov) / min(peers)
        put("openvino_latency_vs_best_peer", v, "<= 1.0", v <= 1.0)
    ba = find("benchmark_app")
    if ov and ba:
        v = p50(ov) / p50(ba)
        put("openvino_latency_vs_benchmark_app", v, "<= 1.25", v <= 1.25)
    ov_t, tf_t = best_tput("openvino"), best_tput("tensorflow")
    if ov_t and tf_t:
        v = ov_t["throughput_ips"] / tf_t["throughput_ips"]
        put("openvino_vs_tensorflow_throughput", v, ">= 3", v >= 3)
    if ov_t:
        ba_t = find("benchmark_app", batch=ov_t["batch_size"], mode="async")
        if ba_t:
            v = ov_t["throughput_ips"] / ba_t["throughput_ips"]
            put("openvino_throughput_vs_benchmark_app", v, ">= 0.9", v >= 0.9)
    if ov and tf and ov.get("cold_start_s") and tf.get("cold_start_s"):
        v = tf["cold_start_s"] / ov["cold_start_s"]
        put("openvino_vs_tensorflow_cold_start_speedup", v, ">= 8", v >= 8)
        put("openvino_cold_start_s", ov["cold_start_s"], "<= 0.5", ov["cold_start_s"] <= 0.5)
    if ov and tf and ov.get("peak_rss_mb") and tf.get("peak_rss_mb"):
        v = ov["peak_rss_mb"] / tf["peak_rss_mb"]
        put("openvino_vs_tensorflow_peak_rss", v, "<= 0.2", v <= 0.2)
    i8, f32 = find("openvino", "int8"), ov
    if i8 and f32 and i8["accuracy"] is not None:
        v = f32["accuracy"] - i8["accuracy"]
        put("int8_accuracy_drop_vs_fp32", v, "<= 0.005", v <= 0.005)
    i8_t = best_tput("openvino", "int8")
    if i8_t and ov_t:
        v = i8_t["throughput_ips"] / ov_t["throughput_ips"]
        put("int8_vs_fp32_throughput", v, "> 1", v > 1)
    return out


def stages(cfg: BenchConfig) -> list[str]:
    """The labels `run` reports progress with, in order (for a progress bar's length)."""
    labels = []
    for b in make_backends([b for b in cfg.backends if b != "benchmark_app"], Path(cfg.folder), 1, cfg.precisions):
        labels += [b.label] + ([f"{b.label} cold start"] if cfg.cold_start else [])
    return labels + (["benchmark_app"] if "benchmark_app" in cfg.backends else []) + (["photo path"] if cfg.photos else [])


def run(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Measure every requested backend; returns {"machine", "config", "results", "ratios"}.
    `progress(label)` is called as each stage of `stages(cfg)` starts."""
    cfg.validate()
    say = progress or (lambda s: None)
    steal_start = steal_seconds()
    ds = data.load(cfg.data_dir)
    n_acc = 1000 if cfg.quick else len(ds.x_test)
    x_acc, y_acc = ds.x_test[:n_acc], ds.y_test[:n_acc]  # uint8 (N, 28, 28)
    pool = x_acc[:512]
    if "tensorflow" in cfg.backends or "keras" in cfg.backends or "tflite" in cfg.backends:
        _pin_tensorflow(cfg.threads)
    results, errors = [], []
    backends = make_backends([b for b in cfg.backends if b != "benchmark_app"], Path(cfg.folder), cfg.threads, cfg.precisions)
    while backends:  # each backend is dropped once measured: its threads and memory never touch the next
        b = backends.pop(0)
        say(b.label)
        try:
            with StealMeter() as steal:
                rows = bench_backend(b, cfg, x_acc, y_acc, pool)
        except FmnistEdgeError as exc:
            errors.append({"backend": b.name, "precision": b.precision, "error": str(exc)})
            continue
        for r in rows:  # CPU time the VM's host took while this backend was timed: its figures' noise
            r["cpu_steal_s"] = steal.seconds
        if cfg.cold_start:
            say(f"{b.label} cold start")
            cs = cold_start(b.name, Path(cfg.folder), b.precision, cfg.threads, ds.x_test[0])
            for r in rows:
                r["cold_start_s"], r["peak_rss_mb"] = cs.get("cold_start_s"), cs.get("peak_rss_mb")
                if "error" in cs:
                    r["notes"] = (r["notes"] + "; " if r["notes"] else "") + f"cold start failed: {cs['error']}"
        results += rows
    if "benchmark_app" in cfg.backends:
        say("benchmark_app")
        results += _ba_rows(cfg)
    photo = None
    if cfg.photos and (Path(cfg.folder) / "openvino").is_dir():
        from .photopath import photo_path

        say("photo path")
        try:
            photo = photo_path(cfg.folder, ds.x_test[:1000], ds.y_test[:1000], threads=cfg.threads,
                               sizes=("qvga", "vga", "1080p") if cfg.quick else ("qvga", "vga", "1080p", "12mp"),
                               agreement_images=100 if cfg.quick else 500, iters=50 if cfg.quick else 300)
        except FmnistEdgeError as exc:
            errors.append({"backend": "photo path", "precision": "auto", "error": str(exc)})
    return {
        "schema_version": SCHEMA_VERSION,
        "machine": {**machine(), "cpu_steal_s": round(steal_seconds() - steal_start, 1) if steal_start is not None else None},
        "config": {**dataclasses.asdict(cfg), "accuracy_images": n_acc},
        "results": results,
        "ratios": ratios(results),
        "errors": errors,
        "photos": photo,
    }
