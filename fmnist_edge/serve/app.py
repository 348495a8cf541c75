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
import time
from pathlib import Path

from ..contract import FIRST_VERSION
from ..errors import ConfigError, FmnistEdgeError, ImageSizeError, InputImageError, require

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # 10 MiB: a phone photo is 2-5 MB
DRAIN_BYTES = 64 * 1024 * 1024  # a refused upload is read (and dropped) up to this much, so the client sees the 413
DRAIN_S = 10.0
BODY_TIMEOUT_S = 30.0  # an upload whose body has not all arrived by then is answered 408 and its connection closed
INLINE_BATCH = 4  # FP32 batches up to this size run on the event loop (see v2_infer)
STATIC = Path(__file__).with_name("static")
# Content types a client may label an image upload with; the bytes are still sniffed by the decoder.
IMAGE_TYPES = ("image/", "application/octet-stream")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
     b"connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
               version: str = FIRST_VERSION, body_timeout_s: float = BODY_TIMEOUT_S):
    """The ASGI app around `classifier`: a loaded `fmnist_edge.runtime.Classifier` (served as model `fmnist`,
    version `version`) or a `serve.repository.Repository` (its versions, hot reloaded). Shared by all requests."""
    require("starlette", 'pip install "fmnist-edge[kiosk]"')
    require("python_multipart", 'pip install "fmnist-edge[kiosk]"')
    require("prometheus_client", 'pip install "fmnist-edge[kiosk]"')
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from ..runtime import versions
    from ..runtime.preprocess import FRAME_SHORT_SIDE
    from . import v2
    from .metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
    from .repository import Models, UnknownVersion

    if max_upload_bytes < 1024:
        raise ConfigError(f"the upload limit must be at least 1 KiB, got {max_upload_bytes} bytes")
    started = time.monotonic()
    stats = {"predictions": 0, "rejected": 0}
    models = classifier if isinstance(classifier, Models) else Models(classifier, version)
    version, classifier = models.get()
    metrics = Metrics(classifier, version)
    if hasattr(models, "_on_swap"):
        models._on_swap = metrics.set_model

    def model_for(request: Request):
        """(version, classifier) for this request: the one asked for in the path, else the current one."""
        name, asked = request.path_params.get("name", v2.MODEL_NAME), request.path_params.get("version")
        v2.check_model(name)
        try:
            return models.get(asked)
        except UnknownVersion:
            raise v2.ProtocolError(f"model {v2.MODEL_NAME!r} has no version {asked!r} loaded; it serves "
                                   f"{', '.join(models.versions())}", 404) from None
    versions_now = versions()
    limit_text = f"{max_upload_bytes / 2**20:.1f} MiB"

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes:
            await _drain(request.receive)
            raise _HTTPError(413, f"upload of {int(declared):,} bytes is over the {limit_text} limit; send a smaller photo")
        import anyio

        chunks, size = [], 0
        with anyio.move_on_after(body_timeout_s):  # a stalled upload must not hold a connection for ever
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise _HTTPError(400, "the client went away before its upload ended")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_upload_bytes:
                    await _drain(request.receive)
                    raise _HTTPError(413, f"upload is over the {limit_text} limit; send a smaller photo")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        raise _HTTPError(408, f"the upload did not arrive within {body_timeout_s:g} s ({size:,} bytes came); send it again")

    async def image_bytes(request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await read_body(request)
        if ctype == "multipart/form-data":
            async def once():
                yield body

            try:
                form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=10).parse()
            except MultiPartException as exc:
                raise _HTTPError(400, f"malformed multipart upload ({exc.message}); send one file in the field 'image'") from None
            try:
                upload = form.get("image")
                if not isinstance(upload, UploadFile):
                    upload = next((v for _, v in form.multi_items() if isinstance(v, UploadFile)), None)
                if upload is None:
                    raise _HTTPError(400, "the multipart upload holds no file; send the photo in the field 'image'")
                utype = (upload.content_type or "").split(";")[0].strip().lower()
                if utype and not utype.startswith(IMAGE_TYPES):
                    raise _HTTPError(415, f"{upload.filename or 'the upload'} is {utype}, not an image; send a PNG, JPEG, BMP or WebP photo")
                data = await upload.read()
            finally:
                await form.close()  # the parser spools a file part to a temporary file: drop it now
        elif not ctype or ctype.startswith(IMAGE_TYPES):
            data = body
        else:
            raise _HTTPError(415, f"content type {ctype} is not an image; send a PNG, JPEG, BMP or WebP photo "
                                  "as the body (Content-Type: image/...) or as multipart field 'image'")
        if not data:
            raise _HTTPError(400, "the upload is empty; send the bytes of a PNG, JPEG, BMP or WebP photo")
        return data

    def error(status: int, message: str) -> JSONResponse:
        stats["rejected"] += 1
        return JSONResponse({"error": message}, status_code=status)

    async def predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            data = await image_bytes(request)

            def classify():
                t, timings = time.perf_counter(), {}
                p = models.get()[1].predict(data, top_k=top_k, timings=timings)
                metrics.observe_model("/predict", timings["prepare_s"], timings["infer_s"])
                return p, time.perf_counter() - t

            prediction, seconds = await run_in_threadpool(classify)
        except _HTTPError as exc:
            return error(exc.status, str(exc))
        except ImageSizeError as exc:
            return error(413, str(exc))
        except InputImageError as exc:
            return error(422, str(exc))
        except FmnistEdgeError as exc:  # the model itself failed: the kiosk's watchdog should know
            return error(500, str(exc))
        stats["predictions"] += 1
        return JSONResponse({
            "label": prediction.label,
            "index": prediction.index,
            "confidence": prediction.confidence,
            "top_k": [{"label": name, "confidence": p} for name, p in prediction.top_k],
            "inference_ms": round(seconds * 1e3, 3),  # decode + preprocess + inference
            "total_ms": round((time.perf_counter() - t0) * 1e3, 3),
        })

    async def health(request: Request) -> JSONResponse:
        current, clf = models.get()
        return JSONResponse({
            "status": "ok",
            "model": {**clf.describe(), "class_names": list(clf.class_names), "version": current,
                      "versions": models.versions(), **(model_info or {})},
            "versions": versions_now,
            "uptime_s": round(time.monotonic() - started, 1),
            "predictions": stats["predictions"],
            "rejected": stats["rejected"],
            "max_upload_bytes": max_upload_bytes,
            "frame_short_side": FRAME_SHORT_SIDE,
        })

    # ---------------------------------------------------------------- Open Inference Protocol (KServe v2)

    def v2_error(exc: Exception, status: int) -> JSONResponse:
        stats["rejected"] += 1
        return JSONResponse({"error": str(exc)}, status_code=status)

    async def v2_server(request: Request) -> JSONResponse:
        return JSONResponse({"name": "fmnist-edge", "version": _package_version(),
                             "extensions": ["binary_tensor_data"]})

    async def v2_live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def v2_ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def v2_model(request: Request) -> JSONResponse:
        try:
            model_for(request)
        except v2.ProtocolError as exc:
            return v2_error(exc, exc.status)
        return JSONResponse(v2.model_metadata(models.versions()))

    async def v2_model_ready(request: Request) -> JSONResponse:
        try:
            model_for(request)
        except v2.ProtocolError as exc:
            return v2_error(exc, exc.status)
        return JSONResponse({"name": v2.MODEL_NAME, "ready": True})

    async def v2_infer(request: Request) -> Response:
        endpoint = request.scope.get("state", {}).get("endpoint", "/v2/models/{name}/infer")
        try:
            served, clf = model_for(request)  # held to the end of the request, whatever is swapped in meanwhile
            req = v2.decode_request(await read_body(request), request.headers)

            def infer():
                t0 = time.perf_counter()
                x = req.tensor if req.tensor is not None else clf.to_input(req.photos)
                t1 = time.perf_counter()
                probs = clf.predict_tensor(x)
                metrics.observe_model(endpoint, None if req.tensor is not None else t1 - t0, time.perf_counter() - t1)
                return probs

            # a small FP32 batch is a sub-millisecond model call: on the event loop it costs less than the hop to
            # a worker thread and back; photos (decoding, milliseconds) and large batches go to the thread pool
            probs = infer() if req.tensor is not None and req.batch <= INLINE_BATCH else await run_in_threadpool(infer)
        except v2.ProtocolError as exc:
            return v2_error(exc, exc.status)
        except _HTTPError as exc:
            return v2_error(exc, exc.status)
        except InputImageError as exc:  # the protocol has one status for a bad request
            return v2_error(exc, 413 if isinstance(exc, ImageSizeError) else 400)
        except FmnistEdgeError as exc:
            return v2_error(exc, 500)
        stats["predictions"] += req.batch
        body, headers = v2.encode_response(probs, served, req.id, req.binary_output)
        return Response(body, headers=headers)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-cache"})

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server keeps serving"}, status_code=500)

    app = Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/v2", v2_server, methods=["GET"]),
            Route("/v2/health/live", v2_live, methods=["GET"]),
            Route("/v2/health/ready", v2_ready, methods=["GET"]),
            Route("/v2/models/{name}", v2_model, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", v2_model, methods=["GET"]),
            Route("/v2/models/{name}/ready", v2_model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", v2_model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={500: server_error},
    )
    app.state.models = models
    app.state.metrics = metrics
    return _SecurityHeaders(MetricsMiddleware(app, metrics, app.routes))


async def _drain(receive, limit: int = DRAIN_BYTES, seconds: float = DRAIN_S) -> None:
    """Read and drop the rest of a refused upload (at most `limit` bytes, `seconds` long) before answering: a
    client that sends its whole body before it reads (urllib, requests) then gets the 413 instead of a
    connection reset, which is what closing a socket with unread data in it sends."""
    import anyio

    seen = 0
    with anyio.move_on_after(seconds):
        while seen <= limit:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            seen += len(message.get("body", b""))


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fmnist-edge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return ""


def _listen(host: str, port: int) -> socket.socket:
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


def serve(model: str = "artifacts", precision: str = "auto", device: str = "CPU", host: str = "127.0.0.1",
          port: int = 8000, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, threads: int | None = None, log=print,
          repository: str | None = None) -> None:
    """Load one Classifier (or the newest verified version of `repository`, hot reloaded), then serve the kiosk
    and the inference protocol until interrupted."""
    require("uvicorn", 'pip install "fmnist-edge[kiosk]"')
    import uvicorn

    from ..runtime import Classifier
    from .repository import Repository

    def load(path):
        return Classifier.load(path, precision=precision, device=device, threads=threads)

    sock = _listen(host, port)
    if repository is not None:
        models = Repository(repository, load, log=log)
        version, clf = models.get()
        source = f"{models.base}/{version} (watching {models.base} for new versions)"
    else:
        clf = models = load(model)
        source = model
    app = create_app(models, max_upload_bytes=max_upload_bytes)
    shown = f"[{host}]" if ":" in host else host
    chosen = f"{clf.precision}, chosen by auto" if clf.choice else clf.precision
    log(f"model: {source} ({chosen} on {clf.device}, computes in {clf.inference_precision})")
    log(f"kiosk: http://{shown}:{sock.getsockname()[1]}/  (Ctrl+C stops); inference protocol under /v2, metrics at /metrics")
    if not is_loopback(host):
        log(f"warning: listening on {host}: anyone who can reach this machine can use the kiosk")
    if repository is not None:
        models.start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        if repository is not None:
            models.close()
