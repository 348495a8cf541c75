"""Shared fixtures: the real data set in small slices and one tiny model trained once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
