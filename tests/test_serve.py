"""The kiosk API through Starlette's TestClient on the converted tiny model: every input kind, bad uploads, concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner
from images import encode, photo
from PIL import Image

from fmnist_edge.cli import cli
from fmnist_edge.runtime import Classifier

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from fmnist_edge.serve import create_app  # noqa: E402
from fmnist_edge.serve.app import listen  # noqa: E402

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def client(clf):
    with TestClient(create_app(clf, max_upload_bytes=LIMIT)) as c:
        yield c


@pytest.fixture(scope="module")
def garments(fmnist):
    """Five real test images in dataset form and as JPEG product photos."""
    return fmnist.x_test[:5], [encode(np.stack([photo(x)] * 3, axis=-1), "JPEG", quality=95) for x in fmnist.x_test[:5]]


def _expected(clf, image) -> str:
    return clf.predict(image).label


def test_predict_answers_every_input_kind_like_the_runtime(client, clf, garments):
    x, jpegs = garments
    png = encode(x[0], "PNG")
    want_png, want_jpeg = _expected(clf, png), _expected(clf, jpegs[1])
    cases = [
        ({"files": {"image": ("shirt.png", png, "image/png")}}, want_png),  # multipart, the page's file drop
        ({"files": {"photo": ("p.jpg", jpegs[1], "image/jpeg")}}, want_jpeg),  # any file field name
        ({"files": {"image": ("p", jpegs[1], "application/octet-stream")}}, want_jpeg),
        ({"content": png, "headers": {"content-type": "image/png"}}, want_png),  # raw body, the page's camera
        ({"content": jpegs[1], "headers": {"content-type": "image/jpeg"}}, want_jpeg),
        ({"content": encode(x[0], "BMP"), "headers": {"content-type": "application/octet-stream"}}, want_png),
        ({"content": encode(x[0], "WEBP", lossless=True)}, want_png),  # no content type: sniffed
    ]
    for kwargs, want in cases:
        r = client.post("/predict", **kwargs)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] == want
        assert len(body["top_k"]) == 3 and body["top_k"][0]["label"] == body["label"]
        assert body["top_k"][0]["confidence"] == pytest.approx(body["confidence"])
        assert sum(t["confidence"] for t in body["top_k"]) <= 1.0 + 1e-5
        assert 0 < body["inference_ms"] <= body["total_ms"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_bad_uploads_get_4xx_json_and_the_server_keeps_serving(client, garments):
    x, jpegs = garments
    png = encode(x[0], "PNG")
    bad = {
        "empty body": ({"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty"),
        "empty file": ({"files": {"image": ("e.png", b"", "image/png")}}, 400, "empty"),
        "truncated PNG": ({"content": png[: len(png) // 2], "headers": {"content-type": "image/png"}}, 422, "truncated"),
        "text as image": ({"content": b"hello, kiosk", "headers": {"content-type": "image/jpeg"}}, 422, "not"),
        "text content type": ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "not an image"),
        "JSON body": ({"json": {"image": "x"}}, 415, "not an image"),
        "text file upload": ({"files": {"image": ("notes.txt", b"hi", "text/plain")}}, 415, "not an image"),
        "form without file": ({"files": {"image": (None, "a string")}}, 400, "no file"),
        "too large": ({"content": b"\xff" * (LIMIT + 1), "headers": {"content-type": "image/jpeg"}}, 413, "limit"),
        "too large multipart": ({"files": {"image": ("big.jpg", b"\xff" * (LIMIT + 1), "image/jpeg")}}, 413, "limit"),
        "blank photo": ({"content": encode(np.full((120, 90), 240, np.uint8), "PNG")}, 422, "flat"),
        "malformed multipart": ({"content": b"--xyz\r\nnonsense",
                                 "headers": {"content-type": "multipart/form-data; boundary=xyz"}}, 400, ""),
    }
    before = client.get("/health").json()["rejected"]
    for name, (kwargs, status, words) in bad.items():
        r = client.post("/predict", **kwargs)
        assert r.status_code == status, (name, r.status_code, r.text)
        message = r.json()["error"]
        assert words in message.lower() and "\n" not in message, (name, message)
    assert client.get("/health").json()["rejected"] == before + len(bad)
    assert client.post("/predict", files={"image": ("ok.jpg", jpegs[0], "image/jpeg")}).status_code == 200
    assert client.get("/predict").status_code == 405
    assert client.get("/static/../app.py").status_code == 404  # no paths outside the page's own files


def test_concurrent_requests_share_one_classifier_and_agree(client, clf, garments):
    _, jpegs = garments
    want = [_expected(clf, j) for j in jpegs]
    jobs = [i % len(jpegs) for i in range(60)]

    def post(i):
        r = client.post("/predict", content=jpegs[i], headers={"content-type": "image/jpeg"})
        return r.status_code, r.json().get("label")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, jobs))
    assert answers == [(200, want[i]) for i in jobs]


def test_health_and_page(client, clf, converted):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["uptime_s"] >= 0
    assert h["model"]["precision"] == "fp32" and h["model"]["device"] == "CPU"
    assert h["model"]["path"] == str(converted) and len(h["model"]["class_names"]) == 10
    assert h["packages"]["openvino"] and h["max_upload_bytes"] == LIMIT
    assert h["model"]["versions"] == [h["model"]["version"]] and "versions" not in h  # one meaning: the served ones
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/kiosk.js", "/static/kiosk.css"):
        assert asset in page.text and client.get(asset).status_code == 200
    assert "http" not in client.get("/static/kiosk.js").text.replace("http.", "")  # nothing fetched from the internet


def test_serve_refuses_a_taken_port_and_a_missing_model_in_one_line(converted, tmp_path):
    holder = listen("127.0.0.1", 0)
    try:
        port = holder.getsockname()[1]
        r = CliRunner().invoke(cli, ["serve", "--model", str(converted), "--port", str(port)])
        assert r.exit_code != 0 and f"cannot listen on 127.0.0.1:{port}" in r.output
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    finally:
        holder.close()
    r = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "nothing")])
    assert r.exit_code != 0 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["serve", "--model", str(converted), "--host", "no-such-host.invalid"])
    assert r.exit_code != 0 and "--host" in r.output
    r = CliRunner().invoke(cli, ["serve", "--model", str(converted), "--cache", str(tmp_path / "cache")])
    assert r.exit_code != 0 and "--cache keeps the versions of a remote --repository" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "cache").exists()


def test_the_embedding_example_runs(converted, fmnist, tmp_path):
    """examples/embed.py, the few lines a kiosk app of one's own writes, on a real picture and a bad one."""
    import runpy
    from pathlib import Path

    good, bad = tmp_path / "coat.png", tmp_path / "broken.jpg"
    Image.fromarray(photo(fmnist.x_test[0])).save(good)
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    example = Path(__file__).parents[1] / "examples" / "embed.py"
    out = runpy.run_path(str(example), run_name="example")["main"](str(converted), [str(good), str(bad)])
    assert out[0][1] is not None and out[1][1] is None and "broken.jpg" in out[1][2]


def test_connections_the_server_accepts_have_nagle_off():
    """Every response after the first on a keep-alive connection waited ~40 ms for the client's delayed ACK
    (Nagle's algorithm held the body behind the headers) because asyncio turns Nagle off only on sockets that
    name IPPROTO_TCP, and `listen` made one that did not. The kiosk page and every HTTP client keep
    connections alive, so this is checked on a connection accepted the way uvicorn accepts it."""
    import asyncio
    import socket

    async def accept_one() -> int:
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listener = listen("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accept_one()) != 0


def test_health_reports_the_precision_auto_chose(converted):
    auto = Classifier.load(converted, precision="auto")
    with TestClient(create_app(auto)) as c:
        h = c.get("/health").json()
    assert h["model"]["precision"] == auto.precision in auto.choice["batch1_us"]
    assert h["model"]["precision_choice"]["requested"] == "auto" and h["frame_short_side"] == 240
