"""`fmnist-edge bench` on the tiny model with very few iterations: the schema, the table, the gates."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge import contract, host
from fmnist_edge.benchmarks.backends import make_backends
from fmnist_edge.benchmarks.bench import TARGETS, BenchConfig, like_for_like, missed, ratios
from fmnist_edge.benchmarks.loop import timed_loop
from fmnist_edge.benchmarks.output import like_for_like_table
from fmnist_edge.cli import cli
from fmnist_edge.errors import ConfigError

ROW_KEYS = {"backend", "precision", "batch_size", "mode", "latency_us", "first_inference_us", "throughput_ips",
            "accuracy", "size_bytes", "cold_start_s", "peak_rss_mb"}


@pytest.fixture(scope="module")
def bench_folder(tiny_artifacts, tmp_path_factory):
    from fmnist_edge.convert import convert

    folder = tmp_path_factory.mktemp("bench") / "artifacts"
    shutil.copytree(tiny_artifacts, folder)
    convert(folder, precisions=("fp32", "int8"), check=100, calib_size=50, log=lambda *a: None)
    return folder


def test_timed_loop_counts_and_orders_percentiles():
    calls = []
    stats = timed_loop(lambda: calls.append(1), warmup=5, iters=40)
    assert len(calls) == 45 and stats["n"] == 40
    lat = stats["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert stats["first_us"] > 0


def test_steal_is_read_from_proc_stat():
    from fmnist_edge.host import StealMeter, steal_seconds

    before = steal_seconds()
    assert before is not None and before >= 0  # Linux: the 8th field of /proc/stat's cpu line
    with StealMeter() as m:
        sum(range(100_000))
    assert m.seconds is not None and 0 <= m.seconds < 60


def test_bench_cli_writes_schema_table_csv_and_plot(bench_folder, tmp_path):
    out = tmp_path / "res"
    res = CliRunner().invoke(cli, ["bench", str(bench_folder), "--backends", "tensorflow,openvino,onnxruntime,benchmark_app",
                                   "--precision", "fp32,int8", "--quick", "--iters", "20", "--warmup", "2",
                                   "--batch-sizes", "1,8", "--out", str(out), "--soak", "400", "--soak-threads", "4", "--no-photos"])
    assert res.exit_code == 0, res.output
    assert "openvino" in res.output and "ratios" in res.output and "soak: 400 predictions" in res.output
    result = json.loads((out / "bench.json").read_text())
    assert set(result) >= {"machine", "config", "results", "ratios"}
    assert result["machine"]["usable_cores"] >= 1 and "openvino" in result["machine"]["versions"]
    assert result["machine"]["cpu"] == host.cpu_model() and set(result["machine"]["isa"]) <= host.cpu_flags()
    rows = result["results"]
    for r in rows:
        assert ROW_KEYS <= set(r)
    def find(b, p="fp32", bs=1, mode="sync"):
        return next(r for r in rows if (r["backend"], r["precision"], r["batch_size"], r["mode"]) == (b, p, bs, mode))
    ov = find("openvino")
    assert set(ov["latency_us"]) >= {"p50", "p90", "p99", "mean"} and ov["latency_us"]["p50"] > 0
    assert ov["first_inference_us"] > 0 and ov["throughput_ips"] > 0 and ov["size_bytes"] > 0
    assert ov["cold_start_s"] > 0 and ov["peak_rss_mb"] > 0
    tf = find("tensorflow")
    assert abs(ov["accuracy"] - tf["accuracy"]) <= 0.01  # fp32 IR computes what TF computes
    assert find("openvino", "int8", 8)["throughput_ips"] > 0
    ort8 = find("onnxruntime", "int8")  # onnxruntime's own int8, made by convert, beside ours
    assert ort8["latency_us"]["p50"] > 0 and abs(ort8["accuracy"] - tf["accuracy"]) <= 0.03
    assert find("onnxruntime", "int8", 8)["throughput_ips"] > 0
    lfl = result["like_for_like"]["int8"]["latency"]
    assert lfl[0]["backend"] == "openvino" and lfl[1]["backend"] == "onnxruntime"
    assert "openvino_int8_latency_vs_best_int8_peer" in result["ratios"] and "like for like" in res.output
    assert find("openvino", bs=1, mode="async")["throughput_ips"] > 0
    assert find("openvino", "int8", 8, "async")["throughput_ips"] > 0  # batches on the throughput streams
    assert "cpu_steal_s" in result["machine"] and "cpu_steal_s" in ov
    ba = find("benchmark_app")  # OpenVINO's C++ loop, read from its own report
    assert ba["latency_us"]["p50"] > 0 and find("benchmark_app", bs=8, mode="async")["throughput_ips"] > 0
    assert ba["accuracy"] is None and ba["cold_start_s"] is None
    assert "openvino_vs_tensorflow_latency_speedup" in result["ratios"] and "openvino_latency_vs_benchmark_app" in result["ratios"]
    assert result["ratios"]["soak_mismatches"] == {"value": 0.0, "target": "<= 0", "met": True}
    assert result["auto"]["precision"] in result["auto"]["candidates"]  # what Classifier.load(..., "auto") chose
    assert result["soak"]["mismatches"] == 0 and result["soak"]["predictions"] == 400
    with open(out / "bench.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_min_acc_gate_fails_the_command(bench_folder, tmp_path):
    res = CliRunner().invoke(cli, ["bench", str(bench_folder), "--backends", "onnxruntime", "--quick", "--iters", "10",
                                   "--warmup", "1", "--batch-sizes", "1", "--no-cold-start", "--no-photos", "--min-acc", "0.999",
                                   "--out", str(tmp_path)])
    assert res.exit_code != 0 and "accuracy below --min-acc 0.999" in res.output


@pytest.mark.parametrize("args, message", [
    (["--backends", "pytorch"], "pytorch"),
    (["--batch-sizes", "1,x"], "comma-separated integers"),
    (["--iters", "3"], "3 is not in the range x>=10"),
])
def test_bad_options_are_one_line(bench_folder, args, message):
    res = CliRunner().invoke(cli, ["bench", str(bench_folder), *args])
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output


def test_missing_artifacts_is_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["bench", str(tmp_path / "none")])
    assert res.exit_code != 0 and "fmnist-edge train" in res.output


def test_config_validation():
    with pytest.raises(ConfigError, match="batch sizes"):
        BenchConfig(folder=".", batch_sizes=(0,))


def test_ratios_compare_against_targets():
    def row(b, p, bs, mode, p50=None, ips=None, acc=None, cs=None, rss=None):
        return {"backend": b, "precision": p, "batch_size": bs, "mode": mode,
                "latency_us": {"p50": p50} if p50 else None, "throughput_ips": ips, "accuracy": acc,
                "cold_start_s": cs, "peak_rss_mb": rss}
    rows = [row("tensorflow", "fp32", 1, "sync", 3000, 300, 0.9, 4.0, 800),
            row("openvino", "fp32", 1, "sync", 50, 20000, 0.9, 0.4, 120),
            row("openvino", "int8", 1, "sync", 40, 30000, 0.898),
            row("onnxruntime", "fp32", 1, "sync", 60, 15000, 0.9)]
    r = ratios(rows)
    assert r["openvino_vs_tensorflow_latency_speedup"] == {"value": 60.0, "target": None, "met": None}
    assert r["openvino_latency_vs_best_peer"] == {"value": 0.8333, "target": "<= 1.0", "met": True}
    assert r["openvino_vs_tensorflow_peak_rss"]["value"] == 0.15
    assert r["int8_accuracy_drop_vs_fp32"]["met"] is True
    assert r["openvino_fp32_latency_vs_best_fp32_peer"] == {"value": 0.8333, "target": "<= 1.0", "met": True}
    slow = ratios(rows[:1] + [{**rows[1], "latency_us": {"p50": 200}}] + rows[2:])
    assert slow["openvino_latency_vs_best_peer"]["met"] is False
    assert missed(slow) == ["openvino_fp32_latency_vs_best_fp32_peer", "openvino_latency_vs_best_peer"]
    assert set(r) <= set(TARGETS) and "soak_rss_growth_mb" not in r and "openvino_int8_latency_vs_best_int8_peer" not in r
    assert ratios(rows, {"rss_growth_mb": 12.0, "mismatches": 0})["soak_rss_growth_mb"]["met"] is False


def test_ratios_judge_the_precision_auto_chose_with_fp32_beside_it():
    def row(b, p, bs, p50, ips, acc=0.9):
        return {"backend": b, "precision": p, "batch_size": bs, "mode": "sync", "latency_us": {"p50": p50},
                "throughput_ips": ips, "accuracy": acc}
    rows = [row("tensorflow", "fp32", 64, 3000, 1000), row("tensorflow", "fp32", 1, 300, 3000),
            row("openvino", "fp32", 1, 120, 8000), row("openvino", "fp32", 64, 900, 2500),
            row("openvino", "int8", 1, 80, 12000), row("openvino", "int8", 64, 500, 4000),
            row("onnxruntime", "fp32", 1, 100, 9000)]
    r = ratios(rows, auto="int8")
    assert r["openvino_latency_vs_best_peer"] == {"value": 0.8, "target": "<= 1.0", "met": True}
    assert r["openvino_fp32_latency_vs_best_fp32_peer"] == {"value": 1.2, "target": "<= 1.0", "met": False}
    assert r["openvino_vs_tensorflow_throughput"] == {"value": 4.0, "target": ">= 3", "met": True}
    assert r["openvino_fp32_vs_tensorflow_throughput"]["value"] == 2.6667
    assert missed(r) == ["openvino_fp32_latency_vs_best_fp32_peer"]
    assert missed(ratios(rows)) == ["openvino_fp32_latency_vs_best_fp32_peer", "openvino_latency_vs_best_peer",
                                    "openvino_vs_tensorflow_throughput"]
    assert ratios(rows, auto="bf16") == ratios(rows)  # a choice that was not measured: fp32 is judged


def test_like_for_like_sets_each_precision_against_the_best_peer_at_that_precision():
    def row(b, p, bs, p50, ips, acc=0.9):
        return {"backend": b, "precision": p, "batch_size": bs, "mode": "sync", "latency_us": {"p50": p50},
                "throughput_ips": ips, "accuracy": acc}
    rows = [row("openvino", "fp32", 1, 120, 8000), row("openvino", "fp32", 64, 900, 2500),
            row("openvino", "int8", 1, 80, 12000), row("openvino", "int8", 64, 500, 4000, 0.89),
            row("onnxruntime", "fp32", 1, 100, 9000), row("onnxruntime", "fp32", 64, 1000, 2000),
            row("tflite", "fp32", 1, 130, 7000), row("onnxruntime", "int8", 1, 90, 11000),
            row("onnxruntime", "int8", 64, 600, 3000), row("tflite", "int8", 1, 85, 11500),
            row("tflite", "int8", 64, 450, 4500, 0.88)]
    lfl = like_for_like(rows)
    assert set(lfl) == {"fp32", "int8"}  # no peer at bf16 or fp16 here
    assert lfl["int8"]["latency"][1] == {"backend": "tflite", "value": 85, "accuracy": 0.9}
    assert lfl["int8"]["throughput"] == ({"backend": "openvino", "value": 4000, "accuracy": 0.89},
                                         {"backend": "tflite", "value": 4500, "accuracy": 0.88})
    r = ratios(rows, auto="int8")
    assert r["openvino_fp32_latency_vs_best_fp32_peer"]["value"] == 1.2  # not against int8's faster peers
    assert r["openvino_fp32_b64_throughput_vs_best_fp32_peer"] == {"value": 1.25, "target": ">= 1.0", "met": True}
    assert r["openvino_int8_latency_vs_best_int8_peer"] == {"value": 0.9412, "target": "<= 1.0", "met": True}
    assert r["openvino_int8_b64_throughput_vs_best_int8_peer"]["met"] is False
    assert r["openvino_latency_vs_best_peer"]["value"] == 0.9412  # auto (int8) against the best peer at any precision
    text = "\n".join(like_for_like_table({"results": rows}))
    assert "like for like" in text and "tflite 0.085 ms, 90.00%" in text and "1.25x" in text


def test_peers_run_at_the_precisions_asked_for(tmp_path):
    labels = [b.label for b in make_backends(("openvino", "onnxruntime", "tflite", "tensorflow"), tmp_path, 1, ("int8",))]
    assert labels == ["openvino/int8", "onnxruntime/int8", "tflite/int8", "tensorflow/fp32"]
    labels = [b.label for b in make_backends(("onnxruntime", "tflite"), tmp_path, 1, contract.PRECISIONS)]
    assert labels == ["onnxruntime/fp32", "onnxruntime/int8", "tflite/fp32", "tflite/fp16", "tflite/int8"]


def test_the_photo_path_is_timed_against_its_floor_and_scored_per_condition(converted, fmnist):
    from fmnist_edge.benchmarks.photopath import photo_path, table

    res = photo_path(converted, fmnist.x_test[:40], fmnist.y_test[:40], sizes=("qvga", "vga"), latency_photos=4,
                     agreement_images=12, iters=10)
    assert res["precision"] in ("fp32", "bf16", "int8") and res["precision_choice"]["requested"] == "auto"
    assert [r["frame"] for r in res["sizes"]] == ["320x240", "640x480"]
    for r in res["sizes"]:
        # the whole photo path costs more than its decode floor alone, and more than the model alone
        assert r["predict_us"] > r["decode_floor_us"] > 0 and r["predict_us"] > r["model_us"] > 0
        assert r["photos_per_s"] > 0 and r["jpeg_kb"] > 1
    from fmnist_edge.harness.photos import CONDITIONS
    assert set(res["conditions"]) == set(CONDITIONS) and all(c["n"] == 12 for c in res["conditions"].values())
    text = table(res)
    assert "640x480" in text and "camera" in text


def test_litert_computes_what_tensorflow_does_in_a_process_without_tensorflow(bench_folder, fmnist):
    """The TFLite peer: converted once with TensorFlow, run on ai-edge-litert; its cold start (spawn to first
    prediction, peak RSS) is a process that never imports TensorFlow, as a kiosk's would be."""
    from fmnist_edge.benchmarks.backends import TensorFlowBackend, TFLiteBackend
    from fmnist_edge.benchmarks.coldstart import cold_start
    from fmnist_edge.runtime import to_model_input

    x = to_model_input(fmnist.x_test[:32])
    lite, tf = TFLiteBackend("tflite", "fp32", bench_folder, 1), TensorFlowBackend("tensorflow", "fp32", bench_folder, 1)
    lite.load()
    tf.load()
    assert (bench_folder / "tflite" / "model.tflite").is_file()
    assert np.abs(lite.infer(x) - tf.infer(x)).max() < 1e-4
    cold = cold_start("tflite", bench_folder, "fp32", 1, fmnist.x_test[0])
    assert "error" not in cold, cold
    assert cold["tensorflow_loaded"] is False and cold["top"] == int(tf.infer(x[:1]).argmax())
    assert cold_start("tensorflow", bench_folder, "fp32", 1, fmnist.x_test[0])["tensorflow_loaded"] is True


def test_litert_int8_is_a_bench_row_with_its_accuracy(bench_folder, fmnist):
    """A folder converted without --format tflite (the default): bench makes LiteRT's full-integer model from the
    calibration images convert would use, and measures it as a row with its accuracy, like the others."""
    from fmnist_edge.benchmarks.bench import run

    result = run(BenchConfig(folder=str(bench_folder), backends=("tensorflow", "tflite"), precisions=("int8",), quick=True,
                             iters=10, warmup=1, batch_sizes=(1,), cold_start=False, photos=False))
    assert result["errors"] == [] and (bench_folder / "tflite/model_int8.tflite").is_file()
    (lite,) = [r for r in result["results"] if r["backend"] == "tflite"]
    (tf,) = [r for r in result["results"] if r["backend"] == "tensorflow" and r["batch_size"] == 1]
    assert lite["precision"] == "int8" and lite["latency_us"]["p50"] > 0 and lite["size_bytes"] > 0
    assert abs(lite["accuracy"] - tf["accuracy"]) <= 0.03 and "converted by bench" in lite["notes"]
