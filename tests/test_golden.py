"""The golden-set gate: publish records a version's answers on real test images; a version that answers otherwise never serves."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

import numpy as np
import pytest

from fmnist_edge import errors, golden
from fmnist_edge.artifact import MANIFEST, file_entry, ir_pair, sha256
from fmnist_edge.convert.serving import publish
from fmnist_edge.runtime import Classifier

pytest.importorskip("starlette")
from live import live_server, wait_for  # noqa: E402

from fmnist_edge.serve import create_app  # noqa: E402
from fmnist_edge.serve.repository import Repository  # noqa: E402


def _load(path):
    return Classifier.load(path, precision="fp32")


def test_publish_writes_a_golden_set_that_the_manifest_covers(converted, tmp_path, fmnist):
    v1 = publish(converted, tmp_path / "repo")
    g = json.loads((v1 / golden.GOLDEN).read_text())
    n = golden.SIZE
    assert g["shape"] == [n, 28, 28] and g["labels"] == fmnist.y_test[golden.START:golden.START + n].tolist()
    assert len(g["answers"]) == n and all(0 <= a < 10 for a in g["answers"])
    entry = json.loads((v1 / MANIFEST).read_text())["golden"]
    assert entry["path"] == golden.GOLDEN and entry["sha256"] == sha256(v1 / golden.GOLDEN)
    assert golden.check(v1, _load(v1)) == f"golden set: {n} of {n} agree"
    changed = tmp_path / "changed"  # golden.json edited after publish: the manifest names it
    shutil.copytree(v1, changed)
    g["answers"] = [(a + 1) % 10 for a in g["answers"]]
    (changed / golden.GOLDEN).write_text(json.dumps(g))
    with pytest.raises(errors.IntegrityError, match="golden.json"):
        golden.check(changed, _load(changed))


def test_a_signed_version_signs_its_golden_set(converted, tmp_path):
    pytest.importorskip("model_signing")
    from fmnist_edge.signing import keygen, verify

    private, public = keygen(tmp_path / "key")
    v1 = publish(converted, tmp_path / "repo", sign=private)
    verify(v1, [public])
    g = json.loads((v1 / golden.GOLDEN).read_text())
    g["answers"] = [(a + 1) % 10 for a in g["answers"]]
    (v1 / golden.GOLDEN).write_text(json.dumps(g))  # rewritten consistently, manifest too, but not re-signed
    manifest = json.loads((v1 / MANIFEST).read_text())
    manifest["golden"] = file_entry(v1, v1 / golden.GOLDEN)
    (v1 / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(errors.SignatureError):
        verify(v1, [public])


def _permuted_version(repo, source_version: str, name: str) -> None:
    """A copy of a version whose IR answers with its output classes rolled by one, its manifest re-hashed so the
    hashes verify, renamed into place as publish does."""
    import openvino as ov
    from openvino import opset13 as ops

    stage = repo / "fmnist" / f".stage-{name}"
    shutil.copytree(repo / "fmnist" / source_version, stage)
    xml, _ = ir_pair(stage)
    model = ov.Core().read_model(xml)
    result = model.get_results()[0]
    src = result.input_value(0)
    names = src.get_names()
    gather = ops.gather(src, ops.constant(np.roll(np.arange(10), 1).astype(np.int64)), ops.constant(np.int64(-1)))
    src.get_tensor().set_names(set())
    gather.output(0).get_tensor().set_names(names)
    result.input(0).replace_source_output(gather.output(0))
    model.validate_nodes_and_infer_types()
    ov.save_model(model, stage / "permuted.xml", compress_to_fp16=False)
    del model
    for suffix in (".xml", ".bin"):
        os.replace(stage / f"permuted{suffix}", xml.with_suffix(suffix))
    manifest = json.loads((stage / MANIFEST).read_text())
    for entry in manifest["artifacts"]:
        entry["files"] = [file_entry(stage, p) for p in ir_pair(stage)]
    (stage / MANIFEST).write_text(json.dumps(manifest))
    os.rename(stage, repo / "fmnist" / name)


def _health(url) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
        return json.loads(r.read())


def test_a_version_that_answers_wrongly_fails_the_golden_set_and_never_serves(converted, tmp_path, fmnist):
    repo = tmp_path / "repo"
    publish(converted, repo)
    _permuted_version(repo, "1", "2")
    permuted = Classifier.load(repo / "fmnist" / "2")  # it verifies and loads: only the golden set can tell
    x = fmnist.x_test[:8]
    np.testing.assert_array_equal(permuted.predict_proba(x).argmax(1), (_load(repo / "fmnist" / "1").predict_proba(x).argmax(1) + 1) % 10)
    said: list[str] = []
    models = Repository(repo, _load, log=said.append, poll_s=0.1)  # at start: 2 is refused, 1 serves
    assert models.current == "1" and "2" in models.refused()
    shutil.rmtree(repo / "fmnist" / "2")
    said.clear()
    models = Repository(repo, _load, log=said.append, poll_s=0.1)
    with live_server(create_app(models.start())) as url:
        assert _health(url)["model"]["golden"] == f"golden set: {golden.SIZE} of {golden.SIZE} agree"
        _permuted_version(repo, "1", "2")
        wait_for(lambda: "2" in _health(url)["model"]["refused"], "version 2 refused in /health")
        health = _health(url)["model"]
        assert health["version"] == "1" and health["versions"] == ["1"]
        assert health["refused"] == {"2": f"golden set: 0 of {golden.SIZE} agree (needs 99%)"}
        assert any("refused version 2" in s and "golden set: 0 of" in s for s in said)
        n = len(said)
        for _ in range(5):  # polls, here and now: a refused folder that did not change is not tried again
            models.poll()
        assert not any("version 2" in s for s in said[n:])
        publish(converted, repo)  # 3: a good version after it swaps in
        wait_for(lambda: _health(url)["model"]["version"] == "3", "version 3 served")
        health = _health(url)["model"]
        assert health["versions"] == ["3"] and list(health["refused"]) == ["2"]
    models.close()


def test_a_version_without_a_golden_set_serves_ungated(converted, tmp_path):
    repo = tmp_path / "repo"
    v1 = publish(converted, repo)
    (v1 / golden.GOLDEN).unlink()
    said: list[str] = []
    with pytest.raises(errors.ModelFileError, match=r"refused: 1"):  # listed but gone: refused
        Repository(repo, _load, log=said.append)
    assert "golden.json is missing" in said[-1]
    manifest = json.loads((v1 / MANIFEST).read_text())
    del manifest["golden"]  # published before golden sets: served, and said to be not gated
    (v1 / MANIFEST).write_text(json.dumps(manifest))
    said.clear()
    models = Repository(repo, _load, log=said.append)
    assert models.current == "1" and models.gate("1") is None and "not gated" in said[-1]
