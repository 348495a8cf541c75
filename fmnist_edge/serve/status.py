"""The HTTP status of every refused request: the error that carries its own, and one table per protocol."""

from __future__ import annotations

from ..errors import ControlError, FmnistEdgeError, ImageSizeError, InputImageError


class HTTPError(Exception):
    """A request refused with `status` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class StatusTable:
    """Error type -> HTTP status; the first row whose type matches wins, so a subclass comes before its base.
    A status of None: the error's own `status` (an HTTPError's)."""

    def __init__(self, *rows: tuple[type[Exception], int | None]):
        self.rows = rows
        self.errors = tuple(kind for kind, _ in rows)  # for `except table.errors`

    def status(self, exc: Exception) -> int:
        for kind, status in self.rows:
            if isinstance(exc, kind):
                return exc.status if status is None else status
        raise LookupError(f"{type(exc).__name__} has no row in this table")


# The kiosk's JSON API (POST /predict)
KIOSK = StatusTable(
    (HTTPError, None),
    (ImageSizeError, 413),
    (InputImageError, 422),
    (FmnistEdgeError, 500),  # the model itself failed: the kiosk's watchdog should know
    (RuntimeError, 500),  # ... as OpenVINO says it (or a fault a test injected): answered, the connection kept
)

# The Open Inference Protocol (/v2): v2.ProtocolError is an HTTPError (400 or 404)
V2 = StatusTable(
    (HTTPError, None),
    (ImageSizeError, 413),
    (InputImageError, 400),  # the protocol has one status for a bad request
    (ControlError, 400),  # a repository load or unload that cannot be done, as Triton answers it
    (FmnistEdgeError, 500),
    (RuntimeError, 500),  # the model failed at run time (OpenVINO's errors; a test's injected fault)
)

# Extra headers by status: come back in a second; the rest of this connection's request is unread, close it
HEADERS = {503: {"retry-after": "1"}, 408: {"connection": "close"}, 413: {"connection": "close"}}
