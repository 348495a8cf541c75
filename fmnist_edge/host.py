"""Facts about the host CPU that training and timings depend on.

- `cpu_model()`: the CPU's name, recorded with training runs and benchmark results.
- `cpu_flags()` / `cpu_has_bf16()`: whether the CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16),
  which decides the default training precision on a CPU.
- `usable_cores()`: the cores this process may run on (its affinity), what thread and process pools size to.
- Steal: how much CPU time the hypervisor took from this VM (Linux "steal"). On a shared cloud host a 2-core VM
  can lose a quarter of its CPU time to neighbours; a training wall time or a benchmark figure is only comparable
  with the steal measured over the same span.
"""

from __future__ import annotations

import functools
import os
import platform

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty off Linux)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    """The CPU's marketing name ("Intel(R) Xeon(R) Platinum 8480+", "AMD EPYC"), else the architecture."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """True where oneDNN runs bfloat16 convolutions natively (AMX tiles or AVX512-BF16), not emulated."""
    return any(flag in cpu_flags() for flag in _BF16_FLAGS)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def steal_seconds() -> float | None:
    """CPU-seconds stolen from this machine since boot, summed over all CPUs; None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) / _TICK


class StealMeter:
    """Steal over a span: `with StealMeter() as m: ...` then `m.seconds` (None where unknown)."""

    def __enter__(self) -> StealMeter:
        self._start, self.seconds = steal_seconds(), None
        return self

    def __exit__(self, *exc) -> None:
        end = steal_seconds()
        if self._start is not None and end is not None:
            self.seconds = round(end - self._start, 1)
