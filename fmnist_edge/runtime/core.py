"""The process-wide openvino.Core, created once, with the device and version report that `fmnist-edge info` prints."""

from __future__ import annotations

import threading

import openvino as ov

from ..versions import ALL as PACKAGES
from ..versions import versions as _versions

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


def versions() -> dict[str, str | None]:
    """Installed versions of the runtime's and the training extra's packages (None: not installed)."""
    return {**_versions(PACKAGES), "openvino (runtime build)": ov.get_version()}
