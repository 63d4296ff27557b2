"""What keeps the service answering: structured JSON errors with specific 4xx codes, a request-size limit and a
bounded inference pool.

Every error body is ``{"error": {"code": ..., "message": ...}}``. Image problems map from
:class:`~lesionlab.data.images.ImageReadError` reasons (see :data:`IMAGE_ERRORS`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lesionlab.data.images import ImageReadError
from lesionlab.inference.quality import NotAssessableError
from lesionlab.serving.metadata import MetadataError

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: ImageReadError reason → (HTTP status, error code). Documented in docs/service.md and the OpenAPI spec.
IMAGE_ERRORS: dict[str, tuple[int, str]] = {
    "empty": (400, "empty_file"),
    "missing": (400, "missing_file"),
    "not_an_image": (415, "unsupported_image"),
    "too_large": (413, "image_too_large"),
    "truncated": (422, "truncated_image"),
    "corrupt": (422, "corrupt_image"),
}
METADATA_FIELDS = {"age", "sex", "site", "metadata"}
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
              415: "unsupported_media_type", 422: "invalid_request", 503: "busy"}


class ApiError(Exception):
    """An error with its HTTP status and code, raised anywhere in a request."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def image_error(exc: ImageReadError) -> ApiError:
    status, code = IMAGE_ERRORS.get(exc.reason, (422, "unreadable_image"))
    return ApiError(status, code, str(exc))


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    parts, code = [], "invalid_request"
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "form")]
        if loc and loc[0] in METADATA_FIELDS:
            code = "invalid_metadata"
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return code, "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, on_error: Callable[[str], None] | None = None) -> None:
    """Map every exception to its JSON error; ``on_error(code)`` is told each error code (the refusal metrics)."""

    def respond(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        if on_error is not None:
            on_error(code)
        return error_response(status, code, message, headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(ImageReadError)
    async def _image_error(request: Request, exc: ImageReadError) -> JSONResponse:
        err = image_error(exc)
        return respond(err.status, err.code, err.message)

    @app.exception_handler(NotAssessableError)
    async def _not_assessable(request: Request, exc: NotAssessableError) -> JSONResponse:
        return respond(422, "not_assessable", str(exc))

    @app.exception_handler(MetadataError)
    async def _metadata_error(request: Request, exc: MetadataError) -> JSONResponse:
        return respond(422, "invalid_metadata", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return respond(422, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return respond(exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail),
                       getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unhandled error on %s %s", request.method, request.url.path)
        return respond(500, "internal_error", f"unexpected server error ({type(exc).__name__}); "
                       "the service is still running")


class BodySizeLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 before the app parses them.

    A declared ``Content-Length`` over the limit is refused at once; otherwise the body is read (up to the limit)
    and replayed to the app, so chunked uploads are bounded too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(send, declared.decode("latin-1"))
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send, f">{self.max_bytes}")
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, size: str) -> None:
        body = json.dumps({"error": {"code": "request_too_large", "message":
                                     f"request body of {size} bytes exceeds the limit of {self.max_bytes:,} bytes "
                                     f"({self.max_bytes / 2**20:g} MiB); send a smaller image"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class InferencePool:
    """At most ``workers`` inferences run at once (in threads); others wait up to ``timeout`` seconds, then 503."""

    def __init__(self, workers: int, timeout: float) -> None:
        self.workers = workers
        self.timeout = timeout
        self._semaphore: asyncio.Semaphore | None = None
        self.waiting = 0
        self.running = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._semaphore is None:  # created lazily, inside the server's event loop
            self._semaphore = asyncio.Semaphore(self.workers)
        self.waiting += 1
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self.timeout)
        except asyncio.TimeoutError:
            raise ApiError(503, "busy", f"all {self.workers} inference workers stayed busy for {self.timeout:g} s; "
                           "retry later", headers={"Retry-After": "5"}) from None
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self.running -= 1
            self._semaphore.release()
