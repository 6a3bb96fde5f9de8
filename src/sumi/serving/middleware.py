"""ASGI layers in front of the routes: the body-size cap and the request counters.

Both are plain ASGI (not Starlette's BaseHTTPMiddleware) so that streamed responses pass through
untouched and a client's disconnect still reaches the route.
"""

from __future__ import annotations

import time

from .errors import APIError
from .metrics import ServerMetrics

# Routes whose latency the histogram records (the ones that run the model).
GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/canvas")


class BodyLimit:
    """Answer 413 to a body over `max_bytes` (by its Content-Length, or counted as it arrives),
    before the route sees it. A body under the cap is read here and replayed to the route."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        error = APIError(
            413,
            f"the request body is larger than this server's limit of {self.max_bytes} bytes (--max-body-bytes)",
            code="request_too_large",
        )
        await error.response()({"type": "http"}, _no_receive, send)


async def _no_receive():
    return {"type": "http.disconnect"}


class RequestMetrics:
    """Count every answer by status; time the generation routes from arrival to the last byte."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 0
        timed = scope["method"] == "POST" and scope["path"] in GENERATION_PATHS

        async def watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                seconds = time.perf_counter() - started if timed and status == 200 else None
                self.metrics.count_request(status, seconds)
            await send(message)

        await self.app(scope, receive, watch)
