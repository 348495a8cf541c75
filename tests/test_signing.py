"""Signed model versions: keygen, publish --sign, verify, Classifier.load(trust=...) and serve --trust, with real keys."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge import errors
from fmnist_edge.artifact import sha256
from fmnist_edge.cli import cli
from fmnist_edge.convert.serving import publish
from fmnist_edge.runtime import Classifier

pytest.importorskip("model_signing")
pytestmark = pytest.mark.model

from fmnist_edge.signing import SIGNATURE, fingerprint, keygen  # noqa: E402


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two real key pairs made by keygen: ours (signs) and another party's."""
    folder = tmp_path_factory.mktemp("keys")
    return {"ours": keygen(folder / "ours"), "other": keygen(folder / "other")}


def _rewrite_consistently(version) -> None:
    """Change model.bin and write its new size and sha256 into manifest.json, as whoever can write the folder
    could; the signature stays as it was."""
    blob = bytearray((version / "model.bin").read_bytes())
    blob[200] ^= 0xFF
    (version / "model.bin").write_bytes(bytes(blob))
    manifest = json.loads((version / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        for f in entry["files"]:
            if f["path"] == "model.bin":
                f["bytes"], f["sha256"] = len(blob), sha256(version / "model.bin")
    (version / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _tampered_copy(repo, source: str, name: str):
    """A consistently rewritten copy of version `source`, renamed into place as `name` (as publish does)."""
    stage = repo / "fmnist" / f".stage-{name}"
    shutil.copytree(repo / "fmnist" / source, stage)
    _rewrite_consistently(stage)
    os.rename(stage, repo / "fmnist" / name)
    return repo / "fmnist" / name


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path):
    r = CliRunner().invoke(cli, ["keygen", str(tmp_path / "k")])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    pub = (tmp_path / "k.pub").read_bytes()
    assert pub.startswith(b"-----BEGIN PUBLIC KEY-----") and fingerprint(pub)[:16] in r.output
    before = (tmp_path / "k").read_bytes()
    r = CliRunner().invoke(cli, ["keygen", str(tmp_path / "k")])
    assert r.exit_code == 1 and "never overwrites" in r.output and len(r.output.strip().splitlines()) == 1
    assert (tmp_path / "k").read_bytes() == before


def test_a_signed_version_loads_with_trust_and_a_consistent_rewrite_is_refused_by_name_and_reason(converted, tmp_path, keys):
    repo = tmp_path / "repo"
    private, public = keys["ours"]
    v1 = publish(converted, repo, sign=private)
    assert (v1 / SIGNATURE).is_file() and not [p for p in (repo / "fmnist").iterdir() if p.name.startswith(".publish-")]
    x = np.zeros((2, 28, 28, 1), np.float32)
    signed = Classifier.load(v1, precision="fp32", trust=[public])
    np.testing.assert_allclose(signed.predict_proba(x), Classifier.load(v1, precision="fp32").predict_proba(x), atol=1e-6)
    assert Classifier.load(v1, precision="fp32", trust=[public.read_bytes()]).verified  # PEM bytes too

    v2 = _tampered_copy(repo, "1", "2")
    assert Classifier.load(v2, precision="fp32").verified  # the manifest alone cannot tell
    with pytest.raises(errors.SignatureError, match=r"fmnist/2: changed since signing: manifest\.json, model\.bin"):
        Classifier.load(v2, precision="fp32", trust=[public])
    with pytest.raises(errors.SignatureError, match=r"fmnist/1: signed by another key"):
        Classifier.load(v1, precision="fp32", trust=[keys["other"][1]])
    assert Classifier.load(v1, precision="fp32", trust=[keys["other"][1], public]).verified  # any trusted key


def test_a_missing_signature_is_refused_with_trust_and_accepted_without(converted, tmp_path, keys):
    v1 = publish(converted, tmp_path / "repo")
    assert not (v1 / SIGNATURE).exists()
    assert Classifier.load(v1, precision="fp32").verified
    with pytest.raises(errors.SignatureError, match=r"fmnist/1: signature missing"):
        Classifier.load(v1, precision="fp32", trust=[keys["ours"][1]])
    with pytest.raises(errors.ConfigError, match="cannot read the trusted key"):
        Classifier.load(v1, precision="fp32", trust=[tmp_path / "nope.pub"])


def test_verify_cli_says_ok_or_what_fails_in_one_line(converted, tmp_path, keys):
    repo = tmp_path / "repo"
    private, public = keys["ours"]
    r = CliRunner().invoke(cli, ["publish", str(converted), str(repo), "--sign", str(private)])
    assert r.exit_code == 0 and "(signed)" in r.output, r.output

    def verify(*args):
        r = CliRunner().invoke(cli, ["verify", *map(str, args)])
        assert len(r.output.strip().splitlines()) == 1, r.output
        return r.exit_code, r.output

    code, out = verify(repo / "fmnist" / "1", "--trust", public)
    assert code == 0 and "ok, signed by" in out and fingerprint(public.read_bytes())[:16] in out
    code, out = verify(repo, "--trust", keys["other"][1], "--trust", public)  # a repository: its newest version
    assert code == 0 and "fmnist/1: ok" in out
    code, out = verify(repo, "--trust", keys["other"][1])
    assert code == 1 and "signed by another key" in out
    _tampered_copy(repo, "1", "2")
    code, out = verify(repo, "--trust", public)
    assert code == 1 and "fmnist/2: changed since signing: manifest.json, model.bin" in out
    (repo / "fmnist" / "1" / "extra.txt").write_text("added later")
    code, out = verify(repo / "fmnist" / "1", "--trust", public)
    assert code == 1 and "not signed: extra.txt" in out
    bundle = json.loads((repo / "fmnist" / "2" / SIGNATURE).read_text())  # claim model.bin's new hash: the key never signed that
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for r in payload["predicate"]["resources"]:
        if r["name"] == "model.bin":
            r["digest"] = sha256(repo / "fmnist" / "2" / "model.bin")
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    (repo / "fmnist" / "2" / SIGNATURE).write_text(json.dumps(bundle))
    code, out = verify(repo / "fmnist" / "2", "--trust", public)
    assert code == 1 and "fmnist/2: signature invalid" in out
    publish(converted, repo)  # 3, unsigned
    code, out = verify(repo, "--trust", public)
    assert code == 1 and "fmnist/3: signature missing" in out
    code, out = verify(converted, "--trust", public)  # an artifact folder: its serving version, never signed
    assert code == 1 and "serving/fmnist/1: signature missing" in out
    r = CliRunner().invoke(cli, ["publish", str(converted), str(repo), "--sign", str(public)])
    assert r.exit_code == 1 and "cannot read the signing key" in r.output
    assert sorted(p.name for p in (repo / "fmnist").iterdir()) == ["1", "2", "3"]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_a_trusting_server_keeps_serving_through_a_tampered_version_and_swaps_to_a_signed_one(converted, tmp_path, keys):
    pytest.importorskip("starlette")
    from live import live_server, wait_for

    from fmnist_edge.serve import create_app
    from fmnist_edge.serve.repository import Repository
    from fmnist_edge.signing import trusted_keys

    repo = tmp_path / "repo"
    private, public = keys["ours"]
    publish(converted, repo, sign=private)
    trust = trusted_keys([public])
    said: list[str] = []
    models = Repository(repo, lambda p: Classifier.load(p, precision="fp32", trust=trust), log=said.append, poll_s=0.05)
    image = np.zeros((28, 28), np.uint8)
    with live_server(create_app(models, trust=tuple(k.fingerprint for k in trust))) as url:
        models.start()
        try:
            health = _get(f"{url}/health")
            assert health["model"]["version"] == "1" and health["trust"] == [trust[0].fingerprint]
            _tampered_copy(repo, "1", "2")
            wait_for(lambda: any("refused version 2" in s for s in said), "the refusal of version 2")
            refusal = next(s for s in said if "refused version 2" in s)
            assert "changed since signing: manifest.json, model.bin" in refusal and "still serving version 1" in refusal
            assert _get(f"{url}/health")["model"]["version"] == "1"
            assert models.get()[1].predict(image).label  # version 1 still answers
            v3 = publish(converted, repo, sign=private)
            assert v3.name == "3"
            wait_for(lambda: _get(f"{url}/health")["model"]["version"] == "3", "version 3 to serve")
            assert _get(f"{url}/health")["model"]["versions"] == ["3"]  # 2 never loaded, 1 released (latest:1)
        finally:
            models.close()
    with live_server(create_app(Classifier.load(repo / "fmnist" / "1", precision="fp32"))) as url:
        assert _get(f"{url}/health")["trust"] == []  # without --trust the kiosk says it trusts no key


def test_serve_trust_on_the_command_line(converted, tmp_path, keys):
    """The CLI's --trust: /health lists the key; a server whose only version is unsigned does not start (one line)."""
    from fmnist_edge.harness.load import start_server, stop_server

    repo = tmp_path / "repo"
    private, public = keys["ours"]
    publish(converted, repo, sign=private)
    proc, port = start_server("--repository", repo, "--precision", "fp32", "--trust", public)
    try:
        health = _get(f"http://127.0.0.1:{port}/health")
        assert health["trust"] == [fingerprint(public.read_bytes())] and health["model"]["version"] == "1"
    finally:
        stop_server(proc)
    unsigned = tmp_path / "unsigned"
    publish(converted, unsigned)
    r = CliRunner().invoke(cli, ["serve", "--model", str(unsigned / "fmnist" / "1"), "--precision", "fp32",
                                 "--port", "0", "--trust", str(public)])
    assert r.exit_code == 1 and "signature missing" in r.output and len(r.output.strip().splitlines()) == 1
