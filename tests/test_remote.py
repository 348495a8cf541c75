"""Remote model stores: publish to a real S3 server (moto's, over the wire on 127.0.0.1) and serve from it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from click.testing import CliRunner
from live import wait_for

pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytest.importorskip("starlette")

from fmnist_edge.atomic import owner_tag  # noqa: E402
from fmnist_edge.cli import cli  # noqa: E402
from fmnist_edge.harness.load import serving_version, start_server, stop_server  # noqa: E402
from fmnist_edge.runtime import Classifier  # noqa: E402
from fmnist_edge.serve.remote import RemoteRepository  # noqa: E402
from fmnist_edge.store import READY, STAGE, _filesystem  # noqa: E402


def _publish(artifacts, uri) -> str:
    result = CliRunner().invoke(cli, ["publish", str(artifacts), uri])
    assert result.exit_code == 0, result.output
    return result.output


def _version(port: int) -> str | None:
    try:
        return serving_version(port)
    except ConnectionRefusedError:  # the port is bound before the server listens on it
        return None


def _wait_version(port: int, version: str, deadline_s: float = 30) -> None:
    wait_for(lambda: _version(port) == version, f"version {version} to serve", deadline_s, 0.1)


def test_publish_to_s3_serve_from_it_and_from_the_cache_when_the_store_is_down(converted, s3, tmp_path):
    uri, cache = "s3://shop/models", tmp_path / "cache"
    assert "s3://shop/models/fmnist/1" in _publish(converted, uri)
    fs, _ = _filesystem(uri)
    assert fs.exists(f"shop/models/fmnist/1/{READY}") and not [n for n in fs.ls("shop/models/fmnist") if STAGE in n]
    kiosk = ["--repository", uri, "--cache", str(cache), "--poll-seconds", "0.5"]
    proc, port = start_server(*kiosk, env=dict(os.environ))
    try:
        _wait_version(port, "1", 10)
        _publish(converted, uri)
        _wait_version(port, "2")  # the next publish is picked up by a poll
        s3.stop()  # the store goes down: the kiosk keeps serving, every request of 2.5 s answered by version 2
        until = time.monotonic() + 2.5
        while time.monotonic() < until:
            assert serving_version(port) == "2"
            time.sleep(0.1)
    finally:
        stop_server(proc)
    assert sorted(p.name for p in (cache / "fmnist").iterdir()) == ["1", "2"]
    started = time.monotonic()
    proc, port = start_server(*kiosk, env=dict(os.environ))  # restarted with the store down: serves its cache
    try:
        _wait_version(port, "2", 10)
        print(f"restart from the cache with the store down: {time.monotonic() - started:.1f} s")
    finally:
        stop_server(proc)


def test_a_partial_upload_is_never_loaded_and_the_next_publish_cleans_it(converted, s3, tmp_path):
    uri, base = "s3://shop/models", "shop/models/fmnist"
    _publish(converted, uri)
    fs, _ = _filesystem(uri)
    dead = subprocess.Popen(["true"])
    dead.wait()
    staging = f"{base}/{STAGE}{owner_tag().rsplit('-', 1)[0]}-{dead.pid}-abcd1234"  # a publish killed mid-upload
    fs.pipe_file(f"{staging}/model.xml", b"<net/>")
    fs.pipe_file(f"{base}/2/model.xml", b"<net/>")  # killed while copying: no READY, so no version
    lines = []
    repo = RemoteRepository(uri, lambda p: Classifier.load(p, precision="fp32"), cache=tmp_path / "cache",
                            log=lines.append, poll_s=0.1)
    try:
        repo.poll()
        assert repo.current == "1" and sorted(p.name for p in repo.base.iterdir()) == ["1"]
        assert "s3://shop/models/fmnist/3" in _publish(converted, uri)  # succeeds; the staging prefix is gone
        assert not [n for n in fs.ls(base) if STAGE in n]
        repo.poll()
        assert repo.current == "3" and not repo.refused()
        s3.stop()
        repo.poll()  # a failed poll: one line, still serving, backing off
        assert repo.current == "3" and repo.failures == 1 and 0.1 <= repo.delay() <= 0.2
        assert sum("cannot read s3://shop/models" in line for line in lines) == 1
    finally:
        repo.close()


def test_a_file_uri_store_works_the_same_way(converted, tmp_path):
    uri = f"file://{tmp_path / 'store'}"
    assert f"{uri}/fmnist/1" in _publish(converted, uri)
    assert sorted(p.name for p in (tmp_path / "store" / "fmnist" / "1").iterdir()) == [
        READY, "golden.json", "manifest.json", "model.bin", "model.xml"]
    repo = RemoteRepository(uri, lambda p: Classifier.load(p, precision="fp32"), cache=tmp_path / "cache", log=lambda _: None)
    try:
        assert repo.current == "1" and (tmp_path / "cache" / "fmnist" / "1" / "model.bin").is_file()
    finally:
        repo.close()


@pytest.mark.parametrize("point", ["store-staged", "store-copied"])
def test_a_publish_killed_mid_upload_is_never_loaded_and_the_next_one_succeeds(converted, s3, tmp_path, point):
    import sys

    from fmnist_edge.faults import ENV

    uri, base = "s3://shop/models", "shop/models/fmnist"
    _publish(converted, uri)
    killed = subprocess.run([sys.executable, "-m", "fmnist_edge.cli", "publish", str(converted), uri],
                            env={**os.environ, ENV: point}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stdout + killed.stderr  # SIGKILL at the point: no cleanup ran
    fs, _ = _filesystem(uri)
    left = [n.rsplit("/", 1)[-1] for n in fs.ls(base)]
    assert any(n.startswith(STAGE) for n in left)  # what the killed publish left behind
    repo = RemoteRepository(uri, lambda p: Classifier.load(p, precision="fp32"), cache=tmp_path / "cache",
                            log=lambda _: None, poll_s=0.1)
    try:
        repo.poll()
        assert repo.current == "1" and not repo.refused()  # the partial version is invisible, not even refused
        published = _publish(converted, uri)
        expected = "3" if point == "store-copied" else "2"  # a claimed number is never reused
        assert f"s3://shop/models/fmnist/{expected}" in published
        assert not [n for n in fs.ls(base) if STAGE in n]  # the dead publisher's staging prefix is gone
        repo.poll()
        assert repo.current == expected and not repo.refused()
    finally:
        repo.close()


def test_a_first_start_whose_newest_version_is_refused_fetches_the_one_before(converted, s3, tmp_path):
    uri, base = "s3://shop/models", "shop/models/fmnist"
    _publish(converted, uri)
    _publish(converted, uri)
    fs, _ = _filesystem(uri)
    weights = bytearray(fs.cat_file(f"{base}/2/model.bin"))
    weights[-64:] = bytes(64)  # version 2's weights changed after publishing: its hashes no longer hold
    fs.pipe_file(f"{base}/2/model.bin", bytes(weights))
    lines = []
    repo = RemoteRepository(uri, lambda p: Classifier.load(p, precision="fp32"), cache=tmp_path / "cache",
                            log=lines.append, poll_s=0.1)
    try:
        assert repo.current == "1" and "2" in repo.refused()
        assert any("trying version 1" in line for line in lines)
        repo.poll()  # the refused version is not downloaded or tried again
        assert repo.current == "1" and sorted(p.name for p in repo.base.iterdir() if p.name.isdigit()) == ["1", "2"]
    finally:
        repo.close()
