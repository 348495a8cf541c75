"""Ray as the engine: `predict --ray` and `compare --ray` on a real 2-node Ray cluster on 127.0.0.1 (1 CPU per node).

The cluster starts once for the module; every test that needs it joins it through its address, as a user's
command joins `ray start --head`.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fmnist_edge.cli import cli

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

PHOTOS = 300
CORRUPT = 10


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node, 1 CPU each, on this machine; the test process is the driver."""
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
