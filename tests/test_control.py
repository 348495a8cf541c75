"""Who may steer a kiosk, and how: the admin token, HTTPS, the repository extension (index, load with a version to
pin, unload) over REST and gRPC, and the version policy, checked with tritonclient's own calls against live
`fmnist-edge serve` processes on 127.0.0.1 (each in its own process: this one never imports fmnist_edge.serve.grpc,
see test_grpc.py).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import urllib.error
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from live import live_server, private_ca, wait_for

from fmnist_edge.cli import cli
from fmnist_edge.convert.serving import publish
from fmnist_edge.harness.load import start_grpc_server, start_server, stop_server
from fmnist_edge.runtime import Classifier, to_model_input

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
pytest.importorskip("starlette")
from tritonclient.utils import InferenceServerException  # noqa: E402

from fmnist_edge import errors  # noqa: E402
from fmnist_edge.serve import create_app  # noqa: E402
from fmnist_edge.serve.app import exposure_warning  # noqa: E402
from fmnist_edge.serve.repository import Repository, UnknownVersion, Unloaded, VersionPolicy  # noqa: E402

TOKEN = "kiosk-admin-" + "0123456789abcdef" * 2
AUTH = {"authorization": f"Bearer {TOKEN}"}
PIN_1 = json.dumps({"version_policy": {"specific": {"versions": [1]}}})  # Triton's way to pin, through `config`


def _token_file(folder, text: str = TOKEN, mode: int = 0o600, name: str = "admin.token"):
    path = folder / name
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed CA and a server certificate it signed for 127.0.0.1 and localhost: (ca, cert, key) PEM paths."""
    return private_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def repo(converted, tmp_path_factory):
    """A repository of two versions of the tiny model (1 and 2); tests may add versions, never change these."""
    root = tmp_path_factory.mktemp("control") / "repo"
    publish(converted, root)
    publish(converted, root)
    return root


@pytest.fixture(scope="module")
def kiosk(repo, tls, tmp_path_factory):
    """`serve --repository REPO --admin-token-file F --tls-cert C --tls-key K --grpc-port 0`: (REST port, gRPC port)."""
    ca, cert, key = tls
    token = _token_file(tmp_path_factory.mktemp("token"))
    proc, port, grpc_port = start_grpc_server("--repository", repo, "--precision", "fp32", "--admin-token-file", token,
                                              "--tls-cert", cert, "--tls-key", key)
    yield port, grpc_port
    stop_server(proc)


@pytest.fixture(scope="module")
def rest(kiosk, tls):
    c = httpclient.InferenceServerClient(f"127.0.0.1:{kiosk[0]}", ssl=True, ssl_options={"ca_certs": str(tls[0])})
    yield c
    c.close()


@pytest.fixture(scope="module")
def rpc(kiosk, tls):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{kiosk[1]}", ssl=True, root_certificates=str(tls[0]))
    yield c
    c.close()


@pytest.fixture
def unpinned(rest):
    """The kiosk as it starts: loaded, its newest version current (whatever a test before left)."""
    rest.load_model("fmnist", headers=AUTH)
    yield
    rest.load_model("fmnist", headers=AUTH)


def _x(fmnist) -> np.ndarray:
    return to_model_input(fmnist.x_test[:2])


def _served(client, module, fmnist) -> str:
    """The version that answers an infer request without a version."""
    inp = module.InferInput("image", [2, 28, 28, 1], "FP32")
    inp.set_data_from_numpy(_x(fmnist))
    result = client.infer("fmnist", [inp])
    return result.get_response()["model_version"] if module is httpclient else result.get_response().model_version


def _https(port: int, path: str, ca, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, JSON body) of a request to the kiosk over HTTPS, checked against the test's CA."""
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            raw, status, hdrs = r.read(), r.status, r.headers
    except urllib.error.HTTPError as err:
        raw, status, hdrs = err.read(), err.code, err.headers
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode()


def _index(rows) -> dict:
    """version -> (state, reason) of a repository index (REST's list of dicts or gRPC's response)."""
    rows = rows if isinstance(rows, list) else [{"version": m.version, "state": m.state, "reason": m.reason} for m in rows.models]
    return {r["version"]: (r["state"], r["reason"]) for r in rows}


# ---------------------------------------------------------------- the admin token


def test_control_endpoints_answer_401_without_the_token_and_inference_stays_open(kiosk, rest, rpc, tls, fmnist, unpinned):
    wrong = {"authorization": "Bearer " + "x" * len(TOKEN)}
    for headers in (None, wrong, {"authorization": TOKEN}):  # none, another token, the token without its scheme
        for call in (rest.get_model_repository_index, lambda headers: rest.load_model("fmnist", headers=headers, config=PIN_1),
                     lambda headers: rest.unload_model("fmnist", headers=headers)):
            with pytest.raises(InferenceServerException) as err:
                call(headers=headers)
            assert err.value.status() == "401" and "Authorization: Bearer" in err.value.message()
        for call in (rpc.get_model_repository_index, lambda headers: rpc.load_model("fmnist", headers=headers, config=PIN_1),
                     lambda headers: rpc.unload_model("fmnist", headers=headers)):
            with pytest.raises(InferenceServerException) as err:
                call(headers=headers)
            assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    status, headers, body = _https(kiosk[0], "/metrics", tls[0])
    assert status == 401 and headers["www-authenticate"].startswith("Bearer") and "admin token" in body["error"]
    status, _, body = _https(kiosk[0], "/metrics", tls[0], headers=AUTH)
    assert status == 200 and "fmnist_edge_requests_total" in body
    # nothing was pinned or unloaded, and inference and health never needed the token
    assert _served(rest, httpclient, fmnist) == "2" and _served(rpc, grpcclient, fmnist) == "2"
    assert _https(kiosk[0], "/health", tls[0])[2]["model"]["version"] == "2"


# ---------------------------------------------------------------- HTTPS


def test_https_serves_the_page_health_and_the_protocol(kiosk, rest, tls):
    status, _, page = _https(kiosk[0], "/", tls[0])
    assert status == 200 and "<html" in page.lower()
    status, _, health = _https(kiosk[0], "/health", tls[0])
    assert status == 200 and health["status"] == "ok"
    assert rest.is_server_live() and rest.is_model_ready("fmnist")
    with pytest.raises(urllib.error.URLError):  # the certificate is checked: without the CA it is refused
        urllib.request.urlopen(f"https://127.0.0.1:{kiosk[0]}/health", timeout=10,
                               context=ssl.create_default_context())
    with pytest.raises(OSError):  # and plain HTTP is not spoken (URLError and a dropped connection are OSErrors)
        urllib.request.urlopen(f"http://127.0.0.1:{kiosk[0]}/health", timeout=10).read()


# ---------------------------------------------------------------- the repository extension


def test_a_pinned_version_serves_with_the_token(kiosk, rest, rpc, tls, fmnist, unpinned):
    index = _index(rest.get_model_repository_index(headers=AUTH))
    assert index["2"] == ("READY", "current") and index["1"] == ("UNAVAILABLE", "not served: the version policy is latest:1")
    assert _index(rpc.get_model_repository_index(headers=AUTH)) == index
    rest.load_model("fmnist", headers=AUTH, config=PIN_1)  # REST: pins version 1 through Triton's config parameter
    assert _served(rest, httpclient, fmnist) == "1" and _served(rpc, grpcclient, fmnist) == "1"
    health = _https(kiosk[0], "/health", tls[0])[2]["model"]
    assert health["version"] == "1" and health["versions"] == ["1", "2"]  # the pin, and what the policy serves
    index = _index(rpc.get_model_repository_index(headers=AUTH))
    assert index["1"] == ("READY", "current, pinned by a load request") and index["2"] == ("READY", "")
    rpc.load_model("fmnist", headers=AUTH)  # gRPC, no version: unpinned, the newest is current again
    assert _served(rest, httpclient, fmnist) == "2"
    status, _, body = _https(kiosk[0], "/v2/repository/models/fmnist/load", tls[0], "POST",  # the plain-JSON form
                             json.dumps({"parameters": {"version": "1"}}).encode(), AUTH)
    assert (status, body) == (200, {"name": "fmnist", "version": "1", "pinned": True})
    assert _served(rpc, grpcclient, fmnist) == "1"
    with pytest.raises(InferenceServerException) as err:
        rest.load_model("fmnist", headers=AUTH, config=json.dumps({"version_policy": {"specific": {"versions": [7]}}}))
    assert err.value.status() == "400" and "no version '7'" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        rpc.load_model("shoes", headers=AUTH)
    assert err.value.status() == "StatusCode.NOT_FOUND"
    assert _served(rest, httpclient, fmnist) == "1"  # a refused load changes nothing


def test_unload_stops_serving_until_the_next_load(kiosk, rest, rpc, tls, fmnist, unpinned):
    rpc.unload_model("fmnist", headers=AUTH)
    with pytest.raises(InferenceServerException) as err:
        _served(rest, httpclient, fmnist)
    assert err.value.status() == "400" and "unloaded" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        _served(rpc, grpcclient, fmnist)
    assert err.value.status() == "StatusCode.UNAVAILABLE" and "unloaded" in err.value.message()
    assert not rpc.is_model_ready("fmnist") and not rest.is_model_ready("fmnist")
    assert _https(kiosk[0], "/health", tls[0])[2]["status"] == "unloaded"
    index = _index(rest.get_model_repository_index(headers=AUTH))
    assert {state for state, _ in index.values()} == {"UNAVAILABLE"} and "unloaded by request" in index["2"][1]
    assert not [m for m in rpc.get_model_repository_index(headers=AUTH, as_json=False).models if m.state == "READY"]
    rest.load_model("fmnist", headers=AUTH)
    assert _served(rpc, grpcclient, fmnist) == "2" and _https(kiosk[0], "/health", tls[0])[2]["status"] == "ok"


def test_a_version_that_fails_its_gates_is_indexed_with_its_reason_and_cannot_be_pinned(kiosk, repo, rest, fmnist, unpinned):
    stage = repo / "fmnist" / ".stage-bad"
    shutil.copytree(repo / "fmnist" / "2", stage)
    blob = bytearray((stage / "model.bin").read_bytes())
    blob[200] ^= 0xFF
    (stage / "model.bin").write_bytes(bytes(blob))
    os.rename(stage, repo / "fmnist" / "3")
    wait_for(lambda: _index(rest.get_model_repository_index(headers=AUTH)).get("3", ("", ""))[1].startswith("refused"),
             "version 3 refused in the index")
    state, reason = _index(rest.get_model_repository_index(headers=AUTH))["3"]
    assert state == "UNAVAILABLE" and "sha256" in reason
    with pytest.raises(InferenceServerException) as err:
        rest.load_model("fmnist", headers=AUTH, config=json.dumps({"version_policy": {"specific": {"versions": [3]}}}))
    assert err.value.status() == "400" and "version 3 cannot serve" in err.value.message() and "sha256" in err.value.message()
    assert _served(rest, httpclient, fmnist) == "2"


def test_without_a_token_the_control_endpoints_are_off(converted, fmnist):
    proc, port, grpc_port = start_grpc_server("--model", converted, "--precision", "fp32")
    rest = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        with pytest.raises(InferenceServerException) as err:
            rest.get_model_repository_index(headers=AUTH)
        assert err.value.status() == "403" and "--admin-token-file" in err.value.message()
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert http.value.code == 403 and "--admin-token-file" in json.loads(http.value.read())["error"]
        with pytest.raises(InferenceServerException) as err:
            rpc.load_model("fmnist", headers=AUTH)
        assert err.value.status() == "StatusCode.PERMISSION_DENIED" and "--admin-token-file" in err.value.message()
        assert _served(rest, httpclient, fmnist) == "1" and _served(rpc, grpcclient, fmnist) == "1"
    finally:
        rest.close()
        rpc.close()
        stop_server(proc)


def test_a_fixed_model_is_indexed_but_cannot_be_loaded_or_unloaded(converted, tmp_path, fmnist):
    proc, port = start_server("--model", converted, "--precision", "fp32", "--admin-token-file", _token_file(tmp_path))
    rest = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        assert rest.get_model_repository_index(headers=AUTH) == [
            {"name": "fmnist", "version": "1", "state": "READY", "reason": "the fixed --model"}]
        for call in (rest.load_model, rest.unload_model):
            with pytest.raises(InferenceServerException) as err:
                call("fmnist", headers=AUTH)
            assert err.value.status() == "400" and "serve --repository" in err.value.message()
        assert _served(rest, httpclient, fmnist) == "1"
    finally:
        rest.close()
        stop_server(proc)


# ---------------------------------------------------------------- the version policy


def _load(path):
    return Classifier.load(path, precision="fp32")


def test_the_version_policy_chooses_what_is_loaded_and_requestable(repo, tmp_path, fmnist):
    root = tmp_path / "repo"
    shutil.copytree(repo / "fmnist" / "1", root / "fmnist" / "1")
    shutil.copytree(repo / "fmnist" / "2", root / "fmnist" / "2")
    assert Repository(root, _load, log=lambda _: None).served_versions() == ["2"]  # latest:1, the default
    models = Repository(root, _load, log=lambda _: None, policy=VersionPolicy.parse("specific:1"))
    assert models.get()[0] == "1" and models.served_versions() == ["1"]
    shutil.copytree(root / "fmnist" / "2", root / "fmnist" / "3")
    models.poll()  # a new version the policy does not name: not loaded
    assert models.served_versions() == ["1"] and models.index()[-1]["state"] == "UNAVAILABLE"
    with pytest.raises(UnknownVersion):
        models.get("3")
    every = Repository(root, _load, log=lambda _: None, policy=VersionPolicy.parse("all"))
    assert every.get()[0] == "3" and every.served_versions() == ["1", "2", "3"]
    two = Repository(root, _load, log=lambda _: None, policy=VersionPolicy.parse("latest:2"))
    assert two.served_versions() == ["2", "3"]
    assert two.load("1") == "1" and two.served_versions() == ["1", "2", "3"] and two.pinned == "1"
    assert two.load() == "3" and two.served_versions() == ["2", "3"]  # unpinned: the pin is released
    two.unload()
    with pytest.raises(Unloaded):
        two.get()
    two.poll()  # polls load nothing while unloaded
    assert two.served_versions() == []
    assert two.load() == "3" and two.served_versions() == ["2", "3"]
    with pytest.raises(errors.ModelFileError, match="specific:9"):
        Repository(root, _load, log=lambda _: None, policy=VersionPolicy.parse("specific:9"))
    with live_server(create_app(models)) as url:  # requestable by /versions/N: what the policy serves
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}/v2/models/fmnist/versions/2/ready", timeout=10)
        assert err.value.code == 404
        with urllib.request.urlopen(f"{url}/v2/models/fmnist", timeout=10) as r:
            assert json.loads(r.read())["versions"] == ["1"]


def test_serve_with_a_version_policy(repo, fmnist):
    proc, port = start_server("--repository", repo, "--precision", "fp32", "--versions", "specific:1,2")
    rest = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        assert rest.get_model_metadata("fmnist")["versions"] == ["1", "2"] and _served(rest, httpclient, fmnist) == "2"
        assert rest.is_model_ready("fmnist", "1")
    finally:
        rest.close()
        stop_server(proc)


# ---------------------------------------------------------------- options


def test_bad_control_options_are_one_error_line(tmp_path):
    folder = tmp_path / "tokens"
    folder.mkdir()
    cases = [
        (["--admin-token-file", folder / "missing"], "cannot read it"),
        (["--admin-token-file", _token_file(folder, "", 0o600, "empty")], "it is empty"),
        (["--admin-token-file", _token_file(folder, TOKEN, 0o644, "open")], "chmod 600"),
        (["--admin-token-file", _token_file(folder, "short", 0o600, "short")], "at least 16"),
        (["--versions", "latest:0"], "not a version policy"),
        (["--versions", "newest"], "not a version policy"),
        (["--versions", "specific:2"], "--model serves one"),
    ]
    for args, words in cases:
        r = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "no-model"), "--port", "0", *map(str, args)])
        assert r.exit_code != 0 and words in r.output and "Traceback" not in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1 or r.output.startswith("Usage"), r.output


def test_listening_beyond_loopback_without_a_token_is_one_warning_line():
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("localhost", None) is None and exposure_warning("0.0.0.0", TOKEN) is None
    line = exposure_warning("0.0.0.0", None)
    assert line.startswith("warning: listening on 0.0.0.0") and "--admin-token-file" in line and "\n" not in line
