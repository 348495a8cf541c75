"""`fmnist-edge compare` on two small networks: every stage runs, the files are written, --resume skips."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from fmnist_edge.cli import cli
from fmnist_edge.studies import compare as C

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    res = CliRunner().invoke(cli, ["compare", "--arch", "tiny,seed001_mlp", "--epochs", "1", "--limit", "2000",
                                   "--bench-seconds", "0.2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_compare_writes_one_row_per_network_with_its_cost_and_the_reports_accuracy(compared):
    out, output = compared
    result = json.loads((out / "compare.json").read_text())
    rows = {r["arch"]: r for r in result["rows"]}
    assert list(rows) == ["tiny", "mlp_tanh"]
    mlp = rows["mlp_tanh"]
    assert mlp["params"] == 42_310 and mlp["epochs_run"] == 1 and mlp["recipe_epochs"] == 100
    assert 0.5 < mlp["accuracy"] < 1 and abs(mlp["int8_accuracy"] - mlp["accuracy"]) < 0.05
    for r in rows.values():
        assert r["fp32_p50_ms"] > 0 and r["int8_p50_ms"] > 0 and r["best_p50_ms"] == min(r["fp32_p50_ms"], r["int8_p50_ms"])
        assert r["fp32_bytes"] > r["int8_bytes"] > 0 and r["throughput_ips"] > 0 and r["photo_p50_ms"] > 0
        assert r["onnxruntime_int8_p50_ms"] > 0 and r["litert_int8_p50_ms"] > 0  # the peers' own int8, same network
        assert r["cold_start_s"] > 0 and r["peak_rss_mb"] > 0
        assert (out / r["arch"] / "manifest.json").is_file()  # each a normal artifact folder
    assert rows["tiny"]["reported_accuracy"] is None  # no report behind it
    with open(out / "compare.csv") as f:
        assert [r["arch"] for r in csv.DictReader(f)] == ["tiny", "mlp_tanh"]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mlp_tanh" in output and "Pareto" in output and "[2/2] mlp_tanh: bench" in output


def test_resume_runs_no_stage_again(compared):
    out, _ = compared
    res = CliRunner().invoke(cli, ["compare", "--arch", "tiny,seed001_mlp", "--resume", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for arch in ("tiny", "mlp_tanh"):
        for stage in C.STAGES:
            assert f"{arch}: {stage} already done" in res.output


def test_rebench_keeps_the_trained_and_converted_network_and_measures_it_again(compared):
    out, _ = compared
    kept = {f: (out / "tiny" / f).read_bytes() for f in ("metadata.json", "manifest.json")}
    before = (out / "tiny" / "bench" / "bench.json").stat().st_mtime_ns
    res = CliRunner().invoke(cli, ["compare", "--arch", "tiny", "--rebench", "--rounds", "2", "--bench-seconds", "0.2",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "tiny: train already done" in res.output and "tiny: convert already done" in res.output
    assert "[1/1] tiny: bench\n" in res.output
    assert (out / "tiny" / "bench" / "bench.json").stat().st_mtime_ns > before
    assert all((out / "tiny" / f).read_bytes() == b for f, b in kept.items())
    assert "[1/1] tiny: bench, round 2 of 2" in res.output
    (tiny,) = json.loads((out / "compare.json").read_text())["rows"]
    assert tiny["arch"] == "tiny" and tiny["rounds"] == 2
    for col in C.MEASURED:
        low, high = tiny["spread"][col]
        assert low <= tiny[col] <= high


def test_rounds_keep_each_figures_median_and_pick_the_best_precision_from_the_medians():
    def r(fp32, int8, photo):
        return {"arch": "n", "accuracy": 0.9, "fp32_p50_ms": fp32, "int8_p50_ms": int8, "throughput_ips": 1000.0,
                "cold_start_s": 0.3, "peak_rss_mb": 100.0, "photo_p50_ms": photo, "best_precision": None, "best_p50_ms": None}
    m = C.median_row([r(0.10, 0.30, 2.0), r(0.50, 0.05, 1.0), r(0.12, 0.20, 9.0)])  # one slow minute per precision
    assert (m["fp32_p50_ms"], m["int8_p50_ms"], m["photo_p50_ms"]) == (0.12, 0.2, 2.0)
    assert m["best_precision"] == "fp32" and m["best_p50_ms"] == 0.12  # by the medians (round 2 alone says int8)
    assert m["rounds"] == 3 and m["spread"]["fp32_p50_ms"] == [0.10, 0.50]
    assert C.median_row([r(0.1, 0.2, 1.0)]) == r(0.1, 0.2, 1.0)


def test_rounds_always_measure_afresh_while_resume_keeps_the_training():
    cfg = C.CompareConfig(archs=("tiny",), resume=True, rounds=2)
    assert cfg.keeps("train") and cfg.keeps("convert") and not cfg.keeps("bench")
    assert C.CompareConfig(archs=("tiny",), resume=True).keeps("bench")


def test_pareto_front_keeps_what_nothing_beats_on_both_axes():
    rows = [{"arch": a, "best_p50_ms": t, "accuracy": acc} for a, t, acc in
            (("fast", 0.1, 0.80), ("good", 1.0, 0.93), ("worse", 1.2, 0.90), ("mid", 0.5, 0.90), ("tie", 0.5, 0.89))]
    assert C.pareto(rows) == ["fast", "good", "mid"]


def test_compare_refuses_unknown_and_repeated_networks_in_one_line():
    res = CliRunner().invoke(cli, ["compare", "--arch", "tiny,nope"])
    assert res.exit_code != 0 and "unknown architecture 'nope'" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["compare", "--arch", "tiny,tiny"])
    assert res.exit_code != 0 and "names an architecture twice" in res.output
    res = CliRunner().invoke(cli, ["compare", "--arch", "tiny", "--rounds", "0"])
    assert res.exit_code != 0 and "--rounds" in res.output and "1<=x<=100" in res.output
    res = CliRunner().invoke(cli, ["compare", "--arch", "tiny", "--bench-seconds", "0"])
    assert res.exit_code != 0 and "--bench-seconds" in res.output and "0.1<=x<=600" in res.output
    res = CliRunner().invoke(cli, ["compare", "--sweep", "--rebench"])
    assert res.exit_code != 0 and "leave out --rebench" in res.output
    res = CliRunner().invoke(cli, ["compare", "--sweep", "--rounds", "3", "--bench-seconds", "1"])
    assert res.exit_code != 0 and "leave out --rounds, --bench-seconds" in res.output


def test_the_mlp_sweep_trains_one_run_per_value_and_writes_its_table(tmp_path):
    result = C.sweep(tmp_path, epochs=1, limit=600, grid={"activation": ("tanh", "relu")}, log=lambda *_: None)
    rows = result["rows"]
    assert [(r["factor"], r["value"]) for r in rows] == [("activation", "tanh"), ("activation", "relu")]
    assert all(0.1 < r["accuracy"] < 1 and r["epochs_run"] == 1 for r in rows)
    assert rows[0]["accuracy"] != rows[1]["accuracy"]  # two different networks were trained
    paths = C.save_sweep(result, tmp_path)
    assert [p.name for p in paths] == ["sweep.json", "sweep.csv", "sweep.png"] and all(p.stat().st_size for p in paths)
    assert "activation" in C.sweep_table(result)
