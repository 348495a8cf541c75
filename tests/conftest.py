"""Shared fixtures: the real data set in small slices and one tiny model trained once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Fixtures that train or convert a model: a test that uses one (directly or through another) is marked `model`,
# and `make check` (the fast loop) leaves it out.
MODEL_FIXTURES = {"tiny_artifacts", "converted"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def fmnist():
    """The real Fashion-MNIST (from the Debian package or another standard place)."""
    from fmnist_edge import data

    return data.load(allow_download=False)


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> Path:
    """An artifact folder from `train` on the tiny arch: 3,000 training images, 1 epoch, 500 test images.
    Session-scoped and shared: tests must not modify it (copy it first)."""
    from fmnist_edge.train.config import make_config
    from fmnist_edge.train.trainer import train

    out = tmp_path_factory.mktemp("tiny") / "artifacts"
    train(make_config("tiny", limit=3000, test_limit=500, epochs=2, out=str(out)), log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def converted(tiny_artifacts, tmp_path_factory) -> Path:
    """A copy of `tiny_artifacts` converted to OpenVINO IR (fp32, bf16, fp16, int8) by `fmnist_edge.convert`.
    Session-scoped and shared by the runtime, predict and kiosk tests: tests must not modify it (copy it first)."""
    from fmnist_edge.convert import convert

    out = tmp_path_factory.mktemp("runtime") / "artifacts"
    shutil.copytree(tiny_artifacts, out)
    # max_drop: the tiny model's int8 check is the converter's business; here it only has to exist
    convert(out, formats=("openvino",), precisions=("fp32", "bf16", "fp16", "int8"), calib_size=100, check=200,
            max_drop=0.05, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def clf(converted):
    """The fp32 `Classifier` on `converted`, one per test module."""
    from fmnist_edge.runtime import Classifier

    return Classifier.load(converted)


@pytest.fixture(scope="module")
def url(clf):
    """The kiosk app around `clf` on a live uvicorn (as `fmnist-edge serve` runs it): its base URL."""
    pytest.importorskip("starlette")
    from live import ADMIN_TOKEN, live_server

    from fmnist_edge.serve import create_app

    with live_server(create_app(clf, admin_token=ADMIN_TOKEN)) as base:
        yield base


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on 127.0.0.1 for one test, the AWS variables pointing at it, bucket `shop` made."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from live import S3Server

    from fmnist_edge.store import _filesystem

    server = S3Server().start()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    _filesystem("s3://shop")[0].mkdir("shop")
    yield server
    server.stop()
