"""Keeps TensorFlow's, absl's and NNCF's console chatter out of the command's output."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout and stderr, Python- and file-descriptor-level (C++ logs write to fd 2 directly)."""
    for name in ("absl", "tensorflow", "tf2onnx", "nncf"):
        logging.getLogger(name).setLevel(logging.ERROR)
    saved = []
    sink = tempfile.TemporaryFile()
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:  # no real descriptor (an embedding host): Python-level silence only
                pass
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        sink.close()


def tensorflow():
    """`import tensorflow` without its start-up banner; a missing install names the pip line."""
    from .errors import require

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet():
        return require("tensorflow")


def keras():
    """`import keras` (which imports TensorFlow) without the start-up banner."""
    from .errors import require

    tensorflow()
    return require("keras")
