"""The RPCs of `inference.GRPCInferenceService` (KServe v2 / Triton) over the shared `Inference` core: what the REST
handlers answer under /v2, with gRPC status codes for errors.

A refused request gets the status code of the HTTP status REST gives the same error (status.V2, the one table):
400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 503 (busy) -> UNAVAILABLE, 500 (the model failed) -> INTERNAL. On
ModelStreamInfer an error comes back as the response's `error_message` and the stream goes on; responses come in
the order of the requests, which run concurrently (so they can share a dynamic batch). A request for an unloaded
model is UNAVAILABLE (REST: 400).

The repository RPCs (RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload) need the admin token as the
`authorization` metadata (`Bearer TOKEN`; UNAUTHENTICATED otherwise) and are PERMISSION_DENIED while the server has
none (REST: 401 and 403; see auth.py).
"""

from __future__ import annotations

import asyncio

import grpc

from ... import __version__
from .. import auth, status, v2
from ..inference import Inference
from . import codec
from . import grpc_service_pb2 as pb
from .grpc_service_pb2_grpc import GRPCInferenceServiceServicer

SERVICE = "inference.GRPCInferenceService"
INFER = f"/{SERVICE}/ModelInfer"  # the `endpoint` of the metrics, as a route's template is for REST
STREAM_INFER = f"/{SERVICE}/ModelStreamInfer"
STREAM_WINDOW = 16  # requests of one stream running at once; the stream's reading waits past that

CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
         413: grpc.StatusCode.INVALID_ARGUMENT, 500: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE}


def code(exc: Exception) -> grpc.StatusCode:
    """The gRPC status of an error in status.V2's table (an unloaded model: UNAVAILABLE, as Triton says it)."""
    if isinstance(exc, v2.ModelUnloaded):
        return grpc.StatusCode.UNAVAILABLE
    return CODES.get(status.V2.status(exc), grpc.StatusCode.UNKNOWN)


class InferenceService(GRPCInferenceServiceServicer):
    """The service on one `Inference` core, the same the REST app uses: the same model versions, queue limit,
    dynamic batcher and statistics."""

    def __init__(self, core: Inference, admin_token: str | None = None):
        self.core, self.admin_token = core, admin_token

    # ---------------------------------------------------------------- health and metadata

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        try:
            self.core.model(request.name, request.version or None)
        except v2.ProtocolError:
            return pb.ModelReadyResponse(ready=False)  # as Triton answers: not ready, not an error
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="fmnist-edge", version=__version__, extensions=list(v2.EXTENSIONS))

    async def ModelMetadata(self, request, context):
        await self._check(context, request.name, request.version)
        return codec.model_metadata(self.core.models.served_versions())

    async def ModelConfig(self, request, context):
        await self._check(context, request.name, request.version)
        batcher = self.core.batcher
        return codec.model_config(self.core.max_batch_delay_us, batcher.preferred if batcher is not None else ())

    async def ModelStatistics(self, request, context):
        try:
            return codec.statistics(self.core.statistics(request.name, request.version or None))
        except status.V2.errors as exc:
            await context.abort(code(exc), str(exc))

    # ---------------------------------------------------------------- the repository extension (admin token)

    async def _authorize(self, context) -> None:
        if self.admin_token is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, auth.OFF)
        given = dict(context.invocation_metadata() or ()).get("authorization")
        if not auth.authorized(given, self.admin_token):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, auth.NEEDED)

    async def RepositoryIndex(self, request, context):
        await self._authorize(context)
        index = pb.RepositoryIndexResponse()
        for row in self.core.models.index(request.ready):
            index.models.add(**row)
        return index

    async def RepositoryModelLoad(self, request, context):
        await self._authorize(context)
        try:
            v2.check_model(request.model_name)
            version = v2.load_version({k: codec.parameter(p) for k, p in request.parameters.items()})
            await asyncio.to_thread(self.core.models.load, version)  # may compile and gate a version: seconds
        except status.V2.errors as exc:
            await context.abort(code(exc), str(exc))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        await self._authorize(context)
        try:
            v2.check_model(request.model_name)
            unknown = sorted(set(request.parameters) - {"unload_dependents"})
            if unknown:
                raise v2.ProtocolError(f"unknown unload parameter {unknown[0]!r}")
            await asyncio.to_thread(self.core.models.unload)
        except status.V2.errors as exc:
            await context.abort(code(exc), str(exc))
        return pb.RepositoryModelUnloadResponse()

    async def _check(self, context, name: str, version: str) -> None:
        try:
            self.core.model(name, version or None)
        except status.V2.errors as exc:
            await context.abort(code(exc), str(exc))

    # ---------------------------------------------------------------- inference

    async def _infer(self, request: pb.ModelInferRequest, endpoint: str) -> pb.ModelInferResponse:
        served, clf = self.core.model(request.model_name, request.model_version or None)  # held to the end
        req = codec.decode_request(request)
        return await self.core.infer(req, served, clf, endpoint, lambda probs: codec.encode_response(
            probs, served, req.id, req.classification, clf.class_names))

    async def ModelInfer(self, request, context):
        try:
            return await self._infer(request, INFER)
        except status.V2.errors as exc:
            await context.abort(code(exc), str(exc))

    async def _stream_one(self, request) -> pb.ModelStreamInferResponse:
        try:
            return pb.ModelStreamInferResponse(infer_response=await self._infer(request, STREAM_INFER))
        except status.V2.errors as exc:
            return pb.ModelStreamInferResponse(error_message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not end the client's stream (REST answers it 500)
            return pb.ModelStreamInferResponse(error_message=f"internal error ({type(exc).__name__}); the server keeps serving")

    async def ModelStreamInfer(self, request_iterator, context):
        window = asyncio.Semaphore(STREAM_WINDOW)
        pending: asyncio.Queue = asyncio.Queue()  # running requests in arrival order; None: no more will come

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await window.acquire()
                    pending.put_nowait(asyncio.ensure_future(self._stream_one(request)))
            finally:
                pending.put_nowait(None)  # the client closed its side (or went away): answer what came, then end

        reader = asyncio.ensure_future(read())
        reader.add_done_callback(lambda t: t.cancelled() or t.exception())  # a client gone away is no server error
        try:
            while (task := await pending.get()) is not None:
                try:
                    yield await task
                finally:
                    window.release()
        finally:
            reader.cancel()
            while not pending.empty():
                task = pending.get_nowait()
                if task is not None:
                    task.cancel()
