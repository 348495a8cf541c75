"""The server against clients that misbehave: oversized uploads from every common client, stalled headers and
bodies, more connections and more work than it takes. Each gets a clear status; nobody else waits on them."""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from live import live_server
from PIL import Image

pytest.importorskip("starlette")
from fmnist_edge.serve import create_app  # noqa: E402

pytestmark = pytest.mark.faults
BIG = {11: b"\0" * (11 * 2**20), 30: b"\0" * (30 * 2**20)}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _post(url, path, body: bytes, headers=None, timeout=30):
    req = urllib.request.Request(url + path, data=body, headers=headers or {"Content-Type": "image/jpeg"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _get(url, path) -> int:
    try:
        with urllib.request.urlopen(url + path, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _jpeg(fmnist, i=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(255 - fmnist.x_test[i]).resize((320, 320)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _read_all(s: socket.socket) -> bytes:
    answer = b""
    while chunk := s.recv(65536):  # until the server closes the connection
        answer += chunk
    return answer


# ------------------------------------------------------------------------ the 413, whoever the client is

@pytest.mark.parametrize("path", ["/predict", "/v2/models/fmnist/infer"])
@pytest.mark.parametrize("mb", [11, 30])
def test_urllib_sees_the_413_of_an_oversized_upload(url, path, mb):
    """urllib writes the whole body before it reads: the server used to answer and close with the body unread,
    and the client saw a connection reset instead of the 413."""
    status, raw, _ = _post(url, path, BIG[mb])
    assert status == 413 and "over the 10.0 MiB limit" in json.loads(raw)["error"]


@pytest.mark.parametrize("mb", [11, 30])
def test_requests_sees_the_413_of_an_oversized_upload(url, mb):
    requests = pytest.importorskip("requests")
    r = requests.post(url + "/predict", data=BIG[mb], headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert r.status_code == 413 and "over the 10.0 MiB limit" in r.json()["error"]
    r = requests.post(url + "/predict", files={"image": ("big.jpg", BIG[mb], "image/jpeg")}, timeout=30)
    assert r.status_code == 413


@pytest.mark.parametrize("expect", [True, False])
def test_curl_sees_the_413_of_an_oversized_upload(url, tmp_path, expect):
    """curl announces a large body with `Expect: 100-continue` and waits for the go-ahead; without it, it sends."""
    if subprocess.run(["which", "curl"], capture_output=True).returncode:
        pytest.skip("no curl on PATH")
    big = tmp_path / "big.jpg"
    big.write_bytes(BIG[30])
    args = ["curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}", "-H", "Content-Type: image/jpeg",
            "--data-binary", f"@{big}", url + "/predict"]
    if not expect:
        args[1:1] = ["-H", "Expect:"]
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    body, status = out.stdout.rsplit("\n", 1)
    assert out.returncode == 0 and status == "413" and "over the 10.0 MiB limit" in json.loads(body)["error"], out.stderr
    assert time.perf_counter() - t0 < 15


# ------------------------------------------------------------------------ stalled and slow clients

def test_a_stalled_upload_is_answered_408_and_closed(clf):
    """A request that announces a body and never sends it used to hold its connection for ever."""
    with live_server(create_app(clf, body_timeout_s=1.0)) as base:
        with socket.create_connection(("127.0.0.1", _port(base)), timeout=20) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: kiosk\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
                      + b"\xff\xd8\xff" * 10)
            answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer


def test_slow_and_silent_connections_are_dropped_and_stall_nobody(clf, fmnist):
    """Slowloris: connections that send nothing, or their headers a few bytes at a time, are answered 408 and
    closed when the header deadline passes; meanwhile good requests are served as usual."""
    with live_server(create_app(clf), header_timeout_s=1.0) as base:
        port = _port(base)
        silent = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(20)]
        slow = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(20)]
        for s in slow:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: kiosk\r\n")
        t0 = time.perf_counter()
        for _ in range(5):  # a trickle of header bytes, each well inside any per-read timeout
            for s in slow:
                s.sendall(b"X-Pad: a\r\n")
            status, raw, _ = _post(base, "/predict", _jpeg(fmnist))
            assert status == 200 and json.loads(raw)["label"]
            time.sleep(0.3)
        answers = [_read_all(s) for s in silent + slow]
        waited = time.perf_counter() - t0
        for s in silent + slow:
            s.close()
    assert all(a.startswith(b"HTTP/1.1 408") and b"headers did not arrive within 1 s" in a for a in answers), answers[:2]
    assert waited < 5


def test_a_keep_alive_connection_gets_the_header_deadline_again_after_each_response(clf):
    with live_server(create_app(clf), header_timeout_s=1.0) as base:
        with socket.create_connection(("127.0.0.1", _port(base)), timeout=20) as s:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: kiosk\r\n\r\n")
            first = s.recv(65536)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # and then nothing more
            rest = _read_all(s)
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 408")


# ------------------------------------------------------------------------ more than it can take

def test_connections_past_the_cap_get_503_and_the_server_recovers(clf):
    with live_server(create_app(clf), max_connections=8, header_timeout_s=30) as base:
        port = _port(base)
        held = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(8)]
        status = _poll(lambda: _get(base, "/v2/health/live"), 503)  # once the server has taken the 8 connections
        for s in held:
            s.close()
        after = _poll(lambda: _get(base, "/v2/health/live"), 200)  # once it has seen them close
    assert status == 503 and after == 200


def test_work_past_the_queue_cap_gets_503_with_retry_after_and_nothing_else_fails(clf):
    """40 clients send a 4 MP noisy PNG each (tens of ms to decode) at once to a server that queues 2."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (1600, 2400), dtype=np.uint8)).save(buf, "PNG")
    body = buf.getvalue()
    with live_server(create_app(clf, max_queue=2)) as base:
        with cf.ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(lambda _: _post(base, "/predict", body, {"Content-Type": "image/png"}, 60), range(40)))
        status = _get(base, "/v2/health/ready")
    statuses = [a[0] for a in answers]
    assert set(statuses) == {200, 503}, statuses
    busy = [a for a in answers if a[0] == 503]
    assert all(a[2].get("retry-after") == "1" and "the server is busy" in json.loads(a[1])["error"] for a in busy)
    assert status == 200


def test_a_short_soak_of_good_and_hostile_requests_gets_every_expected_answer(converted):
    """The soak benchmark's mix, 1,500 requests with a new version published midway: each kind of request gets
    its own status (200, 400, 404, 413, 415, 422), nothing else, and the server keeps serving the new version."""
    from fmnist_edge.harness.serve_soak import soak

    r = soak(converted, requests=1500, clients=8, reloads=1, log=lambda *_: None)
    assert r["unexpected"] == 0, r["unexpected_examples"]
    assert r["requests"] == 1500 and r["versions_published"] == 1 and r["serving_at_end"] == "2"
    assert 0 < r["last_version_served_after_s"] < 60
    statuses = {s for kinds in r["by_kind"].values() for s in kinds}
    assert statuses == {"200", "400", "404", "413", "415", "422"}, r["by_kind"]


def _poll(call, want, timeout_s: float = 30.0):
    """`call()` again until it returns `want` or `timeout_s` passes (a deadline, never a fixed sleep); its last answer."""
    deadline = time.monotonic() + timeout_s
    while (got := call()) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got

