"""Ray as the engine for work that outgrows one machine: archive predictions (`predict`) and study trials (`tune`).

Ray is the optional extra `fmnist-edge[cluster]` and is imported only inside these modules' functions, so the
kiosk install and the CLI's other commands never load it. `connect` is the one place a command joins Ray:
"local" starts Ray on this machine, "auto" joins the cluster that `ray start` runs here, HOST:PORT or ray://...
joins that cluster; a driver that is already connected (a test's cluster, a notebook) is used as it is.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from ..errors import ClusterError, first_line, require

INSTALL_CLUSTER = 'pip install "fmnist-edge[cluster]"'


def ray_module():
    """`ray`, or MissingDependencyError naming the extra that has it."""
    return require("ray", INSTALL_CLUSTER)


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT that answers no TCP connection is refused at once (ray.init would wait for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray {address!r}: give `local`, `auto`, HOST:PORT of a Ray head node or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {address} ({first_line(exc)}); start one with "
                           f"`ray start --head` there, or use --ray local") from None


def root_cause(exc: BaseException) -> str:
    """A Ray error's first line is where it happened (`ray::MapWorker(...)`); the user needs what happened: the
    innermost cause. Ray carries a worker's chain of exceptions as text, so that is read too."""
    seen = exc
    while (inner := getattr(seen, "cause", None) or seen.__cause__) is not None and inner is not seen:
        seen = inner
    lines = [ln.strip() for ln in str(exc).splitlines()]
    marker = "The above exception was the direct cause of the following exception:"
    if marker in lines:
        before = [ln for ln in lines[: lines.index(marker)] if ln]
        if before:
            return before[-1][:300]
    return f"{type(seen).__name__}: {first_line(seen, 300)}"


@contextlib.contextmanager
def connect(address: str = "local", num_cpus: int | None = None) -> Iterator[object]:
    """Ray joined at `address` for the block (shut down after it if this call started it) -> the `ray` module."""
    ray = ray_module()
    if address not in ("local", "auto") and not address.startswith("ray://"):
        _reachable(address)
    if ray.is_initialized():
        yield ray
        return
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {first_line(exc)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
