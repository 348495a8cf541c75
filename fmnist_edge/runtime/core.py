"""The process-wide openvino.Core, created once, with the device and version report that `fmnist-edge info` prints."""

from __future__ import annotations

import sys
import threading

from .. import versions


def _import_openvino():
    """`import openvino` without its eager import of the model-conversion tools (openvino.tools.ovc and its
    telemetry): a kiosk never converts, and they cost ~0.1 s of a cold start. `ov.convert_model` still works
    for a caller in the same process: it imports the tools on first use."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    blocked = "openvino.tools.ovc" not in sys.modules
    if blocked:
        sys.modules["openvino.tools.ovc"] = None  # openvino/__init__ tries this import and skips it on ImportError
    try:
        import openvino
    finally:
        if blocked and sys.modules.get("openvino.tools.ovc", 0) is None:
            del sys.modules["openvino.tools.ovc"]
    if not hasattr(openvino, "convert_model"):

        def convert_model(*args, **kwargs):
            from openvino.tools.ovc import convert_model as convert

            return convert(*args, **kwargs)

        openvino.convert_model = convert_model
    return openvino


ov = _import_openvino()

_core: ov.Core | None = None
_lock = threading.Lock()



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


def package_versions() -> dict[str, str | None]:
    """Installed versions of the runtime's and the training extra's packages (None: not installed)."""
    return {**versions.package_versions(), "openvino (runtime build)": ov.get_version()}
