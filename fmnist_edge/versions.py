"""Installed package versions, recorded with every model, artifact and benchmark (no heavy imports)."""

from __future__ import annotations

import importlib.metadata as md
import platform

from . import __version__

# Every package a result can depend on: the runtime's, the [train] extra's, the [kiosk] extra's
ALL = ("openvino", "numpy", "pillow", "click", "tensorflow", "keras", "onnx", "tf2onnx", "onnxruntime", "ai-edge-litert", "nncf",
       "matplotlib", "starlette", "uvicorn")


def package_versions(packages: tuple[str, ...] = ALL) -> dict[str, str | None]:
    """{"fmnist_edge", "python", each package: its version or None when not installed}."""
    out: dict[str, str | None] = {"fmnist_edge": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out
