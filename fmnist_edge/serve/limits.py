"""The server's limits in one place: the defaults `app.create_app` and `server.config` take, and what the handlers enforce."""

from __future__ import annotations

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # 10 MiB: a phone photo is 2-5 MB
BODY_TIMEOUT_S = 30.0  # an upload whose body has not all arrived by then is answered 408 and its connection closed
MAX_QUEUE = 64  # requests waiting for or running in the worker threads; past that: 503 and Retry-After
DRAIN_BYTES = 64 * 1024 * 1024  # a refused upload is read (and dropped) up to this much, so the client sees the 413
DRAIN_S = 10.0
INLINE_BATCH = 4  # FP32 batches up to this size run on the event loop (see handlers.Service.v2_infer)
INLINE_JSON = 64 * 1024  # larger request bodies are parsed in a worker thread, off the event loop
HEADER_TIMEOUT_S = 10.0  # a request's headers must arrive within this (see server.py)
MAX_CONNECTIONS = 512  # open connections; past that, new requests are answered 503 at once
