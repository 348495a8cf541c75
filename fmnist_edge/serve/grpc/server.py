"""The gRPC listener beside the REST server: a grpc.aio server on the uvicorn event loop (serve/server.py starts it
before the first request and stops it while uvicorn shuts down), plaintext or TLS."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from ...contract import INSTALL_KIOSK
from ...errors import ConfigError, require
from ..limits import DEFAULT_MAX_UPLOAD, MAX_CONNECTIONS

GRACE_S = 5.0  # running RPCs get this long to finish at shutdown, as uvicorn's requests do


def read_tls(cert: str | None, key: str | None) -> tuple[bytes, bytes] | None:
    """(private key, certificate chain) as PEM bytes from --tls-key and --tls-cert, checked to be a certificate and
    its key (ConfigError, one line, otherwise); None when neither is given (plaintext)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key go together: give the certificate (PEM) and its private key (PEM)")
    blobs = []
    for option, path in (("--tls-key", key), ("--tls-cert", cert)):
        try:
            blobs.append(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    try:  # the standard library's check: PEM, and a key that belongs to the certificate (never a password prompt)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and its unencrypted private key "
                          f"({getattr(exc, 'reason', None) or exc})") from None
    return blobs[0], blobs[1]


def check_port(host: str, port: int) -> None:
    """ConfigError (one line) unless `port` of `host` is free: grpc's own bind failure also writes a log line of
    its own to stderr, so `serve` asks first, before the model loads. 0 (any free port) always is."""
    if port == 0:
        return
    try:
        family, socktype, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    with socket.socket(family, socktype, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds: a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen for gRPC on {host}:{port} ({exc.strerror}); choose another --grpc-port "
                              "or stop what holds it") from None


class GRPCServer:
    """`inference.GRPCInferenceService` on `host`:`port` (0: any free port) over the `core` of the REST app."""

    def __init__(self, core, host: str = "127.0.0.1", port: int = 0, *, tls: tuple[bytes, bytes] | None = None,
                 max_message_bytes: int = DEFAULT_MAX_UPLOAD, max_rpcs: int = MAX_CONNECTIONS, log=print,
                 admin_token: str | None = None):
        require("grpc", INSTALL_KIOSK)
        self.core, self.host, self.port, self.tls, self.log = core, host, port, tls, log
        self.admin_token = admin_token  # the repository RPCs' bearer token (None: they are off)
        self.max_message_bytes, self.max_rpcs = max_message_bytes, max_rpcs
        self._server = None

    async def start(self) -> int:
        """Bind and start serving on the running event loop -> the port; ConfigError if the port cannot be bound."""
        import grpc

        from .grpc_service_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
        from .service import InferenceService

        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", self.max_message_bytes), ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=self.max_rpcs)
        add_GRPCInferenceServiceServicer_to_server(InferenceService(self.core, self.admin_token), server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            if self.tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, grpc.ssl_server_credentials([self.tls]))
        except RuntimeError as exc:
            port, reason = 0, exc
        else:
            reason = None
        if not port:
            await server.stop(None)
            raise ConfigError(f"cannot listen for gRPC on {address} ({reason or 'bind failed'}); choose another "
                              "--grpc-port or stop what holds it")
        await server.start()
        self._server, self.port = server, port
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.log(f"grpc: {shown}:{port} (KServe v2 / Triton GRPCInferenceService{', TLS' if self.tls else ''})")
        return port

    async def stop(self, grace: float | None = GRACE_S) -> None:
        """Refuse new RPCs, give running ones `grace` seconds, then end them."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace)
