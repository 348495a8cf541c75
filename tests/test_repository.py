"""A versioned model repository: publish, verify each version on its own, hot reload under load with nothing failed."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge import errors
from fmnist_edge.cli import cli
from fmnist_edge.convert.serving import publish
from fmnist_edge.runtime import Classifier, to_model_input

pytest.importorskip("starlette")
from live import ADMIN, ADMIN_TOKEN, live_server, wait_for  # noqa: E402

from fmnist_edge.serve import create_app  # noqa: E402
from fmnist_edge.serve.repository import Repository, UnknownVersion  # noqa: E402


def _load(path):
    return Classifier.load(path, precision="fp32")


def test_publish_adds_numbered_versions_that_verify_on_their_own(converted, tmp_path, fmnist):
    repo = tmp_path / "repo"
    v1, v2 = publish(converted, repo), publish(converted, repo, "int8")
    assert (v1.name, v2.name) == ("1", "2") and sorted(p.name for p in (repo / "fmnist").iterdir()) == ["1", "2"]
    assert {p.name for p in v1.iterdir()} == {"model.xml", "model.bin", "manifest.json", "golden.json"}
    copied = tmp_path / "elsewhere"
    shutil.copytree(v1, copied)  # a copied version folder still verifies
    x = fmnist.x_test[:20]
    np.testing.assert_allclose(Classifier.load(copied).predict_proba(x), Classifier.load(converted).predict_proba(x), atol=1e-6)
    assert Classifier.load(v2, precision="auto").precision == "int8"
    with pytest.raises(errors.PrecisionNotAvailableError, match="it has int8"):
        Classifier.load(v2, precision="fp32")
    # convert's own serving/ layout is such a repository
    assert Classifier.load(converted / "serving" / "fmnist" / "1").verified


def test_publish_refuses_a_tampered_model_and_leaves_nothing(converted, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(converted, bad)
    blob = bytearray((bad / "openvino/fp32/model.bin").read_bytes())
    blob[100] ^= 0xFF
    (bad / "openvino/fp32/model.bin").write_bytes(bytes(blob))
    repo = tmp_path / "repo"
    with pytest.raises(errors.IntegrityError, match="sha256"):
        publish(bad, repo)
    assert not (repo / "fmnist").exists() or list((repo / "fmnist").iterdir()) == []
    with pytest.raises(errors.ConfigError, match="bf16"):
        publish(converted, repo, "bf16")
    r = CliRunner().invoke(cli, ["publish", str(bad), str(repo)])
    assert r.exit_code != 0 and "sha256" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["publish", str(converted), str(repo)])
    assert r.exit_code == 0 and "fmnist/1" in r.output


def _tampered_version(repo, source_version: str, name: str):
    """A version folder whose model.bin differs from its manifest, renamed into place as publish does."""
    stage = repo / "fmnist" / f".stage-{name}"
    shutil.copytree(repo / "fmnist" / source_version, stage)
    blob = bytearray((stage / "model.bin").read_bytes())
    blob[200] ^= 0xFF
    (stage / "model.bin").write_bytes(bytes(blob))
    os.rename(stage, repo / "fmnist" / name)


def test_the_repository_serves_the_newest_verified_version_and_refuses_a_tampered_one(converted, tmp_path):
    repo = tmp_path / "repo"
    publish(converted, repo)
    said = []
    models = Repository(repo, _load, log=said.append)
    assert models.get()[0] == "1"
    publish(converted, repo)
    _tampered_version(repo, "2", "3")
    models.poll()
    assert models.get()[0] == "2" and models.served_versions() == ["2"]  # latest:1 (test_control.py: the policies)
    assert any("refused version 3" in s and "sha256" in s for s in said)
    said.clear()
    models.poll()  # a refused folder that did not change is not tried again
    assert said == []
    publish(converted, repo)  # 4: version 2 is released
    models.poll()
    assert models.get()[0] == "4" and models.served_versions() == ["4"]
    with pytest.raises(UnknownVersion):
        models.get("2")
    with pytest.raises(errors.ModelFileError, match="not a model repository"):
        Repository(tmp_path / "nothing", _load)
    empty = tmp_path / "empty" / "fmnist"
    empty.mkdir(parents=True)
    with pytest.raises(errors.ModelFileError, match="no version"):
        Repository(empty.parent, _load)


def test_hot_reload_under_load_fails_no_request(converted, tmp_path, fmnist):
    repo = tmp_path / "repo"
    publish(converted, repo)
    said: list[str] = []
    models = Repository(repo, _load, log=said.append, poll_s=0.2)
    x = to_model_input(fmnist.x_test[:1])
    body = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1],
                                   "data": x.ravel().tolist()}]}).encode()
    seen, failures, stop = [], [], threading.Event()

    def client(url):
        while not stop.is_set():
            req = urllib.request.Request(url + "/v2/models/fmnist/infer", data=body,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    seen.append(json.loads(r.read())["model_version"])
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(repr(exc))

    with live_server(create_app(models.start(), admin_token=ADMIN_TOKEN)) as url:
        threads = [threading.Thread(target=client, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(seen) >= 10, "answers from version 1")
        publish(converted, repo)
        wait_for(lambda: "2" in seen[-20:], "answers from version 2")
        _tampered_version(repo, "2", "3")
        wait_for(lambda: any("refused version 3" in line for line in said), "the tampered version 3 refused")
        answered = len(seen)
        wait_for(lambda: len(seen) >= answered + 10, "answers after the refusal")
        stop.set()
        for t in threads:
            t.join(30)
        with urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers=ADMIN), timeout=10) as r:
            metrics = r.read().decode()
        with urllib.request.urlopen(url + "/v2/models/fmnist", timeout=10) as r:
            meta = json.loads(r.read())
    models.close()
    assert failures == [] and len(seen) > 20
    assert seen[0] == "1" and seen[-1] == "2" and "3" not in seen
    assert meta["versions"] == ["2"]
    assert 'version="2"' in metrics and 'version="1"' not in metrics.split("fmnist_edge_model_info")[-1]


def test_serve_refuses_a_repository_without_versions_in_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["serve", "--repository", str(tmp_path), "--port", "0"])
    assert r.exit_code != 0 and "not a model repository" in r.output and "Traceback" not in r.output


def test_load_on_a_served_repository_with_reloads_fails_nothing(converted):
    """The load benchmark at small scale: a server process, both request kinds, a publish midway each step."""
    from fmnist_edge.harness.load import load_test

    res = load_test(converted, concurrency=(1, 4), seconds=2.0, log=lambda s: None)
    assert [(r["kind"], r["concurrency"]) for r in res["rows"]] == [
        ("v2 binary FP32", 1), ("v2 binary FP32", 4), ("JPEG 640x480 /predict", 1), ("JPEG 640x480 /predict", 4)]
    for r in res["rows"]:
        assert r["failed"] == 0 and r["requests"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0, r
    assert res["published"] == 5 and int(res["serving_at_end"]) >= 2
