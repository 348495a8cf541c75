"""The kiosk web app: Starlette routes over one shared, thread-safe `Classifier`.

Safe by default: it listens on 127.0.0.1, reads at most `max_upload_bytes` of any request body (before
decoding a pixel), accepts only image content (PNG, JPEG, BMP, WebP, sniffed by the runtime's decoder),
never touches the file system on a request's behalf, and answers every bad request with a 4xx JSON
`{"error": ...}` while it keeps serving. Inference runs in Starlette's thread pool, so concurrent requests
share the one compiled model through the classifier's own infer-request pool.
"""

from __future__ import annotations

import ipaddress
import socket

from ..contract import FIRST_VERSION, INSTALL_KIOSK
from ..errors import ConfigError, require
from .limits import BODY_TIMEOUT_S, DEFAULT_MAX_UPLOAD, MAX_CONNECTIONS, MAX_QUEUE

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
     b"connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
]


class _SecurityHeaders:
    """Pure ASGI middleware: the same safe headers on every HTTP response, the static page's included."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(classifier, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, top_k: int = 3, model_info: dict | None = None,
               version: str = FIRST_VERSION, body_timeout_s: float = BODY_TIMEOUT_S, max_queue: int = MAX_QUEUE,
               max_batch_delay_us: int = 0, preferred_batch_sizes: tuple[int, ...] = (), trust: tuple[str, ...] = (),
               admin_token: str | None = None):
    """The ASGI app around `classifier`: a loaded `fmnist_edge.runtime.Classifier` (served as model `fmnist`,
    version `version`) or a `serve.repository.Repository` (its versions, hot reloaded). Shared by all requests.
    `max_batch_delay_us` > 0 merges concurrent infer requests into batches (see batching.py). `trust`: the
    fingerprints of the keys that versions must be signed by, shown by /health ([]: no key, no check).
    `admin_token`: the bearer token the repository extension and /metrics need (None: they are off, see auth.py)."""
    require("starlette", INSTALL_KIOSK)
    require("python_multipart", INSTALL_KIOSK)
    require("prometheus_client", INSTALL_KIOSK)
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from .handlers import STATIC, Service
    from .inference import Inference
    from .metrics import Metrics, MetricsMiddleware
    from .repository import ServedModel

    if max_upload_bytes < 1024:
        raise ConfigError(f"the upload limit must be at least 1 KiB, got {max_upload_bytes} bytes")
    models = classifier if isinstance(classifier, ServedModel) else ServedModel(classifier, version)
    version, current = models.get()
    metrics = Metrics(current, version)
    models.add_swap_listener(metrics.set_model)
    metrics.watch(models)
    core = Inference(models, metrics=metrics, max_queue=max_queue, max_batch_delay_us=max_batch_delay_us,
                     preferred_batch_sizes=preferred_batch_sizes)
    s = Service(core, metrics, max_upload_bytes=max_upload_bytes, top_k=top_k, model_info=model_info or {},
                body_timeout_s=body_timeout_s, trust=trust, admin_token=admin_token)
    app = Starlette(
        routes=[
            Route("/", s.page, methods=["GET"]),
            Route("/predict", s.predict, methods=["POST"]),
            Route("/health", s.health, methods=["GET"]),
            Route("/metrics", s.prometheus, methods=["GET"]),
            Route("/v2", s.v2_server, methods=["GET"]),
            Route("/v2/health/live", s.v2_live, methods=["GET"]),
            Route("/v2/health/ready", s.v2_ready, methods=["GET"]),
            Route("/v2/models/stats", s.v2_stats, methods=["GET"]),  # all models; before {name} matches "stats"
            Route("/v2/models/{name}", s.v2_model, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", s.v2_model, methods=["GET"]),
            Route("/v2/models/{name}/ready", s.v2_model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", s.v2_model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", s.v2_infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", s.v2_infer, methods=["POST"]),
            Route("/v2/models/{name}/stats", s.v2_stats, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/stats", s.v2_stats, methods=["GET"]),
            Route("/v2/repository/index", s.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", s.repository_load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", s.repository_unload, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={500: s.server_error},
    )
    app.state.models = models
    app.state.inference = core
    app.state.metrics = metrics
    wrapped = _SecurityHeaders(MetricsMiddleware(app, metrics, app.routes))
    wrapped.state = app.state  # models, inference, metrics: for what serves beside the app (gRPC)
    return wrapped


def listen(host: str, port: int) -> socket.socket:
    """Bind before starting so that a taken port or a bad host is one clear error, not a server log."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc.strerror}); use 127.0.0.1 or 0.0.0.0") from None
    family, socktype, proto, _, address = infos[0]
    # The protocol must be named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections whose
    # socket says IPPROTO_TCP, and with Nagle on, every response after the first on a keep-alive connection
    # waited ~40 ms for the client's delayed ACK between its header and body writes.
    sock = socket.socket(family, socktype, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections on Linux
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or stop what holds it") from None
    sock.listen(128)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """The one line `serve` prints when it listens beyond loopback without an admin token (None otherwise)."""
    if is_loopback(host) or token is not None:
        return None
    return (f"warning: listening on {host} without --admin-token-file: anyone who can reach this machine can use the "
            "kiosk and its inference protocol, and nobody can control its repository")


def serve(model: str = "artifacts", precision: str = "auto", device: str = "CPU", host: str = "127.0.0.1",
          port: int = 8000, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, threads: int | None = None, log=print,
          repository: str | None = None, max_connections: int = MAX_CONNECTIONS, max_queue: int = MAX_QUEUE,
          max_batch_delay_us: int = 0, preferred_batch_sizes: tuple[int, ...] = (), grpc_port: int | None = None,
          tls_cert: str | None = None, tls_key: str | None = None, trust: tuple = (), cache: str | None = None,
          admin_token_file: str | None = None, versions=None, canary=None, poll_s: float | None = None) -> None:
    """Load one Classifier (or the versions of `repository` that the policy `versions` serves, hot reloaded), then
    serve the kiosk and the inference protocol until interrupted; with `grpc_port` (0: any free one), the protocol's
    gRPC service too, in the same event loop. With `tls_cert` and `tls_key` (PEM files) both speak TLS (HTTPS).
    `trust`: public keys (paths); a version (or the --model folder) not signed by one of them is refused.
    A `repository` URI (s3://, gs://, https://, file://) is served through the local folder `cache` (serve/remote.py).
    `admin_token_file`: the bearer token of the repository extension and /metrics (without it they are off).
    `versions`: a repository.VersionPolicy (None: the newest version that passes the gates). `canary`: a
    canary.CanaryPolicy for each new version of the repository (None: a version that passes its gates serves at once).
    `poll_s`: seconds between looks for new versions (None: 1 s for a folder, 10 s for a remote store)."""
    from ..runtime import Classifier
    from . import server
    from .auth import read_token
    from .repository import LATEST, Repository

    policy = versions or LATEST
    if repository is None and policy != LATEST:
        raise ConfigError(f"--versions {policy} chooses among the versions of a --repository; --model serves one")
    if repository is None and canary is not None:
        raise ConfigError("--canary tries the new versions of a --repository; --model serves one fixed model")
    if repository is None and poll_s is not None:
        raise ConfigError("--poll-seconds says how often a --repository is looked at; --model serves one fixed model")
    token = None if admin_token_file is None else read_token(admin_token_file)
    tls = None
    if tls_cert or tls_key:
        from .grpc.server import read_tls

        tls = read_tls(tls_cert, tls_key)  # a bad file: one error line before the model loads
    keys = None
    if trust:
        from ..signing import trusted_keys

        keys = trusted_keys(trust)  # a bad key file: one error line before anything loads

    def load(path):
        return Classifier.load(path, precision=precision, device=device, threads=threads, trust=keys)

    if grpc_port is not None:
        from .grpc.server import GRPCServer, check_port

        check_port(host, grpc_port)  # a taken port: one error line before the model loads
    from ..store import is_remote

    if cache is not None and (repository is None or not is_remote(repository)):
        raise ConfigError("--cache keeps the versions of a remote --repository (s3://, gs://, https://, file://); a local model or "
                          "repository folder is served where it is: drop --cache")
    sock = listen(host, port)
    if repository is not None:

        if is_remote(repository):
            from .remote import RemoteRepository

            models = RemoteRepository(repository, load, cache=cache, log=log, policy=policy, canary=canary,
                                      **({} if poll_s is None else {"poll_s": poll_s}))
            watched = f"{repository}, cached in {models.base}"
        else:
            models = Repository(repository, load, log=log, policy=policy, canary=canary,
                                **({} if poll_s is None else {"poll_s": poll_s}))
            watched = models.base
        version, clf = models.get()
        served = "" if policy == LATEST else f"; --versions {policy}: {', '.join(models.served_versions())}"
        source = f"{models.base}/{version} (watching {watched} for new versions{served})"
    else:
        clf = models = load(model)
        source = model
    app = create_app(models, max_upload_bytes=max_upload_bytes, max_queue=max_queue, max_batch_delay_us=max_batch_delay_us,
                     preferred_batch_sizes=preferred_batch_sizes, trust=tuple(k.fingerprint for k in keys or ()),
                     admin_token=token)
    shown = f"[{host}]" if ":" in host else host
    chosen = f"{clf.precision}, chosen by auto" if clf.choice else clf.precision
    log(f"model: {source} ({chosen} on {clf.device}, computes in {clf.inference_precision})")
    control = ("repository extension and metrics need the admin token" if token else
               "repository extension and metrics off (no --admin-token-file)")
    log(f"kiosk: http{'s' if tls else ''}://{shown}:{sock.getsockname()[1]}/  (Ctrl+C stops); inference protocol "
        f"under /v2; {control}")
    if keys:
        log(f"trust: versions must be signed by {', '.join(f'{k.short} ({k.source})' for k in keys)}")
    if (warning := exposure_warning(host, token)) is not None:
        log(warning)
    if repository is not None:
        models.start()
    beside = [] if grpc_port is None else [GRPCServer(app.state.inference, host, grpc_port, tls=tls, log=log,
                                                      max_message_bytes=max_upload_bytes, max_rpcs=max_connections,
                                                      admin_token=token)]
    https = {} if tls is None else {"ssl_certfile": tls_cert, "ssl_keyfile": tls_key}
    try:
        server.run(app, sock, max_connections=max_connections, beside=beside, **https)
    finally:
        if repository is not None:
            models.close()
