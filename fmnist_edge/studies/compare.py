"""`fmnist-edge compare`: the registry's networks trained, converted and measured on this CPU, side by side.

Each architecture gets a normal artifact folder OUT/ARCH (train with its own recipe, convert to fp32 + int8
checked against TensorFlow, bench with OpenVINO at batch 1 and 64, cold start and the photo path), then one row:
size and cost, our accuracy beside the accuracy its source report states, latency per precision. With
`resume`, a stage whose output is already in the folder is not run again, and an interrupted training goes on
from its last whole epoch; `rebench` does the same but measures every network again (on another CPU, or all of
them in one run so that their latencies compare).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import bounds
from ..artifact import Layout, read_bench, read_history, read_manifest, read_metadata
from ..atomic import write_json, write_text
from ..bounds import bounded
from ..errors import ConfigError

STAGES = ("train", "convert", "bench")
COLUMNS = ("arch", "params", "macs", "epochs_run", "recipe_epochs", "accuracy", "int8_accuracy", "reported_accuracy",
           "report", "fp32_p50_ms", "int8_p50_ms", "onnxruntime_int8_p50_ms", "litert_int8_p50_ms",
           "best_precision", "best_p50_ms", "throughput_ips", "fp32_bytes",
           "int8_bytes", "cold_start_s", "peak_rss_mb", "photo_p50_ms")


@dataclass(frozen=True)
class CompareConfig:
    """One comparison; checked once, when it is made."""

    archs: tuple = ()  # () = every registered architecture meant for comparing (not `tiny`, not a study's variants)
    out: str = "compare"
    # per model; None = its recipe's
    time_budget_min: float | None = bounded(None, 0, 10_000, unit="minutes", note="0 = none", label="--time-budget")
    epochs: int | None = bounded(None, 1)  # at most; None = its recipe's
    resume: bool = False
    rebench: bool = False  # resume, but run every bench again
    limit: int | None = bounded(None, 100, unit="images")  # training images (smoke runs, tests)
    test_limit: int | None = bounded(None, 10)
    check: str = "all"  # test images each converted artifact is checked on
    # each latency is measured for this long: a batch-1 call is ~0.1 ms, 100 calls say little
    bench_seconds: float = bounded(2.0, 0.1, 600, unit="seconds")
    rounds: int = bounded(1, 1, 100)  # benches of every network, interleaved; each measured column is the median over them
    data_dir: str | None = None
    threads: int | None = bounded(None, 1, note="unset: every usable core")  # OpenVINO's in bench (a Ray trial: its CPUs)

    def __post_init__(self) -> None:
        if len(set(self.architectures)) != len(self.architectures):
            raise ConfigError(f"--arch names an architecture twice: {', '.join(self.archs)}")
        bounds.check(self, options=True)  # the ranges declared with the fields above

    def keeps(self, stage: str) -> bool:
        """Whether a finished `stage` already in a network's folder is kept rather than run again."""
        fresh_bench = self.rebench or self.rounds > 1  # rounds are measured now, never read back from an older bench
        return (self.resume or self.rebench) and not (fresh_bench and stage == "bench")

    @property
    def architectures(self) -> tuple[str, ...]:
        """`archs` by their current names (UnknownModelError names the known ones), or the default set."""
        from ..train.models import get_entry, list_models

        if not self.archs:
            return tuple(a for a in list_models() if get_entry(a).compared)
        return tuple(get_entry(a).name for a in self.archs)


def _quiet(*_) -> None:
    """The log of a stage inside `compare`: its own lines would drown the table's progress."""


def _done(folder: Path, stage: str) -> bool:
    layout = Layout(folder)
    if stage == "train":
        return layout.metadata.is_file() and layout.saved_model.is_dir()
    if stage == "convert":
        return layout.manifest.is_file()
    return layout.bench_json.is_file()


def run(cfg: CompareConfig, log: Callable[[str], None] = print) -> dict:
    """Train, convert and bench each architecture of `cfg` (skipping finished stages with `resume`) -> the table
    (`save` writes it)."""
    out, archs = Path(cfg.out), cfg.architectures
    rows = [run_one(arch, out / arch, cfg, log, f"[{i}/{len(archs)}] ") for i, arch in enumerate(archs, 1)]
    return finish(cfg, archs, rows, log)


def run_one(arch: str, folder: Path, cfg: CompareConfig, log: Callable[[str], None] = print, tag: str = "",
            on_stage: Callable[[str], None] | None = None, recipe: dict | None = None,
            on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """One network's stages into `folder` (those already there kept as `cfg` says) -> its row; `on_stage(stage)`
    after each stage that ran (a Ray trial checkpoints the folder there); `recipe`: training options over the
    arch's own (a sweep's trial); `on_epoch(n, logs)` after each training epoch's resume state is written, with
    its metrics (Keras' logs: loss, val_accuracy, ...)."""
    from ..convert import convert
    from ..errors import ConversionError
    from ..train.config import make_config
    from ..train.resume import epochs_done
    from ..train.trainer import train

    for stage in STAGES:
        if cfg.keeps(stage) and _done(folder, stage):
            log(f"{tag}{arch}: {stage} already done")
            continue
        done = epochs_done(folder) if cfg.keeps(stage) and stage == "train" else None
        log(f"{tag}{arch}: {stage}" + (f" (going on after epoch {done})" if done else ""))
        if stage == "train":
            train(make_config(arch, epochs=cfg.epochs, time_budget_min=cfg.time_budget_min, limit=cfg.limit,
                              test_limit=cfg.test_limit, data_dir=cfg.data_dir, out=str(folder), **(recipe or {})),
                  log=_quiet, resume=cfg.keeps(stage), on_epoch=on_epoch)
        elif stage == "convert":
            try:
                convert(folder, formats=("openvino", "onnx", "tflite"), precisions=("fp32", "int8"), check=cfg.check,
                        data_dir=cfg.data_dir, log=_quiet)
            except ConversionError as exc:  # written, with the failed artifact marked: the row says so
                log(f"{tag}{arch}: {exc}")
        else:
            _bench(folder, cfg)
        if on_stage is not None:
            on_stage(stage)
    r = row(arch, folder)
    log(f"{tag}{arch}: {_pct(r['accuracy'])} test, {r['best_p50_ms']} ms batch 1 ({r['best_precision']})")
    return r


def finish(cfg: CompareConfig, archs: tuple[str, ...], rows: list[dict], log: Callable[[str], None] = print) -> dict:
    """The rows of every network -> the result (`save` writes it), after `cfg.rounds - 1` more benches of each."""
    out = Path(cfg.out)
    rounds = [rows]
    for r in range(2, cfg.rounds + 1):  # all networks again, one after the other: a slow minute of the host hits one round
        rounds.append([])
        for i, arch in enumerate(archs, 1):
            log(f"[{i}/{len(archs)}] {arch}: bench, round {r} of {cfg.rounds}")
            _bench(out / arch, cfg)
            rounds[-1].append(row(arch, out / arch))
    from ..benchmarks.machine import machine

    rows = [median_row(list(per_arch)) for per_arch in zip(*rounds, strict=True)]
    return {"machine": machine(), "config": {**dataclasses.asdict(cfg), "archs": list(archs)}, "rows": rows}


def _bench(folder: Path, cfg: CompareConfig) -> None:
    """OpenVINO fp32 and int8 at batch 1 and 64, cold start, and a VGA camera JPEG -> label; the peers' own int8
    (onnxruntime's QDQ, LiteRT's full-integer) at batch 1, what a user choosing an int8 runtime compares: `folder`/bench."""
    from ..benchmarks import bench as B
    from ..benchmarks import output as report
    from ..benchmarks.photopath import photo_path

    result = B.run(B.BenchConfig(folder=str(folder), backends=("openvino",), precisions=("fp32", "int8"),
                                 batch_sizes=(1, 64), duration=cfg.bench_seconds, photos=False, data_dir=cfg.data_dir,
                                 threads=cfg.threads))
    peers = B.run(B.BenchConfig(folder=str(folder), backends=PEERS, precisions=("int8",), batch_sizes=(1,),
                                duration=cfg.bench_seconds, cold_start=False, photos=False, data_dir=cfg.data_dir,
                                threads=cfg.threads))
    result["results"] += peers["results"]
    result["errors"] += peers["errors"]
    result["like_for_like"] = B.like_for_like(result["results"])
    result["ratios"] = B.ratios(result["results"], result["soak"], result["auto"]["precision"] if result["auto"] else "fp32")
    x, y = _photo_sample(cfg.data_dir)  # the photo path's latency at VGA; its agreement is a property of the runtime
    result["photos"] = photo_path(folder, x, y, threads=cfg.threads, sizes=("vga",), agreement_images=0,
                                  iters=max(20, int(cfg.bench_seconds * 150)))
    report.save(result, Layout(folder).bench_json, Layout(folder).bench_csv)


@functools.lru_cache(maxsize=2)
def _photo_sample(data_dir: str | None):
    """The 24 test images every bench photographs: the data set is read once, not once per network and round."""
    from ..data import load

    ds = load(data_dir)
    return ds.x_test[:24].copy(), ds.y_test[:24].copy()


PEERS = ("onnxruntime", "tflite")  # bench's names of the peers' runtimes (tflite: LiteRT)
MEASURED = ("fp32_p50_ms", "int8_p50_ms", "onnxruntime_int8_p50_ms", "litert_int8_p50_ms", "throughput_ips",
            "cold_start_s", "peak_rss_mb", "photo_p50_ms")


def median_row(rows: list[dict]) -> dict:
    """One network's rows from several rounds -> its row with each measured column the median of the rounds, and
    `spread`: each column's [min, max]. One round -> that row unchanged."""
    if len(rows) == 1:
        return rows[0]
    import statistics

    out = dict(rows[-1], rounds=len(rows), spread={})
    for col in MEASURED:
        values = [r[col] for r in rows if r.get(col) is not None]
        out[col] = round(statistics.median(values), 4) if values else None
        out["spread"][col] = [min(values), max(values)] if values else None
    p50 = {p: out[f"{p}_p50_ms"] for p in ("fp32", "int8") if out[f"{p}_p50_ms"] is not None}
    out["best_precision"] = min(p50, key=p50.get) if p50 else None
    out["best_p50_ms"] = p50.get(out["best_precision"]) if p50 else None
    return out


def row(arch: str, folder: Path) -> dict:
    """One architecture's line of the table, from the files its artifact folder holds."""
    from ..train.config import make_config
    from ..train.models import get_entry

    meta, ir, bench = read_metadata(folder), read_manifest(folder).openvino(), read_bench(folder)
    entry = get_entry(arch)
    p50 = {p: round(us / 1e3, 4) for p in ("fp32", "int8")
           if (us := bench.p50_us("openvino", p)) is not None and p in ir and ir[p].ok}
    best = min(p50, key=p50.get) if p50 else None
    tput = bench.max_throughput("openvino")
    photo_us = bench.photo_predict_us("vga")
    peer_ms = {name: (round(us / 1e3, 4) if (us := bench.p50_us(backend, "int8")) is not None else None)
               for name, backend in (("onnxruntime", "onnxruntime"), ("litert", "tflite"))}
    cold_start_s, peak_rss_mb = bench.cold_start("openvino", "fp32")
    int8 = ir.get("int8")
    return {
        "arch": arch,
        "params": meta.params, "macs": meta.macs,
        "epochs_run": meta.epochs_run, "recipe_epochs": make_config(arch).epochs,
        "accuracy": meta.test_accuracy, "test_images": meta.test_n,
        "int8_accuracy": int8.accuracy if int8 else None,
        "int8_status": int8.status if int8 else None,
        "reported_accuracy": entry.reported_accuracy, "report": entry.report,
        "fp32_p50_ms": p50.get("fp32"), "int8_p50_ms": p50.get("int8"),
        "onnxruntime_int8_p50_ms": peer_ms["onnxruntime"], "litert_int8_p50_ms": peer_ms["litert"],
        "best_precision": best, "best_p50_ms": p50.get(best) if best else None,
        "throughput_ips": round(tput, 1) if tput else None,
        "fp32_bytes": ir["fp32"].size_bytes if "fp32" in ir else None,
        "int8_bytes": int8.size_bytes if int8 else None,
        "cold_start_s": cold_start_s, "peak_rss_mb": peak_rss_mb,
        "photo_p50_ms": round(photo_us / 1e3, 3) if photo_us is not None else None,  # 640x480 camera JPEG -> label
        "cpu": bench.cpu, "isa": bench.isa,
    }


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def pareto(rows: list[dict]) -> list[str]:
    """Architectures no other beats on both accuracy and best batch-1 latency."""
    pts = [(r["arch"], r["best_p50_ms"], r["accuracy"]) for r in rows if r["best_p50_ms"] is not None]
    return [a for a, t, acc in pts if not any(t2 <= t and acc2 >= acc and (t2, acc2) != (t, acc) for _, t2, acc2 in pts)]


def table(result: dict) -> str:
    front = set(pareto(result["rows"]))
    head = f"{'arch':<18}{'params':>10}{'MMACs':>8}{'epochs':>8}{'accuracy':>10}{'int8':>9}{'reported':>10}" \
           f"{'fp32 ms':>9}{'int8 ms':>9}{'ort i8':>8}{'lrt i8':>8}{'img/s':>9}{'cold s':>8}{'photo ms':>10}"
    lines = [head]
    for r in result["rows"]:
        lines.append(
            f"{r['arch'] + (' *' if r['arch'] in front else ''):<18}{r['params']:>10,}{r['macs'] / 1e6:>8.1f}"
            f"{str(r['epochs_run']) + '/' + str(r['recipe_epochs']):>8}{_pct(r['accuracy']):>10}{_pct(r['int8_accuracy']):>9}"
            f"{_pct(r['reported_accuracy']):>10}{_f(r['fp32_p50_ms'], '.3f'):>9}{_f(r['int8_p50_ms'], '.3f'):>9}"
            f"{_f(r.get('onnxruntime_int8_p50_ms'), '.3f'):>8}{_f(r.get('litert_int8_p50_ms'), '.3f'):>8}"
            f"{_f(r['throughput_ips'], ',.0f'):>9}{_f(r['cold_start_s'], '.2f'):>8}{_f(r['photo_p50_ms'], '.2f'):>10}")
    lines.append("* on the Pareto front: no other network is both more accurate and faster at batch 1; ort i8 / lrt i8: "
                 "onnxruntime's and LiteRT's own int8 of the same network, batch-1 ms")
    return "\n".join(lines)


def _f(v, spec) -> str:
    return "-" if v is None else format(v, spec)


def to_csv(result: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(result["rows"])
    return buf.getvalue()


def plot(result: dict, path: Path) -> None:
    """Accuracy against best batch-1 latency (log), the Pareto front joined, each report's accuracy beside ours."""
    from ..train.evaluation import _plt, save_figure

    plt = _plt()
    rows = [r for r in result["rows"] if r["best_p50_ms"] is not None]
    front = pareto(rows)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for r in rows:
        x, y = r["best_p50_ms"], 100 * r["accuracy"]
        ax.scatter(x, y, color="tab:blue", zorder=3)
        ax.annotate(r["arch"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if r["reported_accuracy"] is not None:
            ax.scatter(x, 100 * r["reported_accuracy"], facecolors="none", edgecolors="tab:red", zorder=3)
            ax.plot([x, x], [y, 100 * r["reported_accuracy"]], color="tab:red", lw=0.6, ls=":")
    pts = sorted((r["best_p50_ms"], 100 * r["accuracy"]) for r in rows if r["arch"] in front)
    if pts:
        ax.plot(*zip(*pts, strict=True), color="tab:blue", lw=1, ls="--", label="Pareto front (ours)")
    ax.scatter([], [], facecolors="none", edgecolors="tab:red", label="accuracy the source report states")
    ax.set_xscale("log")
    ax.margins(x=0.1)  # room for the right-most network's name
    ax.set_xlabel("batch-1 latency, best verified precision (ms, log)")
    ax.set_ylabel("test accuracy (%)")
    cpu = rows[0]["cpu"] if rows else ""
    ax.set_title(f"fmnist-edge compare on {cpu}")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def save(result: dict, out: Path) -> list[Path]:
    paths = [out / "compare.json", out / "compare.csv", out / "compare.png"]
    write_json(paths[0], result)
    write_text(paths[1], to_csv(result))
    plot(result, paths[2])
    return paths


# ------------------------------------------------------------------------ report 001's study of its MLP

SWEEP = {  # one factor at a time around the report's base network (tanh, Adam at 1e-3, batch 128)
    "learning_rate": (1e-2, 1e-3, 1e-4),
    "batch_size": (32, 128, 512),
    "activation": ("tanh", "sigmoid", "relu", "leaky_relu"),
}
SWEEP_BASE = {"learning_rate": 1e-3, "batch_size": 128, "activation": "tanh"}


def sweep(out="compare/sweep", epochs: int | None = None, time_budget_min: float | None = None, limit: int | None = None,
          resume: bool = False, data_dir: str | None = None, grid: dict | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Seed 001's MLP study: test accuracy as its learning rate, batch size and hidden activation change, one
    at a time around the base network; one artifact folder per run under `out` -> {"rows": [...]}."""
    from ..train.config import make_config
    from ..train.trainer import train

    out, rows, seen = Path(out), [], set()
    runs = [(factor, {**SWEEP_BASE, factor: value}) for factor, values in (grid or SWEEP).items() for value in values]
    for i, (factor, point) in enumerate(runs, 1):
        name = f"lr{point['learning_rate']:g}-bs{point['batch_size']}-{point['activation']}"
        folder = out / name
        if name not in seen and not (resume and _done(folder, "train")):
            log(f"[{i}/{len(runs)}] mlp {name}: train")
            arch = "mlp_tanh" if point["activation"] == "tanh" else f"mlp_{point['activation']}"
            train(make_config(arch, learning_rate=point["learning_rate"], batch_size=point["batch_size"], epochs=epochs,
                              time_budget_min=time_budget_min, limit=limit, data_dir=data_dir, out=str(folder)),
                  log=_quiet, resume=resume)
        seen.add(name)
        meta, history = read_metadata(folder), read_history(folder)
        rows.append({"factor": factor, "value": point[factor], **point, "run": name,
                     "accuracy": meta.test_accuracy, "loss": meta.test_loss,
                     "best_val_accuracy": history.best_val_accuracy,
                     "epochs_run": meta.epochs_run, "train_s": meta.wall_time_s})
        log(f"[{i}/{len(runs)}] {factor} = {point[factor]}: {_pct(rows[-1]['accuracy'])} test")
    return {"study": "report 001's MLP (784-50-50-10)", "base": SWEEP_BASE, "rows": rows}


def sweep_table(result: dict) -> str:
    lines = [f"{'factor':<15}{'value':>12}{'accuracy':>10}{'best val':>10}{'epochs':>8}{'train s':>9}"]
    for r in result["rows"]:
        lines.append(f"{r['factor']:<15}{str(r['value']):>12}{_pct(r['accuracy']):>10}{_pct(r['best_val_accuracy']):>10}"
                     f"{r['epochs_run']:>8}{r['train_s']:>9.0f}")
    return "\n".join(lines)


def sweep_plot(result: dict, path: Path) -> None:
    from ..train.evaluation import _plt, save_figure

    plt = _plt()
    factors = list(dict.fromkeys(r["factor"] for r in result["rows"]))
    fig, axes = plt.subplots(1, len(factors), figsize=(4 * len(factors), 3.6), squeeze=False)
    for ax, factor in zip(axes[0], factors, strict=True):
        rows = [r for r in result["rows"] if r["factor"] == factor]
        labels = [str(r["value"]) for r in rows]
        ax.bar(labels, [100 * r["accuracy"] for r in rows], color="tab:blue")
        lo = min(100 * r["accuracy"] for r in rows)
        ax.set_ylim(max(0, lo - 5), 100)
        ax.set_title(factor.replace("_", " "))
        ax.set_ylabel("test accuracy (%)")
    fig.suptitle("report 001's MLP: one factor at a time around tanh, lr 1e-3, batch 128")
    fig.tight_layout()
    save_figure(fig, path)


def save_sweep(result: dict, out: Path) -> list[Path]:
    paths = [out / "sweep.json", out / "sweep.csv", out / "sweep.png"]
    write_json(paths[0], result)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=("factor", "value", "learning_rate", "batch_size", "activation", "accuracy", "loss",
                                        "best_val_accuracy", "epochs_run", "train_s"), extrasaction="ignore")
    w.writeheader()
    w.writerows(result["rows"])
    write_text(paths[1], buf.getvalue())
    sweep_plot(result, paths[2])
    return paths
