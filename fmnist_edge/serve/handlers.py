"""The kiosk's and the inference protocol's HTTP handlers: methods of one `Service` that holds what requests share
(the served models, the metrics, the counters, the limits, the admin token). `app.create_app` routes to them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .. import faults
from ..runtime import package_versions
from ..runtime.preprocess import FRAME_SHORT_SIDE
from . import auth, status, v2
from .inference import Inference
from .limits import DRAIN_BYTES, DRAIN_S, INLINE_JSON
from .metrics import CONTENT_TYPE, Metrics
from .repository import Unloaded
from .status import HTTPError

STATIC = Path(__file__).with_name("static")  # the kiosk's page, script and style
# Content types a client may label an image upload with; the bytes are still sniffed by the decoder.
IMAGE_TYPES = ("image/", "application/octet-stream")


class Service:
    """What every request shares, and the handlers that use it."""

    def __init__(self, core: Inference, metrics: Metrics, *, max_upload_bytes: int, top_k: int, model_info: dict,
                 body_timeout_s: float, trust: tuple[str, ...] = (), admin_token: str | None = None):
        self.core, self.models, self.metrics = core, core.models, metrics
        self.admin_token = admin_token  # None: the control endpoints (repository extension, /metrics) are off
        self.trust = list(trust)  # fingerprints of the keys a version must be signed by; [] trusts no key
        self.max_upload_bytes, self.top_k, self.model_info = max_upload_bytes, top_k, model_info
        self.body_timeout_s = body_timeout_s
        self.started = time.monotonic()
        self.stats = {"predictions": 0, "rejected": 0}
        self.packages = package_versions()
        self.limit_text = f"{max_upload_bytes / 2**20:.1f} MiB"

    # ---------------------------------------------------------------- shared steps

    def model_for(self, request: Request):
        """(version, classifier) for this request: the one asked for in the path, else the current one."""
        return self.core.model(request.path_params.get("name", v2.MODEL_NAME), request.path_params.get("version"))

    async def read_body(self, request: Request) -> bytes:
        limit = self.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _drain(request.receive)
            raise HTTPError(413, f"upload of {int(declared):,} bytes is over the {self.limit_text} limit; send a smaller photo")
        chunks, size = [], 0
        with anyio.move_on_after(self.body_timeout_s):  # a stalled upload must not hold a connection for ever
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise HTTPError(400, "the client went away before its upload ended")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await _drain(request.receive)
                    raise HTTPError(413, f"upload is over the {self.limit_text} limit; send a smaller photo")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        raise HTTPError(408, f"the upload did not arrive within {self.body_timeout_s:g} s ({size:,} bytes came); send it again")

    async def image_bytes(self, request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await self.read_body(request)
        if ctype == "multipart/form-data":
            async def once():
                yield body

            try:
                form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=10).parse()
            except MultiPartException as exc:
                raise HTTPError(400, f"malformed multipart upload ({exc.message}); send one file in the field 'image'") from None
            try:
                upload = form.get("image")
                if not isinstance(upload, UploadFile):
                    upload = next((v for _, v in form.multi_items() if isinstance(v, UploadFile)), None)
                if upload is None:
                    raise HTTPError(400, "the multipart upload holds no file; send the photo in the field 'image'")
                utype = (upload.content_type or "").split(";")[0].strip().lower()
                if utype and not utype.startswith(IMAGE_TYPES):
                    raise HTTPError(415, f"{upload.filename or 'the upload'} is {utype}, not an image; "
                                         "send a PNG, JPEG, BMP or WebP photo")
                data = await upload.read()
            finally:
                await form.close()  # the parser spools a file part to a temporary file: drop it now
        elif not ctype or ctype.startswith(IMAGE_TYPES):
            data = body
        else:
            raise HTTPError(415, f"content type {ctype} is not an image; send a PNG, JPEG, BMP or WebP photo "
                                 "as the body (Content-Type: image/...) or as multipart field 'image'")
        if not data:
            raise HTTPError(400, "the upload is empty; send the bytes of a PNG, JPEG, BMP or WebP photo")
        return data

    def refuse_control(self, request: Request) -> JSONResponse | None:
        """None if `request` may use the control endpoints; else its answer: 403 while they are off (no admin
        token), 401 with `WWW-Authenticate: Bearer` without the right bearer token."""
        if self.admin_token is None:
            return JSONResponse({"error": auth.OFF}, status_code=403)
        if not auth.authorized(request.headers.get("authorization"), self.admin_token):
            return JSONResponse({"error": auth.NEEDED}, status_code=401,
                                headers={"www-authenticate": 'Bearer realm="fmnist-edge"'})
        return None

    async def control_body(self, request: Request) -> dict:
        """A repository request's JSON object (an empty body: {}); ProtocolError (400) if it is not one."""
        body = await self.read_body(request)
        if not body.strip():
            return {}
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise v2.ProtocolError(f"the request body is not JSON ({exc})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("parameters", {}), dict):
            raise v2.ProtocolError('the request body must be a JSON object, its "parameters" an object')
        return obj

    def error(self, exc: Exception, table: status.StatusTable) -> JSONResponse:
        """`{"error": str(exc)}` with the status the protocol's `table` gives `exc`; counted as rejected."""
        code = table.status(exc)
        self.stats["rejected"] += 1
        return JSONResponse({"error": str(exc)}, status_code=code, headers=status.HEADERS.get(code))

    # ---------------------------------------------------------------- the kiosk's JSON API and page

    async def predict(self, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            data = await self.image_bytes(request)

            def classify():
                t, timings = time.perf_counter(), {}
                served, clf = self.core.model(v2.MODEL_NAME)
                try:
                    faults.serving(served)
                    p = clf.predict(data, top_k=self.top_k, timings=timings)
                except BaseException as exc:
                    self.core.outcome(served, exc, int((time.perf_counter() - t) * 1e9))
                    raise
                self.core.outcome(served, None, int((time.perf_counter() - t) * 1e9))
                self.metrics.observe_model("/predict", timings["prepare_s"], timings["infer_s"])
                return p, time.perf_counter() - t

            prediction, seconds = await self.core.in_worker(classify)
        except status.KIOSK.errors as exc:
            return self.error(exc, status.KIOSK)
        self.stats["predictions"] += 1
        return JSONResponse({
            **prediction.to_dict(),  # the schema `predict --json` prints too
            "inference_ms": round(seconds * 1e3, 3),  # decode + preprocess + inference
            "total_ms": round((time.perf_counter() - t0) * 1e3, 3),
        })

    async def health(self, request: Request) -> JSONResponse:
        try:
            current, clf = self.models.get()
        except Unloaded:  # an operator unloaded the model: the server is alive, and says so
            model, state = {"version": None, "versions": [], "refused": self.models.refused(), **self.model_info}, "unloaded"
        else:
            model, state = {**clf.describe(), "class_names": list(clf.class_names), "version": current,
                            "versions": self.models.served_versions(), "golden": self.models.gate(current),
                            "refused": self.models.refused(), "canary": self.models.canary(), **self.model_info}, "ok"
        return JSONResponse({
            "status": state,
            "model": model,
            "packages": self.packages,
            "trust": self.trust,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "predictions": self.stats["predictions"],
            "rejected": self.stats["rejected"],
            "max_upload_bytes": self.max_upload_bytes,
            "frame_short_side": FRAME_SHORT_SIDE,
        })

    # ---------------------------------------------------------------- Open Inference Protocol (KServe v2)

    async def v2_server(self, request: Request) -> JSONResponse:
        return JSONResponse({"name": "fmnist-edge", "version": _package_version(),
                             "extensions": list(v2.EXTENSIONS)})

    async def v2_live(self, request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def v2_ready(self, request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def v2_model(self, request: Request) -> JSONResponse:
        try:
            self.model_for(request)
        except status.V2.errors as exc:
            return self.error(exc, status.V2)
        return JSONResponse(v2.model_metadata(self.models.served_versions()))

    async def v2_model_ready(self, request: Request) -> JSONResponse:
        try:
            self.model_for(request)
        except status.V2.errors as exc:
            return self.error(exc, status.V2)
        return JSONResponse({"name": v2.MODEL_NAME, "ready": True})

    async def v2_infer(self, request: Request) -> Response:
        endpoint = request.scope.get("state", {}).get("endpoint", "/v2/models/{name}/infer")
        try:
            served, clf = self.model_for(request)  # held to the end of the request, whatever is swapped in meanwhile
            body = await self.read_body(request)
            req = (v2.decode_request(body, request.headers) if len(body) <= INLINE_JSON
                   else await self.core.in_worker(v2.decode_request, body, request.headers))
            body, headers = await self.core.infer(req, served, clf, endpoint, lambda probs: v2.encode_response(
                probs, served, req.id, req.binary_output, req.classification, clf.class_names))
        except status.V2.errors as exc:
            return self.error(exc, status.V2)
        self.stats["predictions"] += req.batch
        return Response(body, headers=headers)

    async def v2_stats(self, request: Request) -> JSONResponse:
        try:
            return JSONResponse(self.core.statistics(request.path_params.get("name", ""),
                                                     request.path_params.get("version")))
        except status.V2.errors as exc:
            return self.error(exc, status.V2)

    # ---------------------------------------------------------------- the repository extension (admin token)

    async def repository_index(self, request: Request) -> JSONResponse:
        if (refused := self.refuse_control(request)) is not None:
            return refused
        try:
            ready = (await self.control_body(request)).get("ready", False)
            if not isinstance(ready, bool):
                raise v2.ProtocolError(f'"ready" must be true or false, got {ready!r}')
        except status.V2.errors as exc:
            return self.error(exc, status.V2)
        return JSONResponse(self.models.index(ready))

    async def repository_load(self, request: Request) -> JSONResponse:
        if (refused := self.refuse_control(request)) is not None:
            return refused
        try:
            v2.check_model(request.path_params["name"])
            version = v2.load_version((await self.control_body(request)).get("parameters", {}))
            current = await run_in_threadpool(self.models.load, version)  # may compile and gate a version: seconds
        except status.V2.errors as exc:
            return self.error(exc, status.V2)
        return JSONResponse({"name": v2.MODEL_NAME, "version": current, "pinned": version is not None})

    async def repository_unload(self, request: Request) -> JSONResponse:
        if (refused := self.refuse_control(request)) is not None:
            return refused
        try:
            v2.check_model(request.path_params["name"])
            unknown = sorted(set((await self.control_body(request)).get("parameters", {})) - {"unload_dependents"})
            if unknown:
                raise v2.ProtocolError(f"unknown unload parameter {unknown[0]!r}")
            await run_in_threadpool(self.models.unload)
        except status.V2.errors as exc:
            return self.error(exc, status.V2)
        return JSONResponse({"name": v2.MODEL_NAME, "unloaded": True})

    async def prometheus(self, request: Request) -> Response:
        if (refused := self.refuse_control(request)) is not None:
            return refused
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def page(self, request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-cache"})

    async def server_error(self, request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server keeps serving"}, status_code=500)


async def _drain(receive, limit: int = DRAIN_BYTES, seconds: float = DRAIN_S) -> None:
    """Read and drop the rest of a refused upload (at most `limit` bytes, `seconds` long) before answering: a
    client that sends its whole body before it reads (urllib, requests) then gets the 413 instead of a
    connection reset, which is what closing a socket with unread data in it sends."""
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
