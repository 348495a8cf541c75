"""The HTTP server around the app: uvicorn with the limits a kiosk exposed to a network needs.

- A request's headers must arrive within `header_timeout_s` of the connection opening (or of the previous
  response on a keep-alive connection): a client that opens connections and sends nothing, or a byte at a
  time (slowloris), is answered 408 and closed instead of holding a file descriptor for ever.
- At most `max_connections` open connections: past that, new requests are answered 503 at once.
- The process may open as many files as its hard limit allows (the soft limit is often 1,024).
The app itself times out stalled bodies (408) and caps queued work (503); see app.py. HTTPS is uvicorn's own:
`run(..., ssl_certfile=..., ssl_keyfile=...)` (serve --tls-cert/--tls-key) reaches uvicorn.Config through `config`.
"""

from __future__ import annotations

import asyncio
import resource
import socket

from ..contract import INSTALL_KIOSK
from ..errors import require
from .limits import HEADER_TIMEOUT_S, MAX_CONNECTIONS

TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    b"content-length: %d\r\n\r\n%s")


def _guarded_protocol(header_timeout_s: float):
    """uvicorn's httptools protocol with a deadline on the request line and headers."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    body = b'{"error": "the request headers did not arrive within %g s; send the request again"}' % header_timeout_s

    class GuardedProtocol(HttpToolsProtocol):
        _header_timer = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(TIMEOUT_RESPONSE % (len(body), body))
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                self._arm()  # the next request on this keep-alive connection gets the same deadline

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedProtocol


def raise_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


def config(app, *, max_connections: int = MAX_CONNECTIONS, header_timeout_s: float = HEADER_TIMEOUT_S, **kw):
    """A uvicorn.Config for `app` with the limits above."""
    require("uvicorn", INSTALL_KIOSK)
    require("httptools", INSTALL_KIOSK)
    import uvicorn

    return uvicorn.Config(app, http=_guarded_protocol(header_timeout_s), limit_concurrency=max_connections,
                          log_level="warning", access_log=False, **kw)


def _with(services):
    """uvicorn's Server, with `services` (each with async start() and stop(), e.g. the gRPC server) started on its
    event loop before the first request and stopped while it shuts down (its signal handling covers both)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            started = []
            try:
                for service in services:
                    await service.start()
                    started.append(service)
                await super().startup(sockets=sockets)
            except BaseException:
                await asyncio.gather(*(s.stop() for s in started))
                raise

        async def shutdown(self, sockets=None) -> None:
            await asyncio.gather(super().shutdown(sockets=sockets), *(s.stop() for s in services))

    return Server


def run(app, sock: socket.socket, beside=(), **limits) -> None:
    """Serve `app` on the listening `sock` until interrupted, and the `beside` services in the same event loop."""
    import uvicorn

    raise_file_limit()
    server = _with(beside) if beside else uvicorn.Server
    server(config(app, timeout_graceful_shutdown=5, **limits)).run(sockets=[sock])
