"""Ray as the engine: `predict --ray` and `compare --ray` on a real 2-node Ray cluster on 127.0.0.1 (1 CPU per node).

The cluster starts once for the module; every test that needs it joins it through its address, as a user's
command joins `ray start --head`.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fmnist_edge.cli import cli
from fmnist_edge.cluster.sweep import WIDTHS
from fmnist_edge.train.models import ACTIVATIONS

pytestmark = pytest.mark.ray  # Ray is imported inside the fixtures: `make check` deselects these without loading it

PHOTOS = 2000
CORRUPT = 10


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node, 1 CPU each, on this machine; the test process is the driver."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


@pytest.fixture(scope="module")
def archive(tmp_path_factory, fmnist):
    """A folder of camera-like JPEGs made from real test images, and CORRUPT files that only look like images."""
    from fmnist_edge.harness.photos import make_photos

    folder = tmp_path_factory.mktemp("archive")
    photos = make_photos(fmnist.x_test[:PHOTOS], fmnist.y_test[:PHOTOS], conditions=("camera",), sizes=("qvga",), seed=3)
    for i, p in enumerate(photos):
        (folder / f"photo{i:04d}.jpg").write_bytes(p.data)
    bad = [b"", b"not a picture", b"\x89PNG\r\n\x1a\n broken", photos[0].data[:200], b"\xff\xd8\xff" + b"\0" * 50]
    for i in range(CORRUPT):
        (folder / f"corrupt{i:02d}.{('jpg', 'png')[i % 2]}").write_bytes(bad[i % len(bad)])
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder


def test_predict_on_ray_gives_local_predicts_labels_and_a_row_per_bad_file(cluster, converted, archive, tmp_path):
    import pandas as pd

    out = tmp_path / "predictions.parquet"
    r = _run("predict", "--ray", cluster.address, archive, "--out", out, "--model", converted, "--precision", "fp32",
             "--actors", "2")
    assert r.exit_code == 0, r.output
    assert f"{PHOTOS + CORRUPT} images, {CORRUPT} with an error (fp32)" in r.output
    rows = pd.read_parquet(out)
    assert list(rows.columns) == ["path", "label", "index", "confidence", "top_k", "error"]
    assert len(rows) == PHOTOS + CORRUPT and rows["path"].is_unique
    rows["name"] = rows["path"].str.rsplit("/", n=1).str[-1]
    bad = rows[rows["name"].str.startswith("corrupt")]
    assert len(bad) == CORRUPT and bad["error"].notna().all() and bad["label"].isna().all()
    good = rows[rows["error"].isna()].set_index("name")
    assert len(good) == PHOTOS

    local = _run("predict", "--model", converted, "--precision", "fp32", "--json", *sorted(archive.glob("photo*.jpg")))
    assert local.exit_code == 0, local.output
    expected = {json.loads(line)["file"].rsplit("/", 1)[-1]: json.loads(line) for line in local.output.splitlines()}
    assert len(expected) == PHOTOS
    for name, p in expected.items():
        assert good.loc[name, "label"] == p["label"] and good.loc[name, "index"] == p["index"]
        assert good.loc[name, "confidence"] == pytest.approx(p["confidence"], abs=1e-4)
        assert [t["label"] for t in good.loc[name, "top_k"]] == [t["label"] for t in p["top_k"]]


def test_predict_on_ray_refuses_a_bad_source_and_an_unreachable_cluster_in_one_line(converted, tmp_path):
    pytest.importorskip("ray")
    r = _run("predict", "--ray", "local", tmp_path / "nowhere", "--out", tmp_path / "p.parquet", "--model", converted)
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
    (tmp_path / "empty").mkdir()
    r = _run("predict", "--ray", "127.0.0.1:1", tmp_path / "empty", "--out", tmp_path / "p.parquet", "--model", converted)
    assert r.exit_code == 1 and "holds no" in r.output
    (tmp_path / "empty" / "a.png").write_bytes(b"")
    r = _run("predict", "--ray", "127.0.0.1:1", tmp_path / "empty", "--out", tmp_path / "p.parquet", "--model", converted)
    assert r.exit_code == 1 and "no Ray cluster answers at 127.0.0.1:1" in r.output and "Traceback" not in r.output
    r = _run("predict", "--ray", "local", tmp_path / "empty", "--model", converted)
    assert r.exit_code == 2 and "--ray and --out go together" in r.output


@pytest.fixture(scope="module")
def compared_on_ray(cluster, tmp_path_factory):
    """`compare --ray` of two tiny networks on the cluster, 1 CPU per trial: its folder and output."""
    out = tmp_path_factory.mktemp("ray-compare")
    r = _run("compare", "--ray", cluster.address, "--cpus-per-trial", "1", "--arch", "tiny,seed001_mlp", "--epochs", "1",
             "--limit", "600", "--bench-seconds", "0.1", "--out", out, "--storage", out / "storage")
    assert r.exit_code == 0, r.output
    return out, r.output


def test_compare_on_ray_runs_one_trial_on_each_node_and_writes_compares_table(compared_on_ray):
    import ray

    out, output = compared_on_ray
    rows = {r["arch"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    assert list(rows) == ["tiny", "mlp_tanh"]
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and {r["node"] for r in rows.values()} == nodes  # one trial on each node
    for arch, r in rows.items():
        assert r["epochs_run"] == 1 and 0.1 < r["accuracy"] < 1 and r["fp32_p50_ms"] > 0 and r["cpu"]
        assert (out / arch / "manifest.json").is_file() and (out / arch / "bench" / "bench.json").is_file()
    assert "tiny: train done on node" in output and "Pareto" in output
    assert (out / "storage" / "compare").is_dir()


def test_compare_on_ray_resumes_without_training_finished_trials_again(cluster, compared_on_ray):
    out, _ = compared_on_ray
    before = (out / "compare.json").read_text()
    trained = {a: (out / a / "metadata.json").read_bytes() for a in ("tiny", "mlp_tanh")}
    r = _run("compare", "--ray", cluster.address, "--arch", "tiny,seed001_mlp", "--resume", "--out", out,
             "--storage", out / "storage")
    assert r.exit_code == 0, r.output
    assert "going on with" in r.output and "done on node" not in r.output  # no trial ran again
    assert json.loads((out / "compare.json").read_text())["rows"] == json.loads(before)["rows"]
    assert all((out / a / "metadata.json").read_bytes() == b for a, b in trained.items())
    r = _run("compare", "--ray", cluster.address, "--arch", "tiny,seed001_mlp", "--out", out, "--storage", out / "storage")
    assert r.exit_code == 1 and "holds a compare run already" in r.output and "Traceback" not in r.output
    r = _run("compare", "--ray", cluster.address, "--arch", "tiny", "--resume", "--out", out, "--storage", out / "storage")
    assert r.exit_code == 1 and "give the same --arch" in r.output


def test_a_killed_driver_resumes_without_training_its_finished_trials_again(cluster, tmp_path):
    """`compare --ray` in its own process, SIGKILLed once a trial has finished: `--resume` keeps that trial's
    result and artifacts (it is not trained again) and finishes the other one."""
    import os
    import signal
    import subprocess
    import sys

    from live import wait_for

    out, storage, log = tmp_path / "out", tmp_path / "storage", tmp_path / "driver.log"
    args = ["compare", "--ray", cluster.address, "--cpus-per-trial", "1", "--arch", "tiny,cnn1", "--epochs",
            "2", "--limit", "1000", "--bench-seconds", "0.1", "--out", out, "--storage", storage]
    with open(log, "wb") as sink:
        driver = subprocess.Popen([sys.executable, "-m", "fmnist_edge.cli", *map(str, args)], stdout=sink,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:  # until a trial's last report, with its finished folder, is in (the driver alive meanwhile)
        wait_for(lambda: " done done on node" in log.read_text() or driver.poll() is not None, "a finished trial", 240)
        assert driver.poll() is None, log.read_text()
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finished = [a for a in ("tiny", "cnn1") if f"{a}: done done on node" in log.read_text()]
    assert finished and not (out / "compare.json").exists()
    trained = {}  # the finished trials' training records, as their last checkpoints in the storage hold them
    for arch in finished:
        newest = max(storage.glob(f"compare/*/checkpoint_*/{arch}/metadata.json"), key=lambda p: p.parent.parent.name)
        trained[arch] = newest.read_bytes()
    r = _run(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert "going on with" in r.output
    for arch, record in trained.items():  # not trained again: the same record, its training time included
        assert (out / arch / "metadata.json").read_bytes() == record
    rows = {row["arch"]: row for row in json.loads((out / "compare.json").read_text())["rows"]}
    assert set(rows) == {"tiny", "cnn1"}
    assert all(row["epochs_run"] == 2 and row["fp32_p50_ms"] > 0 for row in rows.values())
    assert all((out / a / "manifest.json").is_file() for a in rows)


def test_sweep_samples_recipes_into_s3_storage_and_prints_the_best_as_a_train_command(cluster, s3, tmp_path):
    """Trials' results and checkpoints in an s3:// storage (moto's S3 on 127.0.0.1; the Ray workers were started
    without its variables), judged by validation accuracy after each epoch."""
    from fmnist_edge.cluster import filesystem

    out = tmp_path / "sweep"
    r = _run("sweep", "--ray", cluster.address, "--arch", "tiny", "--num-samples", "2", "--epochs", "2", "--limit", "600",
             "--bench-seconds", "0.1", "--out", out, "--storage", "s3://shop/runs")
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "trials.json").read_text())
    trials = saved["trials"]
    assert len(trials) == 2 and all(t["arch"] == "tiny" and 0.05 < t["val_accuracy"] < 1 for t in trials)
    # ASHA may stop the worse trial after an epoch: no test figure and no artifacts for it
    for t in trials:
        assert t["status"] in ("finished", "stopped at epoch 1", "stopped at epoch 2"), t
        finished = t["status"] == "finished"
        assert (t["accuracy"] is not None) == finished and (out / "trials" / t["trial"] / "manifest.json").is_file() == finished
        assert t["epochs"] == (2 if finished else int(t["status"].split()[-1]))
        assert t["activation"] in ACTIVATIONS and t["width"] in WIDTHS and 0 <= t["dropout"] <= 0.5
    assert len(json.loads((out / "compare.json").read_text())["rows"]) == sum(t["status"] == "finished" for t in trials)
    best = max(trials, key=lambda t: t["val_accuracy"])
    assert saved["best"]["trial"] == best["trial"] and f"best: {saved['command']}" in r.output
    args = saved["command"].split()[2:]  # a ready `fmnist-edge train` command: its options parse
    params = cli.commands["train"].make_context("train", args).params
    assert (params["optimizer"], params["activation"], params["width"]) == (best["optimizer"], best["activation"], best["width"])

    import pyarrow.fs as pafs

    fs, path = filesystem("s3://shop/runs/sweep")
    stored = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    assert any(f.path.endswith("experiment_state.json") or "experiment_state" in f.path for f in stored)
    assert sum("/checkpoint_" in f.path for f in stored) > 0


def test_predict_on_ray_reads_an_s3_prefix_and_writes_parquet_to_s3(cluster, converted, archive, s3):
    import pyarrow.dataset as pads

    from fmnist_edge.cluster import filesystem

    fs, _ = filesystem("s3://shop")
    photos = sorted(p.name for p in archive.glob("photo*.jpg"))[:40]
    for name in [*photos, "corrupt00.jpg", "corrupt01.png", "notes.txt"]:
        with fs.open_output_stream(f"shop/photos/{name}") as sink:
            sink.write((archive / name).read_bytes())
    r = _run("predict", "--ray", cluster.address, "s3://shop/photos/", "--out", "s3://shop/predictions.parquet",
             "--model", converted, "--precision", "fp32", "--actors", "2")
    assert r.exit_code == 0, r.output
    assert "42 images, 2 with an error (fp32)" in r.output
    rows = pads.dataset("shop/predictions.parquet", format="parquet", filesystem=fs).to_table().to_pandas()
    assert sorted(rows["path"]) == sorted(f"s3://shop/photos/{n}" for n in [*photos, "corrupt00.jpg", "corrupt01.png"])
    local = _run("predict", "--model", converted, "--precision", "fp32", "--json", *(archive / n for n in photos))
    assert local.exit_code == 0, local.output
    expected = {json.loads(line)["file"].rsplit("/", 1)[-1]: json.loads(line)["label"] for line in local.output.splitlines()}
    got = dict(zip(rows["path"].str.rsplit("/", n=1).str[-1], rows["label"], strict=True))
    assert len(expected) == 40 and all(got[name] == label for name, label in expected.items())


def test_a_trial_whose_node_dies_mid_training_finishes_on_the_other_node_from_its_last_epoch(cluster, tmp_path):
    """Runs last in the module: it kills the worker node (and adds a fresh one back for whatever runs after).
    `compare --ray` runs in its own process; the node dies once that driver has taken an epoch's checkpoint in
    (its progress line), not merely once the checkpoint's folder appears in the storage."""
    import subprocess
    import sys

    import ray
    from live import wait_for
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=1)
    class Hold:  # takes the head's CPU, so the trial can only start on the worker node
        def ready(self):
            return True

    wait_for(lambda: ray.available_resources().get("CPU", 0) >= 2, "both nodes' CPUs free (earlier tests' actors gone)", 60)
    head = cluster.head_node.node_id
    hold = Hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
    ray.get(hold.ready.remote(), timeout=60)
    out, storage, log = tmp_path / "out", tmp_path / "storage", tmp_path / "driver.log"
    args = ["compare", "--ray", cluster.address, "--cpus-per-trial", "1", "--arch", "tiny", "--epochs", "12",
            "--limit", "3000", "--bench-seconds", "0.1", "--out", out, "--storage", storage]
    with open(log, "wb") as sink:
        driver = subprocess.Popen([sys.executable, "-m", "fmnist_edge.cli", *map(str, args)], stdout=sink,
                                  stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "checkpointed on node" in log.read_text() or driver.poll() is not None, "an epoch's checkpoint", 180)
        assert driver.poll() is None, log.read_text()
        (worker,) = cluster.worker_nodes
        cluster.remove_node(worker)  # the node running the trial dies mid-training
        ray.kill(hold)  # the head's CPU is free for the restarted trial
        assert driver.wait(300) == 0, log.read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
        cluster.add_node(num_cpus=1)
    meta = json.loads((out / "tiny" / "metadata.json").read_text())
    assert meta["resumed_at_epoch"] and meta["resumed_at_epoch"] >= 1, log.read_text()  # from a checkpointed epoch
    row = json.loads((out / "compare.json").read_text())["rows"][0]
    assert row["arch"] == "tiny" and row["node"] == head and row["fp32_p50_ms"] > 0  # finished on the head node
