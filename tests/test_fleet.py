"""A fleet: two kiosks pull from one S3 store (moto's server on 127.0.0.1) under load from tritonclient's clients
while versions are published; a canary that fails is rolled back by itself."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from live import wait_for

pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytest.importorskip("tritonclient.http")

from fmnist_edge.convert.serving import publish  # noqa: E402
from fmnist_edge.data import load  # noqa: E402
from fmnist_edge.faults import FAIL_ENV  # noqa: E402
from fmnist_edge.harness.fleet import Load, rollouts, start_kiosks, wait_serving  # noqa: E402
from fmnist_edge.harness.load import stop_server  # noqa: E402
from fmnist_edge.runtime import to_model_input  # noqa: E402

URI = "s3://shop/fleet"  # the bucket the `s3` fixture (conftest.py) makes
TOKEN = "fleet-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def image():
    return to_model_input(load().x_test[:1])


def _get(port: int, path: str, token: str | None = None, body: bytes | None = None) -> bytes:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read()


def _health(port: int) -> dict:
    return json.loads(_get(port, "/health"))


def test_two_kiosks_take_five_rollouts_from_s3_under_load_without_a_failed_request(converted, s3, image, tmp_path):
    publish(converted, URI)
    kiosks = start_kiosks(URI, [tmp_path / "kiosk-a", tmp_path / "kiosk-b"], dict(os.environ), "--poll-seconds", "0.5")
    ports = [port for _, port in kiosks]
    try:
        wait_serving(ports, "1", 60)
        load = Load(ports, image, concurrency=2).start()
        wait_for(lambda: load.total() >= 20, "the load to start")
        rows = rollouts(lambda: publish(converted, URI), ports, first=2, count=5, timeout_s=90, log=lambda _: None)
        n = load.total()
        wait_for(lambda: load.total() >= n + 20, "requests after the last rollout")
        result = load.stop()
    finally:
        for proc, _ in kiosks:
            stop_server(proc)
    assert [r["version"] for r in rows] == [2, 3, 4, 5, 6]
    assert result["failed"] == 0, result["errors"]
    for port in ports:  # every kiosk answered with the versions in turn, and with the last one at the end
        assert "6" in result["versions"][port] and "1" in result["versions"][port]


def test_a_canary_that_fails_is_rolled_back_and_a_good_one_is_promoted(converted, s3, image, tmp_path):
    publish(converted, URI)
    env = {**os.environ, FAIL_ENV: "2"}  # version 2 passes its gates, then fails every request it serves
    token = tmp_path / "admin.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    (proc, port), = start_kiosks(URI, [tmp_path / "kiosk"], env, "--poll-seconds", "0.5", "--canary", "25",
                                 "--canary-requests", "40", "--admin-token-file", str(token))
    try:
        wait_serving([port], "1", 60)
        load = Load([port], image, concurrency=2).start()
        publish(converted, URI)
        wait_for(lambda: "2" in _health(port)["model"].get("refused", {}), "the canary to be rolled back", 60)
        assert "canary failed" in _health(port)["model"]["refused"]["2"]
        assert _health(port)["model"]["version"] == "1"
        # recorded where an operator looks: the repository index, the metrics (and the log)
        index = {row["version"]: row for row in json.loads(_get(port, "/v2/repository/index", TOKEN, b"{}"))}
        assert index["2"]["state"] == "UNAVAILABLE" and "canary failed" in index["2"]["reason"]
        metrics = _get(port, "/metrics", TOKEN).decode()
        assert any(line.startswith("fmnist_edge_model_refused{") and 'version="2"' in line and "canary failed" in line
                   for line in metrics.splitlines())
        publish(converted, URI)  # version 3 is healthy: promoted after its 40 requests
        wait_for(lambda: _health(port)["model"]["version"] == "3", "the healthy canary to be promoted", 60)
        result = load.stop()
    finally:
        stop_server(proc)
    answered = result["versions"][port]
    assert "2" not in answered and answered.get("1", 0) > 0 and answered.get("3", 0) > 0
    # the failures are the canary's share of the requests while version 2 was on trial: 40, and never version 1's
    assert 40 <= result["failed"] <= 41 and all("injected fault" in e for e in result["errors"])
