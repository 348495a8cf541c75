"""Test helpers: a real uvicorn server on a free port of 127.0.0.1 in a thread, waiting with a deadline, and moto's S3 server."""

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


from fmnist_edge.harness.stores import S3Server, free_port, wait_listening  # noqa: E402,F401 - shared with benchmarks
