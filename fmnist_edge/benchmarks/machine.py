"""Facts about the machine and the installed versions that every benchmark result is recorded with."""

from __future__ import annotations

import os
import platform

from ..versions import versions as _versions

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile")
PACKAGES = ("openvino", "tensorflow", "keras", "onnxruntime", "onnx", "tf2onnx", "nncf", "numpy")


def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {"cpu": model, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "isa": [f for f in ISA_FLAGS if f in flags]}


def versions() -> dict:
    return _versions(PACKAGES)


def machine() -> dict:
    return {**cpu_info(), "os": f"{platform.system()} {platform.release()}", "versions": versions()}
