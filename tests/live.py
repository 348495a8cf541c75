"""A real uvicorn server on a free port of 127.0.0.1, in a thread: what browsers and HTTP clients test against."""

from __future__ import annotations

import contextlib
import threading
import time

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"  # what tests give create_app(admin_token=...) for /metrics
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextlib.contextmanager
def live_server(app, **limits):
    """Serve the ASGI `app` as `fmnist-edge serve` does (its limits, or `limits`) until the block ends; yields
    the base URL (http://127.0.0.1:PORT)."""
    import uvicorn

    from fmnist_edge.serve import server
    from fmnist_edge.serve.app import listen

    sock = listen("127.0.0.1", 0)
    srv = uvicorn.Server(server.config(app, **limits))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def wait_for(condition, what: str, timeout_s: float = 60.0, step_s: float = 0.05) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s` (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f} s for {what}"
        time.sleep(step_s)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, what: str, timeout_s: float = 30.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:`port`."""
    import socket

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(accepts, f"{what} to listen on port {port}", timeout_s, 0.1)


class S3Server:
    """moto's standalone S3 server in its own process on 127.0.0.1 (state in memory: a restart is empty)."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> S3Server:
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, "moto's S3 server")
        return self

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point s3fs (and the CLI) at this server."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
