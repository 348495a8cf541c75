"""The process-wide openvino.Core, created once, with the device and version report that `fmnist-edge info` prints."""

from __future__ import annotations

import importlib.metadata as md
import threading

import openvino as ov

_core: ov.Core | None = None
_lock = threading.Lock()

# Reported by `fmnist-edge info`; looked up in package metadata, never imported.
PACKAGES = ("fmnist-edge", "openvino", "numpy", "pillow", "click", "tensorflow", "keras", "onnx", "onnxruntime", "tf2onnx", "nncf")


def core() -> ov.Core:
    """The one openvino.Core of this process (device plugins load once, compiled models share them)."""
    global _core
    if _core is None:
        with _lock:
            if _core is None:
                _core = ov.Core()
    return _core


def devices() -> list[dict]:
    """The devices OpenVINO sees: name, FULL_DEVICE_NAME and OPTIMIZATION_CAPABILITIES."""
    c = core()
    rows = []
    for name in c.available_devices:
        row = {"device": name}
        for key in ("FULL_DEVICE_NAME", "OPTIMIZATION_CAPABILITIES"):
            try:
                row[key.lower()] = c.get_property(name, key)
            except RuntimeError:
                row[key.lower()] = None
        rows.append(row)
    return rows


def versions() -> dict[str, str | None]:
    """Installed versions of the runtime's and the training extra's packages (None: not installed)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["openvino (runtime build)"] = ov.get_version()
    return out
