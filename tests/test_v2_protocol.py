"""The Open Inference Protocol (KServe v2 REST) and /metrics, checked with the official Triton HTTP client against
a live server: metadata, readiness, JSON and binary tensors, BYTES photos, errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from live import ADMIN

from fmnist_edge.harness import photos as P
from fmnist_edge.runtime import to_model_input

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def client(url):
    c = httpclient.InferenceServerClient(url.removeprefix("http://"))
    yield c
    c.close()


def _infer(client, x, binary_in=True, binary_out=True, **kw):
    inp = httpclient.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = httpclient.InferRequestedOutput("probabilities", binary_data=binary_out)
    return client.infer("fmnist", [inp], outputs=[out], **kw)


def test_server_and_model_metadata_and_readiness(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fmnist") and client.is_model_ready("fmnist", "1")
    assert not client.is_model_ready("fmnist", "2") and not client.is_model_ready("shoes")
    meta = client.get_model_metadata("fmnist")
    assert meta["name"] == "fmnist" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary_in, binary_out", [(True, True), (False, False), (True, False), (False, True)])
def test_json_and_binary_tensors_agree_with_the_runtime(client, clf, fmnist, binary_in, binary_out):
    x = to_model_input(fmnist.x_test[:7])  # float32 (7, 28, 28, 1)
    res = _infer(client, x, binary_in, binary_out, request_id="r-7")
    np.testing.assert_allclose(res.as_numpy("probabilities"), clf.predict_proba(fmnist.x_test[:7]), atol=1e-5)
    assert res.get_response()["id"] == "r-7" and res.get_response()["model_version"] == "1"
    one = _infer(client, x[:1])  # batch 1 runs on the static batch-1 compile
    np.testing.assert_allclose(one.as_numpy("probabilities"), clf.predict_proba(fmnist.x_test[:1]), atol=1e-5)


def test_bytes_photos_take_the_runtime_photo_path(client, clf, fmnist):
    shots = [p.data for p in P.make_photos(fmnist.x_test[:5], fmnist.y_test[:5], conditions=("camera",), sizes=("qvga",))]
    inp = httpclient.InferInput("image", [len(shots)], "BYTES")
    inp.set_data_from_numpy(np.array(shots, dtype=np.object_), binary_data=True)
    res = client.infer("fmnist", [inp], model_version="1")
    np.testing.assert_allclose(res.as_numpy("probabilities"), clf.predict_proba(shots), atol=1e-5)


def _post(url, path, body: bytes, headers=None):
    req = urllib.request.Request(url + path, data=body, headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_bytes_as_base64_json(url, clf, fmnist):
    import base64

    shots = [p.data for p in P.make_photos(fmnist.x_test[:2], fmnist.y_test[:2], conditions=("noise",), sizes=("qvga",))]
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                        "data": [base64.b64encode(shots[0]).decode(), {"b64": base64.b64encode(shots[1]).decode()}]}]}
    status, raw = _post(url, "/v2/models/fmnist/infer", json.dumps(body).encode())
    assert status == 200, raw
    out = json.loads(raw)["outputs"][0]
    assert out["shape"] == [2, 10]
    np.testing.assert_allclose(np.reshape(out["data"], (2, 10)), clf.predict_proba(shots), atol=1e-5)


def _one(name, datatype, shape, data):
    """An infer request body with one input tensor."""
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


@pytest.mark.parametrize("path, body, status, words", [
    ("/v2/models/shoes/infer", {"inputs": []}, 404, "unknown model"),
    ("/v2/models/fmnist/versions/9/infer", {"inputs": []}, 404, "no version"),
    ("/v2/models/fmnist/infer", "{not json", 400, "not valid JSON"),
    ("/v2/models/fmnist/infer", _one("pixels", "FP32", [1], [0]), 400, "unknown input"),
    ("/v2/models/fmnist/infer", _one("image", "FP32", [1, 28, 28], [0]), 400, "[N, 28, 28, 1]"),
    ("/v2/models/fmnist/infer", _one("image", "FP32", [1, 28, 28, 1], [0.5] * 10), 400, "needs 784"),
    ("/v2/models/fmnist/infer", _one("image", "FP32", [1, 28, 28, 1], [255.0] * 784), 400, "outside [0, 1]"),
    ("/v2/models/fmnist/infer", _one("image", "INT64", [1], [1]), 400, "not accepted"),
    ("/v2/models/fmnist/infer", _one("image", "FP32", [65, 28, 28, 1], [0.0] * 65 * 784), 400, "outside 1..64"),
    ("/v2/models/fmnist/infer", _one("image", "BYTES", [1], ["bm90IGFuIGltYWdl"]), 400, "not an image"),
    ("/v2/models/fmnist/infer", _one("image", "BYTES", [1], ["***"]), 400, "base64"),
])
def test_errors_follow_the_protocol(url, path, body, status, words):
    raw_body = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    got, raw = _post(url, path, raw_body)
    assert got == status, raw
    assert words in json.loads(raw)["error"]


def test_the_triton_client_sees_errors_as_exceptions(client):
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("shoes")
    x = np.zeros((1, 28, 28, 1), np.float32)
    inp = httpclient.InferInput("image", [1, 28, 28, 1], "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="no version"):
        client.infer("fmnist", [inp], model_version="3")


def test_metrics_count_requests_by_route_and_time_the_stages(url, client, fmnist):
    _infer(client, to_model_input(fmnist.x_test[:2]))
    _post(url, "/v2/models/fmnist/infer", b"{not json")
    shot = P.make_photos(fmnist.x_test[:1], fmnist.y_test[:1], conditions=("clean",), sizes=("qvga",))[0].data
    assert _post(url, "/predict", shot, {"Content-Type": "image/jpeg"})[0] == 200
    with urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers=ADMIN), timeout=10) as r:
        assert r.headers["content-type"].startswith("text/plain")
        text = r.read().decode()
    def value(line_start):
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))
    assert value('fmnist_edge_requests_total{endpoint="/v2/models/{name}/infer",method="POST",status="200"}') >= 1
    assert value('fmnist_edge_request_failures_total{endpoint="/v2/models/{name}/infer",status="400"}') >= 1
    assert value('fmnist_edge_preprocess_duration_seconds_count{endpoint="/predict"}') >= 1
    assert value('fmnist_edge_inference_duration_seconds_count{endpoint="/v2/models/{name}/infer"}') >= 1
    assert 'fmnist_edge_model_info{device="CPU",inference_precision="f32",model="fmnist",precision="fp32",version="1"} 1.0' in text
    assert value("fmnist_edge_uptime_seconds") > 0 and "fmnist_edge_requests_in_flight" in text
    assert "/v2/models/fmnist/infer" not in text  # raw paths never become labels


@pytest.mark.parametrize("binary_out", [True, False])
def test_classification_extension_gives_score_index_label_strings(client, clf, fmnist, binary_out):
    x = to_model_input(fmnist.x_test[:4])
    inp = httpclient.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out = httpclient.InferRequestedOutput("probabilities", binary_data=binary_out, class_count=3)
    got = client.infer("fmnist", [inp], outputs=[out]).as_numpy("probabilities")
    assert got.shape == (4, 3)
    probs = clf.predict_proba(fmnist.x_test[:4])
    for row, p in zip(got, probs, strict=True):
        fields = [(b if isinstance(b, bytes) else str(b).encode()).decode().split(":") for b in row]
        assert [int(f[1]) for f in fields] == list(np.argsort(-p)[:3])
        assert [f[2] for f in fields] == [clf.class_names[int(f[1])] for f in fields]
        np.testing.assert_allclose([float(f[0]) for f in fields], np.sort(p)[::-1][:3], atol=1e-5)


@pytest.mark.parametrize("k", [0, 11, "3", True])
def test_a_class_count_outside_the_classes_is_a_bad_request(url, k):
    body = _one("image", "FP32", [1, 28, 28, 1], [0.0] * 784)
    body["outputs"] = [{"name": "probabilities", "parameters": {"classification": k}}]
    got, raw = _post(url, "/v2/models/fmnist/infer", json.dumps(body).encode())
    assert got == 400 and "classification" in json.loads(raw)["error"]


def test_statistics_extension_counts_requests_and_their_stages(client, fmnist):
    before = client.get_inference_statistics("fmnist")["model_stats"][0]
    _infer(client, to_model_input(fmnist.x_test[:3]))
    _infer(client, to_model_input(fmnist.x_test[:1]))
    with pytest.raises(InferenceServerException):
        _infer(client, np.full((1, 28, 28, 1), 2.0, np.float32))  # outside [0, 1]: refused by the model's check
    stats = client.get_inference_statistics("fmnist")
    (row,) = stats["model_stats"]
    assert row["name"] == "fmnist" and row["version"] == "1"
    assert row["inference_count"] - before["inference_count"] == 4
    assert row["execution_count"] - before["execution_count"] == 2
    s, b = row["inference_stats"], before["inference_stats"]
    assert s["success"]["count"] - b["success"]["count"] == 2 and s["fail"]["count"] - b["fail"]["count"] == 1
    for stage in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert s[stage]["count"] - b[stage]["count"] == 2 and s[stage]["ns"] >= b[stage]["ns"]
    assert s["compute_infer"]["ns"] > b["compute_infer"]["ns"] and row["last_inference"] > 0
    assert {r["batch_size"] for r in row["batch_stats"]} >= {1, 3}
    assert client.get_inference_statistics()["model_stats"][0]["version"] == "1"  # every model: GET /v2/models/stats
    assert client.get_inference_statistics("fmnist", "1") == stats
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_inference_statistics("shoes")
    assert {"statistics", "classification"} <= set(client.get_server_metadata()["extensions"])
