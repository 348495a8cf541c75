"""TensorFlow's distribution on this GPU-less machine: MirroredStrategy over two logical CPU devices stands in
for two GPUs (two replicas, each half of every batch, variables mirrored and gradients all-reduced), and
TF_CONFIG selects MultiWorkerMirroredStrategy. Each runs in a fresh interpreter: logical devices and the
collective server can be set up only once per process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fmnist_edge.cli import cli

TWO_REPLICAS = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from fmnist_edge.train.config import make_config
from fmnist_edge.train.trainer import train
out = sys.argv[1]
kw = dict(limit=2000, test_limit=500, epochs=2, seed=3)
mirrored = train(make_config("tiny", out=out + "/mirrored", **kw), log=lambda *_: None,
                 strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
single = train(make_config("tiny", out=out + "/single", **kw), log=lambda *_: None)
print(json.dumps({"mirrored": mirrored, "single": single}))
"""


def _run(args, env=None, timeout=180):
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


@pytest.mark.slow
def test_mirrored_strategy_on_two_replicas_trains_like_one_device(tmp_path):
    runs = json.loads(_run(["-c", TWO_REPLICAS, str(tmp_path)]).strip().splitlines()[-1])
    mirrored, single = runs["mirrored"], runs["single"]
    assert mirrored["device"].startswith("MirroredStrategy over CPU:0, CPU:1")
    # The same seed, data and global batch: two replicas of half a batch each learn what one device learns, up to
    # batch norm's per-replica statistics (measured: loss 1.052 vs 1.042, accuracy 66.0% vs 68.6% on 500 images).
    # A gradient or loss scaled by the replica count would move 2 epochs' loss by far more (epoch 1: 2.0 -> 1.3).
    assert abs(mirrored["test"]["loss"] - single["test"]["loss"]) < 0.06, (mirrored["test"], single["test"])
    assert abs(mirrored["test"]["accuracy"] - single["test"]["accuracy"]) < 0.06
    assert mirrored["test"]["accuracy"] > 0.3  # it learnt (10 classes: chance is 0.1)
    for name in ("model.keras", "model.h5", "saved_model/saved_model.pb", "metadata.json", "report/metrics.json"):
        assert (tmp_path / "mirrored" / name).exists(), name


@pytest.mark.slow
def test_tf_config_of_one_worker_trains_under_multi_worker_strategy(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"localhost:{port}"]}, "task": {"type": "worker", "index": 0}}
    out = tmp_path / "artifacts"
    printed = _run(["-m", "fmnist_edge.cli", "train", "--arch", "tiny", "--limit", "1000", "--epochs", "1",
                    "--out", str(out)], env={"TF_CONFIG": json.dumps(tf_config)})
    assert "device: multi-worker (1 replicas, TF_CONFIG)" in printed
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["device"].startswith("multi-worker") and meta["test"]["accuracy"] > 0.2


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}},
         "TF_CONFIG names 2 workers: Keras 3's fit cannot train across several workers"),
        ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}, "names 2 workers"),
        ("{not json", "TF_CONFIG is set but is not a cluster spec"),
        ({"task": {"type": "worker"}}, "TF_CONFIG is set but is not a cluster spec"),
    ],
)
def test_tf_config_that_cannot_train_is_one_line(tmp_path, tf_config, message):
    value = tf_config if isinstance(tf_config, str) else json.dumps(tf_config)
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--limit", "200", "--out", str(tmp_path / "o")],
                             env={"TF_CONFIG": value})
    assert res.exit_code != 0
    assert message in res.output and len(res.output.strip().splitlines()) <= 2, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()
