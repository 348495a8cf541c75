"""Prometheus metrics of one server (`GET /metrics`), in a registry of its own, with prometheus-client.

    fmnist_edge_requests_total{endpoint, method, status}        requests answered
    fmnist_edge_request_failures_total{endpoint, status}        the subset answered with 4xx/5xx
    fmnist_edge_request_duration_seconds{endpoint}              whole request, histogram
    fmnist_edge_preprocess_duration_seconds{endpoint}           decode + preprocessing of the images, histogram
    fmnist_edge_inference_duration_seconds{endpoint}            the model call, histogram
    fmnist_edge_requests_in_flight                              requests being handled now
    fmnist_edge_model_info{model, version, precision, device, inference_precision}   1 for the model served
    fmnist_edge_uptime_seconds                                  since the app was created
    fmnist_edge_model_refused{version, reason}                  1 per version a gate or a canary refused
    fmnist_edge_canary_requests{version, outcome}               a running canary's requests (ok, failed)

`endpoint` is the route's template (e.g. /v2/models/{name}/infer), never the raw path, so that clients
cannot grow the label set; paths that match no route count as "other".
"""

from __future__ import annotations

import time

# seconds: a model call is ~0.1-2 ms, a 12 MP photo ~30 ms, a batch of 64 photos ~0.2 s
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The metrics of one app; `observe_*` are cheap enough to call on every request."""

    def __init__(self, classifier, version: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("fmnist_edge_requests", "Requests answered", ["endpoint", "method", "status"], registry=r)
        self.failures = Counter("fmnist_edge_request_failures", "Requests answered with a 4xx or 5xx status",
                                ["endpoint", "status"], registry=r)
        self.duration = Histogram("fmnist_edge_request_duration_seconds", "Whole request, from its arrival to the "
                                  "last byte of the answer", ["endpoint"], buckets=BUCKETS, registry=r)
        self.preprocess = Histogram("fmnist_edge_preprocess_duration_seconds", "Decoding and preprocessing of the "
                                    "request's images", ["endpoint"], buckets=BUCKETS, registry=r)
        self.inference = Histogram("fmnist_edge_inference_duration_seconds", "The model call",
                                   ["endpoint"], buckets=BUCKETS, registry=r)
        self.in_flight = Gauge("fmnist_edge_requests_in_flight", "Requests being handled now", registry=r)
        self.info = Gauge("fmnist_edge_model_info", "The model served (value 1)",
                          ["model", "version", "precision", "device", "inference_precision"], registry=r)
        self.set_model(version, classifier)
        started = time.monotonic()
        uptime = Gauge("fmnist_edge_uptime_seconds", "Seconds since the server started", registry=r)
        uptime.set_function(lambda: time.monotonic() - started)

    def set_model(self, version: str, classifier) -> None:
        """The model now served: one series of fmnist_edge_model_info, the previous one removed."""
        self.info.clear()
        self.info.labels(model="fmnist", version=version, precision=classifier.precision, device=classifier.device,
                         inference_precision=str(classifier.inference_precision)).set(1)

    def watch(self, models) -> None:
        """Report `models`' refused versions and running canary (a ServedModel) at each scrape."""
        from prometheus_client.core import GaugeMetricFamily

        class Versions:
            def collect(self):
                refused = GaugeMetricFamily("fmnist_edge_model_refused", "Versions refused by a gate or a canary "
                                            "(value 1; tried again only when they change)", labels=["version", "reason"])
                for version, reason in models.refused().items():
                    refused.add_metric([version, reason], 1)
                canary = GaugeMetricFamily("fmnist_edge_canary_requests", "Requests the running canary answered",
                                           labels=["version", "outcome"])
                trial = models.canary()
                if trial is not None:
                    canary.add_metric([trial["version"], "ok"], trial["requests"] - trial["errors"])
                    canary.add_metric([trial["version"], "failed"], trial["errors"])
                return [refused, canary]

        self.registry.register(Versions())

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, method=method, status=str(status)).inc()
        if status >= 400:
            self.failures.labels(endpoint=endpoint, status=str(status)).inc()
        self.duration.labels(endpoint=endpoint).observe(seconds)

    def observe_model(self, endpoint: str, prepare_s: float | None, infer_s: float) -> None:
        if prepare_s is not None:
            self.preprocess.labels(endpoint=endpoint).observe(prepare_s)
        self.inference.labels(endpoint=endpoint).observe(infer_s)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app, metrics: Metrics, routes):
        self.app, self.metrics, self.routes = app, metrics, routes

    def _endpoint(self, scope) -> str:
        from starlette.routing import Match

        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "other") or "other"
        return "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = self._endpoint(scope)
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        scope.setdefault("state", {})["endpoint"] = endpoint
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe_request(endpoint, scope["method"], status["code"], time.perf_counter() - t0)
