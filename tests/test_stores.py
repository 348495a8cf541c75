"""Remote stores beyond S3: https:// through nginx with a private CA, gs:// through a GCS API emulator, and what
racing or killed publishes leave (claims on moto's S3 server, stale prefixes in a file:// store)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from live import free_port, private_ca, wait_for, wait_listening

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

from fmnist_edge import store  # noqa: E402
from fmnist_edge.cli import cli  # noqa: E402
from fmnist_edge.errors import StoreError  # noqa: E402
from fmnist_edge.store import CLAIMS, INDEX, READY, Mirror, _claim, _filesystem  # noqa: E402

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def _load(path):
    from fmnist_edge.runtime import Classifier

    return Classifier.load(path, precision="fp32")


def _publish(artifacts, uri, *extra) -> str:
    result = CliRunner().invoke(cli, ["publish", str(artifacts), uri, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _index(folder: Path) -> list[int]:
    return json.loads((folder / "fmnist" / INDEX).read_text())["versions"]


# --- https:// through nginx -------------------------------------------------------------------------------------

class Nginx:
    """Debian's nginx serving the folder `root` over HTTPS on 127.0.0.1, its config, pid, logs and temp files in
    `home`; one process (master_process off) so that it reads whatever the test's user can read."""

    def __init__(self, root: Path, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = private_ca(home)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.home, self.conf, self.proc = home, home / "nginx.conf", None
        temps = "\n".join(f"  {kind}_temp_path {home / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf.write_text(f"""master_process off;
pid {home / 'nginx.pid'};
error_log {home / 'error.log'} warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
{temps}
  types {{ application/json json; application/xml xml; }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root};
  }}
}}
""")

    def start(self) -> Nginx:
        self.proc = subprocess.Popen([NGINX, "-c", str(self.conf), "-p", str(self.home), "-e", str(self.home / "error.log"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(self.port, "nginx", 20)
        except TimeoutError:
            self.stop()
            log = self.home / "error.log"
            raise AssertionError(f"nginx did not start: {log.read_text() if log.exists() else 'no error.log'}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def nginx(tmp_path, monkeypatch):
    """nginx serving tmp_path/www over HTTPS; SSL_CERT_FILE names its private CA, as a kiosk's unit would."""
    if NGINX is None:
        pytest.skip("nginx is not installed (make test installs Debian's package)")
    (tmp_path / "www").mkdir()
    server = Nginx(tmp_path / "www", tmp_path / "nginx").start()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))
    yield server
    server.stop()


def _version(port: int) -> str | None:
    from fmnist_edge.harness.load import serving_version

    try:
        return serving_version(port)
    except ConnectionRefusedError:  # the port is bound before the server listens on it
        return None


def test_a_kiosk_serves_an_https_repository_through_nginx_and_keeps_serving_when_it_stops(converted, nginx, tmp_path):
    pytest.importorskip("starlette")
    from fmnist_edge.harness.load import start_server, stop_server
    from fmnist_edge.serve.remote import RemoteRepository

    folder = tmp_path / "www" / "shop"
    _publish(converted, f"file://{folder}")  # what nginx serves: the folder publish wrote
    assert _index(folder) == [1]
    uri, lines = f"{nginx.url}/shop", []
    repo = RemoteRepository(uri, _load, cache=tmp_path / "cache", log=lines.append, poll_s=0.1)
    proc, port = start_server("--repository", uri, "--cache", str(tmp_path / "kiosk-cache"), "--poll-seconds", "0.5", env=dict(os.environ))
    try:
        assert repo.current == "1", lines
        wait_for(lambda: _version(port) == "1", "the kiosk to serve version 1", 30, 0.1)
        _publish(converted, f"file://{folder}")
        assert _index(folder) == [1, 2]
        repo.poll()
        assert repo.current == "2" and not repo.refused(), lines
        wait_for(lambda: _version(port) == "2", "the kiosk to pick up version 2", 30, 0.1)
        nginx.stop()  # the server goes away: both keep serving version 2
        repo.poll()
        assert repo.current == "2" and repo.failures == 1
        assert sum(f"cannot read {uri}" in line for line in lines) == 1, lines
        until = time.monotonic() + 2.5  # the kiosk process polls every 0.5 s: 2.5 s spans failed polls
        while time.monotonic() < until:
            assert _version(port) == "2"
            time.sleep(0.1)
    finally:
        stop_server(proc)
        repo.close()


def test_an_https_store_without_its_ca_or_without_an_index_is_one_line(nginx, tmp_path, monkeypatch):
    (tmp_path / "www" / "empty").mkdir()
    with pytest.raises(StoreError, match=r"fmnist/index\.json is missing: publish writes it"):
        Mirror(f"{nginx.url}/empty", tmp_path / "cache").sync()
    monkeypatch.delenv("SSL_CERT_FILE")  # the system's CAs only: nginx's certificate is not trusted
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(StoreError, match=r"cannot read https://127\.0\.0\.1:\d+/empty: .*[Cc]ertificate") as err:
        Mirror(f"{nginx.url}/empty", tmp_path / "cache").sync()
    assert "\n" not in str(err.value)


def test_publish_to_https_is_one_error_line(converted):
    result = CliRunner().invoke(cli, ["publish", str(converted), "https://cdn.example.com/shop"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: https://cdn.example.com/shop is read-only: publish to the folder or bucket the server serves"]


# --- killed and racing publishes ---------------------------------------------------------------------------------

def test_a_publish_sweeps_stale_unready_versions_keeps_fresh_ones_and_never_reuses_a_claim(converted, tmp_path):
    folder, uri = tmp_path / "store", f"file://{tmp_path / 'store'}"
    _publish(converted, uri)
    base = folder / "fmnist"
    old = time.time() - store.STALE_S - 60
    killed = base / "2"  # killed between its claim and READY, long ago
    killed.mkdir()
    (killed / "model.xml").write_text("<net/>")
    (base / CLAIMS / "2").write_text("someone\n")
    os.utime(killed / "model.xml", (old, old))
    os.utime(killed, (old, old))
    staging = base / f"{store.STAGE}otherhost-1-abcd1234"  # another host's upload, killed long ago
    staging.mkdir()
    (staging / "model.bin").write_bytes(b"\0")
    os.utime(staging / "model.bin", (old, old))
    os.utime(staging, (old, old))
    running = base / "3"  # a publish copying right now: no READY yet, but fresh
    running.mkdir()
    (running / "model.xml").write_text("<net/>")
    (base / CLAIMS / "3").write_text("someone else\n")

    assert f"{uri}/fmnist/4" in _publish(converted, uri)
    assert not killed.exists() and not staging.exists() and (running / "model.xml").exists()
    assert _index(folder) == [1, 4]
    assert sorted(p.name for p in (base / "4").iterdir()) == [READY, "golden.json", "manifest.json", "model.bin", "model.xml"]
    assert _publish(converted, uri) and _index(folder) == [1, 4, 5]  # 2's claim stays: numbers are never reused


@pytest.mark.parametrize("scheme", ["s3", "file"])
def test_racing_claims_get_distinct_numbers(scheme, request, tmp_path):
    """Eight publishers released at once, each with its own client, all list the same numbers and race for them."""
    uri = "s3://shop/models" if scheme == "s3" else f"file://{tmp_path / 'store'}"
    if scheme == "s3":
        request.getfixturevalue("s3")
    barrier, won, errors = threading.Barrier(8), {}, []

    def publisher(i: int) -> None:
        try:
            fs, root = _filesystem(uri)
            token = f"publisher-{i}-{uuid.uuid4().hex}".encode()
            barrier.wait()
            won[_claim(fs, f"{root}/fmnist", token)] = token
        except Exception as exc:  # noqa: BLE001 - reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and sorted(won) == list(range(1, 9))
    fs, root = _filesystem(uri)
    assert all(fs.cat_file(f"{root}/fmnist/{CLAIMS}/{n}") == token for n, token in won.items())


def test_two_real_publishes_racing_to_s3_make_two_whole_versions(converted, s3, tmp_path):
    """Two `fmnist-edge publish` processes started together (fp32 and fp16: different files), each its own client."""
    from fmnist_edge.artifact import verify_file

    exe = Path(sys.executable).parent / "fmnist-edge"
    uri = "s3://shop/models"
    started = time.monotonic()
    procs = {p: subprocess.Popen([str(exe), "publish", str(converted), uri, "--precision", p], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for p in ("fp32", "fp16")}
    outputs = {p: proc.communicate(timeout=180)[0] for p, proc in procs.items()}
    print(f"two concurrent publishes to S3: {time.monotonic() - started:.1f} s")
    assert [proc.returncode for proc in procs.values()] == [0, 0], outputs
    numbers = {p: int(out.strip().rsplit("/fmnist/", 1)[-1]) for p, out in outputs.items()}
    assert sorted(numbers.values()) == [1, 2], outputs
    fs, _ = _filesystem(uri)
    assert json.loads(fs.cat_file(f"shop/models/fmnist/{INDEX}"))["versions"] == [1, 2]
    for precision, number in numbers.items():  # each version is one publisher's files, whole: every hash verifies
        local = tmp_path / str(number)
        local.mkdir()
        for name in fs.cat_file(f"shop/models/fmnist/{number}/{READY}").decode().split():
            fs.get_file(f"shop/models/fmnist/{number}/{name}", str(local / name))
        manifest = json.loads((local / "manifest.json").read_text())
        assert precision in {a["precision"] for a in manifest["artifacts"]}
        for artifact in manifest["artifacts"]:
            for entry in artifact["files"]:
                verify_file(local, entry)


# --- gs:// through a GCS API emulator ---------------------------------------------------------------------------

@pytest.fixture
def gcs(monkeypatch, tmp_path):
    """gcp-storage-emulator's server (the GCS JSON API, over the wire) on 127.0.0.1, its state in memory."""
    pytest.importorskip("gcsfs")
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    if not exe.exists():
        pytest.skip("gcp-storage-emulator is not installed (the [test] extra has it)")
    port = free_port()
    proc = subprocess.Popen([str(exe), "start", "-H", "127.0.0.1", "--port", str(port), "-M", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, "the GCS emulator")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        fs, _ = _filesystem("gs://shop")
        fs.mkdir("shop")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_publish_to_gcs_and_serve_from_it(converted, gcs, tmp_path):
    from fmnist_edge.serve.remote import RemoteRepository

    uri = "gs://shop/models"
    assert "gs://shop/models/fmnist/1" in _publish(converted, uri)
    fs, _ = _filesystem(uri)
    assert json.loads(fs.cat_file(f"shop/models/fmnist/{INDEX}"))["versions"] == [1]
    assert not [n for n in fs.ls("shop/models/fmnist", detail=False) if store.STAGE in n]
    lines = []
    repo = RemoteRepository(uri, _load, cache=tmp_path / "cache", log=lines.append, poll_s=0.1)
    try:
        assert repo.current == "1", lines
        _publish(converted, uri)
        repo.poll()
        assert repo.current == "2" and not repo.refused(), lines
    finally:
        repo.close()
