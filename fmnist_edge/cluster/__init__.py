"""Ray as the engine for work that outgrows one machine: archive predictions (`predict`) and study trials (`tune`).

Ray is the optional extra `fmnist-edge[cluster]` and is imported only inside these modules' functions, so the
kiosk install and the CLI's other commands never load it. `connect` is the one place a command joins Ray:
"local" starts Ray on this machine, "auto" joins the cluster that `ray start` runs here, HOST:PORT or ray://...
joins that cluster; a driver that is already connected (a test's cluster, a notebook) is used as it is.
"""

from __future__ import annotations

import contextlib
import os
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


def filesystem(uri: str):
    """A remote location (s3://bucket/prefix, gs://..., ...) -> (pyarrow filesystem, path in it) that travels to
    Ray's workers whole, or (None, uri) for a local path. For S3 the endpoint, region and keys come from this
    process's standard AWS variables (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, ...) where they are
    set, so workers started without them (a MinIO endpoint, a test's server) reach the same store."""
    if "://" not in uri:
        return None, uri
    import pyarrow
    import pyarrow.fs as pafs

    scheme, _, path = uri.partition("://")
    if scheme in ("s3", "s3a"):
        env = os.environ.get
        options = {"endpoint_override": env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
                   "region": env("AWS_REGION") or env("AWS_DEFAULT_REGION"), "access_key": env("AWS_ACCESS_KEY_ID"),
                   "secret_key": env("AWS_SECRET_ACCESS_KEY"), "session_token": env("AWS_SESSION_TOKEN")}
        if not (options["access_key"] and options["secret_key"]):  # the workers' own credentials (an IAM role)
            options.update(access_key=None, secret_key=None, session_token=None)
        return pafs.S3FileSystem(**{k: v for k, v in options.items() if v}), path.rstrip("/")
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pyarrow.ArrowException, OSError) as exc:
        raise ClusterError(f"cannot open {uri}: {first_line(exc)}") from None


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
