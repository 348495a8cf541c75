"""Benchmark output: the on-screen table and ratios, JSON, CSV and PNG bar charts."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..artifact import find_row
from ..atomic import atomic_file, write_json, write_text

CSV_FIELDS = ["backend", "precision", "batch_size", "mode", "p50_us", "p90_us", "p99_us", "mean_us", "first_inference_us",
              "throughput_ips", "accuracy", "size_bytes", "cold_start_s", "peak_rss_mb", "speedup_vs_tensorflow", "cpu_steal_s", "notes"]


def speedup(r: dict, results: list[dict]) -> float | None:
    """Throughput over TensorFlow's at the same batch size (sync), the baseline everything is compared to."""
    ref = find_row(results, "tensorflow", batch=r["batch_size"])
    if not ref or not ref["throughput_ips"] or not r["throughput_ips"]:
        return None
    return r["throughput_ips"] / ref["throughput_ips"]


def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def table(result: dict) -> str:
    rows = result["results"]
    head = (f"{'backend':<14}{'prec':<6}{'batch':>6} {'mode':<6}{'size':>9}{'acc':>8}{'p50 ms':>9}{'p99 ms':>9}{'img/s':>10}"
            f"{'cold s':>8}{'RSS MB':>8}{'vs TF':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lat = r["latency_us"] or {}
        sp = speedup(r, rows)
        lines.append(
            f"{r['backend']:<14}{r['precision']:<6}{r['batch_size']:>6} {r['mode']:<6}"
            f"{_fmt(r['size_bytes'] / 1024 if r['size_bytes'] else None, '.0f'):>7}KB"
            f"{_fmt(r['accuracy'] * 100 if r['accuracy'] is not None else None, '.2f'):>8}"
            f"{_fmt(lat.get('p50') / 1000 if lat.get('p50') else None, '.3f'):>9}"
            f"{_fmt(lat.get('p99') / 1000 if lat.get('p99') else None, '.3f'):>9}"
            f"{_fmt(r['throughput_ips'], '.0f'):>10}{_fmt(r['cold_start_s'], '.2f'):>8}{_fmt(r['peak_rss_mb'], '.0f'):>8}"
            f"{_fmt(sp, '.1f') + 'x' if sp else '-':>8}"
        )
    lines += like_for_like_table(result)
    if result.get("ratios"):
        auto = (result.get("auto") or {}).get("precision")
        lines += ["", f"ratios (target, met?); openvino_<precision>: like for like; openvino alone: precision auto"
                      f"{f' ({auto})' if auto else ''}, what a user runs, against the best peer at any precision:"]
        for name, r in result["ratios"].items():
            verdict = f"target {r['target']:<8} {'yes' if r['met'] else 'NO'}" if r["target"] else "(no target)"
            lines.append(f"  {name:<50}{r['value']:>10.3f}   {verdict}")
    for e in result.get("errors", []):
        lines.append(f"  {e['backend']}/{e['precision']}: not measured: {e['error']}")
    m = result.get("machine", {})
    if m:
        lines += ["", f"machine: {m.get('cpu')}, {m.get('usable_cores')} usable cores, ISA {' '.join(m.get('isa', []))}; "
                  f"threads {result['config']['threads']}"]
        if m.get("cpu_steal_s"):
            lines.append(f"the VM's host took {m['cpu_steal_s']:.0f} CPU-s during the run (steal): "
                         "compare figures as ratios within one run")
    return "\n".join(lines)


def like_for_like_table(result: dict) -> list[str]:
    """Each precision of ours against the best peer at the same precision, at batch 1 and batch 64."""
    from .bench import THROUGHPUT_BATCH, like_for_like

    entries = like_for_like(result["results"])
    if not entries:
        return []

    def side(x, unit):
        if not x:
            return f"{'-':<34}"
        acc = f", {x['accuracy'] * 100:.2f}%" if x["accuracy"] is not None else ""
        value = f"{x['value'] / 1000:.3f} ms" if unit == "ms" else f"{x['value']:.0f} img/s"
        return f"{x['backend'] + ' ' + value + acc:<34}"

    lines = ["", f"like for like (batch-1 p50 through Classifier.predict, batch-{THROUGHPUT_BATCH} throughput; accuracy):",
             f"  {'prec':<6}{'batch':>5}  {'openvino':<34}{'best peer at this precision':<34}ours/peer"]
    for p, entry in entries.items():
        for key, batch, unit in (("latency", 1, "ms"), ("throughput", THROUGHPUT_BATCH, "ips")):
            ours, peer = entry[key]
            ratio = f"{ours['value'] / peer['value']:.2f}x" if ours and peer else "-"
            lines.append(f"  {p:<6}{batch:>5}  {side(ours, unit)}{side(peer, unit)}{ratio}")
    return lines


def text(result: dict) -> str:
    """What `fmnist-edge bench` prints: the backends' table, then the photo path and the soak when measured."""
    parts = [table(result)]
    if result.get("photos"):
        from .photopath import table as photo_table

        parts.append(photo_table(result["photos"]))
    s = result.get("soak")
    if s:
        parts.append(f"soak: {s['predictions']} predictions from {s['threads']} threads in {s['wall_s']:.1f} s, "
                     f"RSS {s['rss_start_mb']:.0f} -> {s['rss_end_mb']:.0f} MB (max {s['rss_max_mb']:.0f}), "
                     f"{s['mismatches']} mismatches vs one thread")
    return "\n\n".join(parts)


def to_csv(result: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in result["results"]:
        lat = r["latency_us"] or {}
        w.writerow({**{k: r.get(k) for k in CSV_FIELDS if k in r},
                    "p50_us": lat.get("p50"), "p90_us": lat.get("p90"), "p99_us": lat.get("p99"), "mean_us": lat.get("mean"),
                    "speedup_vs_tensorflow": speedup(r, result["results"])})
    return buf.getvalue()


def plot(result: dict, path: Path) -> None:
    from ..errors import require

    mpl = require("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["results"]
    lat = [r for r in rows if r["batch_size"] == 1 and r["mode"] == "sync" and r["latency_us"]]
    tput = [r for r in rows if r["throughput_ips"] and r["batch_size"] != 1 or (r["mode"] == "async" and r["throughput_ips"])]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 5))
    names = [f"{r['backend']}\n{r['precision']}" for r in lat]
    a1.bar(names, [r["latency_us"]["p50"] / 1000 for r in lat], color="tab:blue")
    a1.set_yscale("log")
    a1.set_ylabel("ms (log)")
    a1.set_title("Batch-1 latency, p50")
    a1.tick_params(axis="x", labelsize=7)
    names2 = [f"{r['backend']}\n{r['precision']} b{r['batch_size']} {r['mode']}" for r in tput]
    a2.bar(names2, [r["throughput_ips"] for r in tput], color="tab:green")
    a2.set_yscale("log")
    a2.set_ylabel("images/s (log)")
    a2.set_title("Throughput")
    a2.tick_params(axis="x", labelsize=6, rotation=90)
    fig.suptitle(f"fmnist-edge bench on {result['machine'].get('cpu')} ({result['config']['threads']} threads)")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def save(result: dict, json_path=None, csv_path=None, plot_path=None) -> list[Path]:
    written = []
    if json_path:
        write_json(json_path, result)
        written.append(Path(json_path))
    if csv_path:
        write_text(csv_path, to_csv(result))
        written.append(Path(csv_path))
    if plot_path:
        plot(result, Path(plot_path))
        written.append(Path(plot_path))
    return written
