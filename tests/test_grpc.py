"""The KServe v2 gRPC service (`serve --grpc-port`), checked with the official Triton gRPC clients (blocking, asyncio
and streaming) against live servers, each in its own process: metadata, FP32 and BYTES tensors, classification,
statistics shared with REST, errors with REST's messages, TLS.

This process never imports fmnist_edge.serve.grpc's generated modules: tritonclient.grpc registers the same .proto
files in protobuf's default descriptor pool (see that package's docstring)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from live import wait_for

from fmnist_edge.harness import photos as P
from fmnist_edge.harness.load import start_grpc_server, stop_server
from fmnist_edge.runtime import to_model_input

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
import grpc  # noqa: E402
from tritonclient.grpc import aio as grpcaio  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402  (tritonclient's own generated code)
from tritonclient.utils import InferenceServerException  # noqa: E402

pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def ports(converted):
    """One `fmnist-edge serve --grpc-port 0` for the module: (REST port, gRPC port)."""
    proc, port, grpc_port = start_grpc_server("--model", converted, "--precision", "fp32")
    yield port, grpc_port
    stop_server(proc)


@pytest.fixture(scope="module")
def client(ports):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def rest(ports):
    c = httpclient.InferenceServerClient(f"127.0.0.1:{ports[0]}")
    yield c
    c.close()


def _input(x: np.ndarray, name: str = "image", datatype: str = "FP32", module=grpcclient):
    inp = module.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    return inp


def _probs(client, x, **kw):
    return client.infer("fmnist", [_input(x)], **kw)


def _shots(fmnist, n: int, start: int = 0) -> list[bytes]:
    sl = slice(start, start + n)
    return [p.data for p in P.make_photos(fmnist.x_test[sl], fmnist.y_test[sl], conditions=("camera",), sizes=("qvga",))]


def test_health_metadata_config_and_index_match_rest(client, ports):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fmnist") and client.is_model_ready("fmnist", "1")
    assert not client.is_model_ready("fmnist", "2") and not client.is_model_ready("shoes")
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/models/fmnist", timeout=10) as r:
        rest_meta = json.loads(r.read())
    meta = client.get_model_metadata("fmnist")
    assert (meta.name, list(meta.versions), meta.platform) == (rest_meta["name"], rest_meta["versions"], rest_meta["platform"])
    for got, want in ((meta.inputs, rest_meta["inputs"]), (meta.outputs, rest_meta["outputs"])):
        assert [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in got] == want
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2", timeout=10) as r:
        assert list(client.get_server_metadata().extensions) == json.loads(r.read())["extensions"]
    config = client.get_model_config("fmnist").config
    assert config.name == "fmnist" and config.max_batch_size == 64
    assert list(config.input[0].dims) == [28, 28, 1] and list(config.output[0].dims) == [10]
    with pytest.raises(InferenceServerException) as err:  # the repository extension needs --admin-token-file
        client.get_model_repository_index()
    assert err.value.status() == "StatusCode.PERMISSION_DENIED"  # (test_control.py: with a token, as REST)


def test_fp32_raw_tensors_agree_with_the_runtime(client, clf, fmnist):
    x = to_model_input(fmnist.x_test[:7])  # float32 (7, 28, 28, 1)
    res = _probs(client, x, request_id="g-7")
    np.testing.assert_allclose(res.as_numpy("probabilities"), clf.predict_tensor(x), atol=1e-5)
    response = res.get_response()
    assert response.id == "g-7" and response.model_version == "1" and list(response.outputs[0].shape) == [7, 10]
    one = _probs(client, x[:1], model_version="1")  # batch 1: the static batch-1 compile
    np.testing.assert_allclose(one.as_numpy("probabilities"), clf.predict_tensor(x[:1]), atol=1e-5)


def test_bytes_photos_take_the_runtime_photo_path(client, clf, fmnist):
    shots = _shots(fmnist, 5)
    res = client.infer("fmnist", [_input(np.array(shots, dtype=np.object_), datatype="BYTES")])
    np.testing.assert_allclose(res.as_numpy("probabilities"), clf.predict_proba(shots), atol=1e-5)


def test_tensors_in_contents_instead_of_raw_bytes(ports, clf, fmnist):
    """`contents.fp32_contents` and `contents.bytes_contents`, which tritonclient never sends: its own stub."""
    x, shots = to_model_input(fmnist.x_test[:3]), _shots(fmnist, 2, start=10)
    with grpc.insecure_channel(f"127.0.0.1:{ports[1]}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        req = service_pb2.ModelInferRequest(model_name="fmnist")
        req.inputs.add(name="image", datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(x.ravel().tolist())
        got = stub.ModelInfer(req, timeout=30)
        probs = np.frombuffer(got.raw_output_contents[0], "<f4").reshape(list(got.outputs[0].shape))
        np.testing.assert_allclose(probs, clf.predict_tensor(x), atol=1e-5)
        req = service_pb2.ModelInferRequest(model_name="fmnist")
        req.inputs.add(name="image", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(shots)
        got = stub.ModelInfer(req, timeout=30)
        np.testing.assert_allclose(np.frombuffer(got.raw_output_contents[0], "<f4").reshape(2, 10),
                                   clf.predict_proba(shots), atol=1e-5)
        req = service_pb2.ModelInferRequest(model_name="fmnist")
        req.inputs.add(name="image", datatype="FP32", shape=[1, 28, 28, 1])
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "neither raw_input_contents" in err.value.details()


def test_classification_extension_gives_score_index_label_strings(client, clf, fmnist):
    x = to_model_input(fmnist.x_test[:4])
    out = grpcclient.InferRequestedOutput("probabilities", class_count=3)
    got = client.infer("fmnist", [_input(x)], outputs=[out]).as_numpy("probabilities")
    assert got.shape == (4, 3)
    for row, p in zip(got, clf.predict_tensor(x), strict=True):
        fields = [b.decode().split(":") for b in row]
        assert [int(f[1]) for f in fields] == list(np.argsort(-p, kind="stable")[:3])
        assert [f[2] for f in fields] == [clf.class_names[int(f[1])] for f in fields]
        np.testing.assert_allclose([float(f[0]) for f in fields], np.sort(p)[::-1][:3], atol=1e-5)


def test_statistics_count_grpc_and_rest_requests_alike(client, rest, fmnist):
    def row():
        (r,) = client.get_inference_statistics("fmnist").model_stats
        return r

    before = row()
    x = to_model_input(fmnist.x_test[:3])
    _probs(client, x)
    rest.infer("fmnist", [_input(x[:2], module=httpclient)])
    with pytest.raises(InferenceServerException):
        _probs(client, np.full((1, 28, 28, 1), 2.0, np.float32))  # refused by the model's range check
    after = row()
    assert (after.name, after.version) == ("fmnist", "1")
    assert after.inference_count - before.inference_count == 5  # 3 over gRPC, 2 over REST
    assert after.execution_count - before.execution_count == 2
    s, b = after.inference_stats, before.inference_stats
    assert s.success.count - b.success.count == 2 and s.fail.count - b.fail.count == 1
    assert s.compute_infer.ns > b.compute_infer.ns and after.last_inference > 0
    assert {r.batch_size for r in after.batch_stats} >= {2, 3}
    assert client.get_inference_statistics().model_stats[0].version == "1"  # every model
    assert client.get_inference_statistics("fmnist", "1", as_json=True) == client.get_inference_statistics("fmnist", as_json=True)
    rest_stats = rest.get_inference_statistics("fmnist")["model_stats"][0]
    assert rest_stats["inference_count"] == client.get_inference_statistics("fmnist").model_stats[0].inference_count


BAD = [  # (what to send, gRPC status, words of the message), the same request over both protocols
    ({"version": "9"}, "NOT_FOUND", "no version"),
    ({"name": "pixels"}, "INVALID_ARGUMENT", "unknown input"),
    ({"x": np.zeros((1, 28, 28), np.float32)}, "INVALID_ARGUMENT", "[N, 28, 28, 1]"),
    ({"x": np.full((1, 28, 28, 1), 255.0, np.float32)}, "INVALID_ARGUMENT", "outside [0, 1]"),
    ({"x": np.zeros((1,), np.int64), "datatype": "INT64"}, "INVALID_ARGUMENT", "not accepted"),
    ({"x": np.zeros((65, 28, 28, 1), np.float32)}, "INVALID_ARGUMENT", "outside 1..64"),
    ({"x": np.array([b"not an image"], dtype=np.object_), "datatype": "BYTES"}, "INVALID_ARGUMENT", "not an image"),
    ({"classification": 11}, "INVALID_ARGUMENT", "classification"),
]


@pytest.mark.parametrize("bad, code, words", BAD)
def test_errors_have_their_status_code_and_rest_s_message(client, rest, bad, code, words):
    def send(module, c):
        x = bad.get("x", np.zeros((1, 28, 28, 1), np.float32))
        outputs = ([module.InferRequestedOutput("probabilities", class_count=bad["classification"])]
                   if "classification" in bad else None)
        inp = _input(x, bad.get("name", "image"), bad.get("datatype", "FP32"), module)
        with pytest.raises(InferenceServerException) as err:
            c.infer("fmnist", [inp], model_version=bad.get("version", ""), outputs=outputs)
        return err.value

    over_grpc, over_rest = send(grpcclient, client), send(httpclient, rest)
    assert over_grpc.status() == f"StatusCode.{code}" and words in over_grpc.message()
    assert over_grpc.message() == over_rest.message()


def test_unknown_models_and_repository_control(client):
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("shoes")
    assert err.value.status() == "StatusCode.NOT_FOUND" and "unknown model 'shoes'" in err.value.message()
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_inference_statistics("shoes")
    for call in (client.load_model, client.unload_model):  # off without --admin-token-file (test_control.py)
        with pytest.raises(InferenceServerException) as err:
            call("fmnist")
        assert err.value.status() == "StatusCode.PERMISSION_DENIED" and "--admin-token-file" in err.value.message()


def test_the_asyncio_client_with_concurrent_requests(ports, clf, fmnist):
    xs = [to_model_input(fmnist.x_test[i * 3 : i * 3 + 1 + i % 3]) for i in range(8)]  # batches of 1 to 3

    async def main():
        async with grpcaio.InferenceServerClient(f"127.0.0.1:{ports[1]}") as c:
            assert await c.is_server_ready()
            inputs = []
            for x in xs:
                inp = grpcaio.InferInput("image", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                inputs.append(inp)
            return await asyncio.gather(*(c.infer("fmnist", [inp], request_id=str(i)) for i, inp in enumerate(inputs)))

    results = asyncio.run(main())
    for i, (x, res) in enumerate(zip(xs, results, strict=True)):
        assert res.get_response().id == str(i)
        np.testing.assert_allclose(res.as_numpy("probabilities"), clf.predict_tensor(x), atol=1e-5)


def test_a_stream_answers_in_order_and_outlives_an_error(ports, clf, fmnist):
    x = to_model_input(fmnist.x_test[20:26])
    got, lock = [], threading.Lock()

    def callback(result, error):
        with lock:
            got.append(error if error is not None else result)

    c = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
    c.start_stream(callback=callback)
    try:
        for i in range(6):
            c.async_stream_infer("fmnist", [_input(x[i : i + 1])], request_id=str(i),
                                 model_version="9" if i == 2 else "")  # the third: an unknown version
        wait_for(lambda: len(got) == 6, "six stream responses", 30)
    finally:
        c.stop_stream()
        c.close()
    assert isinstance(got[2], InferenceServerException) and "no version '9'" in got[2].message()
    for i in (0, 1, 3, 4, 5):
        assert got[i].get_response().id == str(i)
        np.testing.assert_allclose(got[i].as_numpy("probabilities"), clf.predict_tensor(x[i : i + 1]), atol=1e-5)


def test_rest_and_grpc_requests_share_a_dynamic_batch(converted, fmnist):
    """Batching on (preferred size 2, so a batch goes as soon as two images wait; the delay, 1 s, the most the option
    allows, only matters if one request came a second after the other): one REST and one gRPC request of one image
    each become one model call of two."""
    proc, port, grpc_port = start_grpc_server("--model", converted, "--precision", "fp32",
                                              "--max-batch-delay-us", "1000000", "--preferred-batch-size", "2")
    try:
        g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        config = g.get_model_config("fmnist").config
        assert config.dynamic_batching.max_queue_delay_microseconds == 1_000_000
        assert list(config.dynamic_batching.preferred_batch_size) == [2]
        x = to_model_input(fmnist.x_test[:2])
        body = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1],
                                       "data": x[1].ravel().tolist()}]}).encode()
        out = {}

        def over_rest():  # urllib: tritonclient.http's gevent client stays in the thread that made it
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/fmnist/infer", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                out["r"] = json.loads(r.read())

        threads = [threading.Thread(target=lambda: out.update(g=g.infer("fmnist", [_input(x[:1])]))),
                   threading.Thread(target=over_rest)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        (row,) = g.get_inference_statistics("fmnist").model_stats
        assert row.inference_count == 2 and row.execution_count == 1
        assert [(b.batch_size, b.compute_infer.count) for b in row.batch_stats] == [(2, 1)]
        assert out["g"].as_numpy("probabilities").shape == (1, 10) and out["r"]["outputs"][0]["shape"] == [1, 10]
        g.close()
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (openssl's command line)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "key.pem", "-out", d / "cert.pem",
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


def test_tls(converted, tls_files, clf, fmnist):
    cert, key = tls_files
    proc, _, grpc_port = start_grpc_server("--model", converted, "--precision", "fp32", "--tls-cert", cert, "--tls-key", key)
    try:
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}", ssl=True, root_certificates=str(cert))
        assert c.is_server_live()
        x = to_model_input(fmnist.x_test[:2])
        np.testing.assert_allclose(_probs(c, x).as_numpy("probabilities"), clf.predict_tensor(x), atol=1e-5)
        c.close()
        plain = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=5)  # a plaintext client cannot talk to the TLS port
        plain.close()
    finally:
        stop_server(proc)


def test_bad_tls_options_are_one_error_line(tmp_path, tls_files):
    from fmnist_edge.cli import cli

    cert, key = tls_files
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    other_key = tmp_path / "other.pem"
    subprocess.run(["openssl", "genrsa", "-out", other_key, "2048"], check=True, capture_output=True, timeout=60)
    cases = [
        (["--grpc-port", "0", "--tls-cert", tmp_path / "missing.pem", "--tls-key", key], "cannot read it"),
        (["--grpc-port", "0", "--tls-cert", junk, "--tls-key", key], "not a PEM certificate"),
        (["--grpc-port", "0", "--tls-cert", cert, "--tls-key", other_key], "not a PEM certificate and its"),
        (["--grpc-port", "0", "--tls-cert", cert], "go together"),
        (["--tls-key", key], "go together"),  # HTTPS alone (no --grpc-port) checks them the same way
    ]
    for args, words in cases:
        res = CliRunner().invoke(cli, ["serve", "--model", tmp_path / "no-model", *map(str, args)])
        assert res.exit_code == 1, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], res.output


def test_a_taken_grpc_port_is_one_error_line(converted, ports):
    res = subprocess.run([sys.executable, "-m", "fmnist_edge.cli", "serve", "--model", str(converted), "--precision", "fp32",
                          "--port", "0", "--grpc-port", str(ports[1])], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "cannot listen for gRPC" in errors[0] and "--grpc-port" in errors[0], res.stderr


def test_both_copies_of_the_protos_share_one_process_only_when_they_are_the_same():
    """What the package docstring says: with tritonclient's identical .proto files, one process imports both; with
    others, the second import fails with protobuf's 'duplicate file name'."""
    code = ("import tritonclient.grpc.service_pb2 as t, fmnist_edge.serve.grpc.grpc_service_pb2 as f; "
            "print(t.ModelInferRequest is f.ModelInferRequest)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if _protos_serialized("fmnist_edge.serve.grpc.grpc_service_pb2") == service_pb2.DESCRIPTOR.serialized_pb:
        assert res.returncode == 0 and res.stdout.strip() == "True", res.stderr[-2000:]
    else:
        assert res.returncode != 0 and "duplicate file name" in res.stderr


def _protos_serialized(module: str) -> bytes:
    """A generated module's serialized file descriptor, read in a child process (importing it here could collide)."""
    code = f"import sys, {module} as m; sys.stdout.buffer.write(m.DESCRIPTOR.serialized_pb)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True).stdout
