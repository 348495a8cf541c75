"""Facts about the machine and the installed versions that every benchmark result is recorded with."""

from __future__ import annotations

import os
import platform

from ..host import cpu_flags, cpu_model, usable_cores
from ..versions import package_versions

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile")


def cpu_info() -> dict:
    flags = cpu_flags()
    return {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
            "isa": [f for f in ISA_FLAGS if f in flags]}


def machine() -> dict:
    return {**cpu_info(), "os": f"{platform.system()} {platform.release()}", "versions": package_versions()}
