"""Operations view of the service: Prometheus metrics (``GET /metrics``, prometheus-client) and a JSON access log.

:class:`ServiceMetrics` owns one :class:`~prometheus_client.CollectorRegistry` per app (no process-global state, so
two apps in one process keep separate counts). :class:`RequestMetrics` is the ASGI middleware that counts requests
and times them by route template and status, and writes the JSON access log when asked.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "lesionlab.access"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)


class ServiceMetrics:
    """The service's Prometheus metrics, all prefixed ``lesionlab_``; ``render()`` is the ``/metrics`` body."""

    def __init__(self, model: dict[str, str] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # CPU seconds, resident memory, open files of this process
        self.requests = Counter("lesionlab_http_requests", "HTTP requests by method, route template and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("lesionlab_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("lesionlab_http_requests_in_flight", "HTTP requests being answered", registry=r)
        self.batch_size = Histogram("lesionlab_inference_batch_size", "images per model forward batch (dynamic "
                                    "batching gathers concurrent requests)", buckets=BATCH_BUCKETS, registry=r)
        self.queue_wait = Histogram("lesionlab_inference_queue_wait_seconds", "time an image waited for an "
                                    "inference worker", buckets=WAIT_BUCKETS, registry=r)
        self.inference = Histogram("lesionlab_inference_batch_seconds", "model time per batch (forward passes, "
                                   "TTA views, OOD scoring)", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("lesionlab_inference_queue_depth", "images waiting for an inference worker",
                                 registry=r)
        self.refusals = Counter("lesionlab_refusals", "requests or batch images refused, by error code",
                                ["code"], registry=r)
        self.not_assessable = Counter("lesionlab_not_assessable", "images the input quality gate refused "
                                      "(422 not_assessable)", registry=r)
        self.ood = Counter("lesionlab_ood", "images flagged out of distribution (no triage priority given)",
                           registry=r)
        self.predictions = Counter("lesionlab_predictions", "predictions by top-1 class (the predicted class mix)",
                                   ["label"], registry=r)
        self.priority = Counter("lesionlab_triage_priority", "predictions by triage priority (1 = refer; none = "
                                "not assessable); priority-1 rate = rate(priority=\"1\") / rate(all)",
                                ["priority"], registry=r)
        self.escalated = Counter("lesionlab_cascade_escalated", "images the test-time cascade sent on to the full "
                                 "TTA policy (tta=cascade); escalation rate = rate(escalated) / rate(predictions)",
                                 registry=r)
        self.ready = Gauge("lesionlab_ready", "1 when the model is loaded and the service takes predictions",
                           registry=r)
        if model:
            Info("lesionlab_model", "the served model", registry=r).info(model)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def refused(self, code: str) -> None:
        self.refusals.labels(code).inc()
        if code == "not_assessable":
            self.not_assessable.inc()

    def observe_predictions(self, predictions: Iterable[Any]) -> None:
        """Class mix, triage priorities and OOD flags of answered predictions (:class:`Prediction` objects)."""
        for p in predictions:
            self.predictions.labels(p.label).inc()
            self.priority.labels("none" if p.triage_priority is None else str(p.triage_priority)).inc()
            if p.ood:
                self.ood.inc()

    def observe_batch(self, size: int, waits: Iterable[float], seconds: float) -> None:
        self.batch_size.observe(size)
        for w in waits:
            self.queue_wait.observe(w)
        self.inference.observe(seconds)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/predict``), so labels stay few; ``unmatched`` for 404s."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request; with ``access_log`` write one JSON line per request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, access_log: bool = False) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - start
            method, route = scope.get("method", ""), route_template(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route, str(status)).observe(seconds)
            if self.access_log:
                self.logger.info(access_record(scope, route, status, seconds))


def access_record(scope: Scope, route: str, status: int, seconds: float) -> str:
    """One access-log line as JSON: time, client, method, path, route, query, status, duration."""
    client = scope.get("client") or ("", 0)
    return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "client": f"{client[0]}:{client[1]}",
                       "method": scope.get("method"), "path": scope.get("path"), "route": route,
                       "query": scope.get("query_string", b"").decode("latin-1"), "status": status,
                       "duration_ms": round(seconds * 1e3, 2)})


def configure_access_log(kind: str) -> None:
    """Send the JSON access log (``kind == "json"``) to stderr, unformatted; called by ``serve``, never at import."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if kind == "json" and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


__all__ = ["ACCESS_LOGGER", "CONTENT_TYPE", "RequestMetrics", "ServiceMetrics", "access_record",
           "configure_access_log", "route_template"]
