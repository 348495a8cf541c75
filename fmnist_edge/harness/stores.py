"""A real S3 API server for the tests and the fleet benchmark: moto's standalone server, a child process on 127.0.0.1.

Its state lives in memory (a restart is empty). With `log`, the server's request log (one line per HTTP request,
werkzeug's) goes to that file: how the fleet benchmark counts what kiosks ask of the store.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, what: str, timeout_s: float = 30.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`; TimeoutError past the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what} to listen on port {port}") from None
            time.sleep(0.1)


class S3Server:
    """moto's S3 server on a free port of 127.0.0.1; `env()` points s3fs (and `fmnist-edge`) at it."""

    def __init__(self, log: Path | None = None):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = None

    def start(self) -> S3Server:
        out = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child's
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=out)
        finally:
            if self.log is not None:
                out.close()
        wait_listening(self.port, "moto's S3 server")
        return self

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point s3fs (and the CLI) at this server."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint}

    def requests(self) -> int:
        """HTTP requests the server has logged so far (with `log`)."""
        if self.log is None or not Path(self.log).exists():
            return 0
        return sum(1 for line in Path(self.log).read_text(errors="replace").splitlines() if '" 2' in line or '" 4' in line
                   or '" 5' in line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
