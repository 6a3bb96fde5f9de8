"""`create_app(model, tokenizer, settings)`: the OpenAI-compatible HTTP API over a scheduler.

Routes: POST /v1/completions, POST /v1/chat/completions (plain or `stream: true` as server-sent
events ending in `data: [DONE]`), POST /v1/canvas (the canvas as it denoises, see `canvas.py`),
GET /v1/models, GET /health, GET /metrics (Prometheus text), and the page: `/` and `/static/`.
Every failure a client can cause is an OpenAI-style error body (`errors.py`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..batch_invariance import make_batch_invariant
from ..denoising import DenoisingEngine
from .canvas import CanvasFrames
from .errors import APIError
from .jobs import JobBuilder, Prompt
from .metrics import ServerMetrics
from .middleware import BodyLimit, RequestMetrics
from .protocol import (
    CanvasRequest,
    ChatRequest,
    CompletionRequest,
    SamplingFields,
    chat_chunk,
    chat_object,
    completion_chunk,
    completion_object,
    new_id,
    parse_body,
    sse,
    usage,
    usage_chunk,
)
from .scheduler import QueueFull, Scheduler, SchedulerStopped, Ticket
from .settings import ServeSettings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# How often a waiting handler checks that its client is still there.
DISCONNECT_POLL_S = 0.25


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


@dataclass
class Run:
    """One request on its way through the scheduler."""

    id: str
    ticket: Ticket
    job: Any
    seed: int
    prompt: Prompt
    frames: CanvasFrames | None


class Service:
    """What the routes share: the model's job builder, the scheduler and the counters."""

    def __init__(self, model, tokenizer, settings: ServeSettings):
        model.eval()
        self.settings, self.model = settings, model
        # {"in->out dtype": (row_block, row_multiple)}: probed once, under the threads that serve
        self.gemm_plan = make_batch_invariant(model) if settings.batch_invariant else {}
        if not settings.batch_invariant and hasattr(model, "set_batch_invariant"):
            model.set_batch_invariant(None)
        self.builder = JobBuilder(model, tokenizer, settings)
        self.metrics = ServerMetrics()
        self.scheduler = Scheduler(
            lambda: DenoisingEngine(model),
            max_batch_rows=settings.max_batch_rows,
            max_queue=settings.max_queue,
            metrics=self.metrics,
        )
        self.created = int(time.time())

    def start(
        self, req: SamplingFields, prompt: Prompt, *, max_tokens: int | None, canvas_every: int | None, prefix: str
    ) -> Run:
        """Prepare the request's job and queue it (429 when the queue is full)."""
        ticket = Ticket(loop=asyncio.get_running_loop(), num_rows=req.n)
        frames: list[CanvasFrames] = []
        callback = (lambda info: frames[0](info)) if canvas_every else None
        job, seed = self.builder.prepare(req, prompt, max_tokens=max_tokens, progress_callback=callback)
        if canvas_every:
            # (a row may use every column its job shows a progress callback: a growing row more than its budget)
            width = getattr(job, "frame_width", job.prompt_len) - job.prompt_len
            frames.append(
                CanvasFrames(
                    job.canvas,
                    job.prompt_len,
                    job.budgets,
                    canvas_every,
                    lambda frame: ticket.post("frame", frame),
                    width=width,
                )
            )
        ticket.job = job
        try:
            self.scheduler.submit(ticket)
        except QueueFull as e:
            raise APIError(
                429,
                f"the server is busy: {e}; retry later",
                code="queue_full",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from None
        except SchedulerStopped as e:
            raise APIError(503, f"the server is not accepting requests: {e}", code="unavailable") from None
        return Run(new_id(prefix), ticket, job, seed, prompt, frames[0] if frames else None)

    async def events(self, run: Run, request: Request) -> AsyncIterator[tuple[str, Any]]:
        """The run's events up to and including its result; an error event raises APIError. The
        run is cancelled if the caller stops listening (client gone, stream closed)."""
        try:
            while True:
                kind, payload = await self._next_event(run.ticket, request)
                if kind == "error":
                    raise _engine_error(payload)
                if kind == "result":
                    self.metrics.count_answer(int((payload.lengths - run.job.prompt_len).sum()))
                yield kind, payload
                if kind == "result":
                    return
        finally:
            self.scheduler.cancel(run.ticket)  # a no-op once finished

    async def result(self, run: Run, request: Request):
        async for kind, payload in self.events(run, request):
            if kind == "result":
                return payload
        raise ClientGone()

    @staticmethod
    async def _next_event(ticket: Ticket, request: Request) -> tuple[str, Any]:
        while True:
            try:
                return await asyncio.wait_for(ticket.events.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    raise ClientGone() from None

    def extra(self, run: Run, result) -> dict:
        """sumi's fields of a response: how to reproduce it and what it cost. Per choice (in index
        order): `budgets`, its final answer budget (the one the canvas sized itself to, with
        auto_length / grow / shrink), `positions`, the canvas positions it fed to the forwards, and
        with auto_length `auto_budgets`, the budgets the probe chose."""
        out = {
            "seed": run.seed,
            "num_forwards": int(result.num_forwards or 0),
            "steps": run.job.num_steps,
            "budgets": [int(b) for b in result.budgets],
            "positions": [int(p) for p in result.row_positions],
        }
        if result.auto_budgets is not None:
            out["auto_budgets"] = [int(b) for b in result.auto_budgets]
        return out

    def canvas_rows(self, rows: list[dict]) -> list[dict]:
        """Frame rows with each id's text added."""
        return [dict(row, tokens=self.builder.codec.pieces(row["ids"])) for row in rows]


def _engine_error(exc: BaseException) -> APIError:
    if isinstance(exc, SchedulerStopped):
        return APIError(503, f"the server is not accepting requests: {exc}", code="unavailable")
    return APIError(500, f"the model failed on this request ({type(exc).__name__}: {exc})", code="engine_error")


def create_app(model, tokenizer, settings: ServeSettings | None = None) -> FastAPI:
    """The server for `model` (eval mode, any device) and its tokenizer (None: byte-level fallback)."""
    settings = settings or ServeSettings()
    service = Service(model, tokenizer, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.scheduler.start()
        try:
            yield
        finally:
            service.scheduler.stop()

    app = FastAPI(title="sumi", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    _install_error_handlers(app)
    key_check = _key_check(settings.api_key)
    app.include_router(_api_routes(service), dependencies=[Depends(key_check)])
    _add_plain_routes(app, service, key_check)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    return app


def _key_check(api_key: str | None):
    async def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("latin-1"), api_key.encode("utf-8")
        ):
            raise APIError(
                401, "missing or wrong API key: send the header `Authorization: Bearer <key>`", code="invalid_api_key"
            )

    return check


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        message = {404: f"no route {where}", 405: f"{where}: method not allowed"}.get(exc.status_code, str(exc.detail))
        return APIError(
            exc.status_code, message, code="not_found" if exc.status_code == 404 else None, headers=exc.headers
        ).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return APIError(422, f"invalid request: {exc.errors()[0].get('msg', exc)}").response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return APIError(500, f"internal error ({type(exc).__name__})", code="internal_error").response()


def _add_plain_routes(app: FastAPI, service: Service, key_check) -> None:
    """/health and the page stay open (load-balancer probes; the page asks for the key itself);
    /metrics (traffic numbers) needs the key when the server has one, as Prometheus can send it."""

    @app.get("/health")
    async def health() -> JSONResponse:
        s = service.scheduler
        body = {
            "status": "ok" if s.alive else "unavailable",
            "model": service.settings.model_name,
            "live_rows": s.live_rows,
            "queue_depth": s.queue_depth,
        }
        return JSONResponse(body, status_code=200 if s.alive else 503)

    @app.get("/metrics", dependencies=[Depends(key_check)])
    async def metrics() -> PlainTextResponse:
        s = service.scheduler
        text = service.metrics.render(s.queue_depth, s.live_rows, service.settings.max_batch_rows)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/")
    async def page() -> Response:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise APIError(404, "this installation has no page (src/sumi/serving/static/index.html)")
        return FileResponse(index)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _api_routes(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1")
    builder, name = service.builder, service.settings.model_name

    def model_card() -> dict:
        return {"id": name, "object": "model", "created": service.created, "owned_by": "sumi"}

    @router.get("/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @router.get("/models/{model_id:path}")
    async def one_model(model_id: str) -> dict:
        if model_id != name:
            raise APIError(
                404,
                f"the model {model_id!r} does not exist; this server serves {name!r}",
                param="model",
                code="model_not_found",
            )
        return model_card()

    async def answer(run, prompt, request: Request, make_object) -> Response:
        """A finished (non-streamed) request as the OpenAI object `make_object` builds; 499 when the
        client hung up first."""
        try:
            result = await service.result(run, request)
        except ClientGone:
            return Response(status_code=499)
        choices, tokens = builder.choices(run.job, result)
        return JSONResponse(
            make_object(run.id, name, choices, usage(len(prompt.ids), tokens), service.extra(run, result))
        )

    @router.post("/completions")
    async def completions(request: Request) -> Response:
        req = parse_body(await request.body(), CompletionRequest)
        builder.check_fields(req, max_tokens=req.max_tokens)
        prompt = builder.completion_prompt(req.prompt)
        canvas_every = req.canvas_every if req.stream and req.sumi_canvas else None
        run = service.start(req, prompt, max_tokens=req.max_tokens, canvas_every=canvas_every, prefix="cmpl")
        if req.stream:
            return _sse(_completion_stream(service, run, req, request))
        return await answer(run, prompt, request, completion_object)

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req = parse_body(await request.body(), ChatRequest)
        max_tokens = _chat_max_tokens(req)
        builder.check_fields(req, max_tokens=max_tokens)
        prompt = builder.chat_prompt(req.messages)
        run = service.start(req, prompt, max_tokens=max_tokens, canvas_every=None, prefix="chatcmpl")
        if req.stream:
            return _sse(_chat_stream(service, run, req, request))
        return await answer(run, prompt, request, chat_object)

    @router.post("/canvas")
    async def canvas(request: Request) -> Response:
        req = parse_body(await request.body(), CanvasRequest)
        if (req.prompt is None) == (req.messages is None):
            raise APIError(400, "send exactly one of prompt (a completion) or messages (a chat)", param="prompt")
        builder.check_fields(req, max_tokens=req.max_tokens)
        if req.messages is not None:
            prompt = builder.chat_prompt(req.messages)
        else:
            prompt = builder.completion_prompt(req.prompt)
        run = service.start(req, prompt, max_tokens=req.max_tokens, canvas_every=req.canvas_every, prefix="canvas")
        return _sse(_canvas_stream(service, run, request))

    return router


def _chat_max_tokens(req: ChatRequest) -> int | None:
    if (
        req.max_tokens is not None
        and req.max_completion_tokens is not None
        and req.max_tokens != req.max_completion_tokens
    ):
        raise APIError(
            400, "max_tokens and max_completion_tokens disagree; send one of them", param="max_completion_tokens"
        )
    return req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens


def _sse(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def _guarded(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """A stream that reports an error as an OpenAI error event (the status line is already sent)."""
    try:
        async for chunk in events:
            yield chunk
    except APIError as e:
        yield sse(e.body())
    except ClientGone:
        return
    yield sse("[DONE]")


async def _completion_stream(
    service: Service, run: Run, req: CompletionRequest, request: Request
) -> AsyncIterator[str]:
    async def chunks():
        name = service.settings.model_name
        if run.frames is not None:
            yield sse(
                dict(
                    completion_chunk(run.id, name, 0, "", None),
                    sumi_canvas={
                        "step": 0,
                        "num_steps": run.job.num_steps,
                        "provisional": True,
                        "rows": service.canvas_rows(run.frames.initial_rows()),
                    },
                )
            )
        async for kind, payload in service.events(run, request):
            if kind == "frame":
                frame = dict(payload, provisional=True, rows=service.canvas_rows(payload["rows"]))
                yield sse(dict(completion_chunk(run.id, name, 0, "", None), sumi_canvas=frame))
                continue
            choices, tokens = service.builder.choices(run.job, payload)
            extra = service.extra(run, payload)  # on each choice's last chunk and the usage chunk
            for c in choices:
                yield sse(completion_chunk(run.id, name, c["index"], c["text"], None))
                yield sse(dict(completion_chunk(run.id, name, c["index"], "", c["finish_reason"]), sumi=extra))
            if req.stream_options is not None and req.stream_options.include_usage:
                use = usage(len(run.prompt.ids), tokens)
                yield sse(dict(usage_chunk(run.id, name, "text_completion", use), sumi=extra))

    async for chunk in _guarded(chunks()):
        yield chunk


async def _chat_stream(service: Service, run: Run, req: ChatRequest, request: Request) -> AsyncIterator[str]:
    async def chunks():
        name = service.settings.model_name
        for i in range(req.n):
            yield sse(chat_chunk(run.id, name, i, {"role": "assistant", "content": ""}, None))
        async for _, result in service.events(run, request):  # (no frames: the result only)
            choices, tokens = service.builder.choices(run.job, result)
            extra = service.extra(run, result)  # on each choice's last chunk and the usage chunk
            for c in choices:
                yield sse(chat_chunk(run.id, name, c["index"], {"content": c["text"]}, None))
                yield sse(dict(chat_chunk(run.id, name, c["index"], {}, c["finish_reason"]), sumi=extra))
            if req.stream_options is not None and req.stream_options.include_usage:
                use = usage(len(run.prompt.ids), tokens)
                yield sse(dict(usage_chunk(run.id, name, "chat.completion.chunk", use), sumi=extra))

    async for chunk in _guarded(chunks()):
        yield chunk


async def _canvas_stream(service: Service, run: Run, request: Request) -> AsyncIterator[str]:
    async def chunks():
        yield sse(
            {
                "object": "sumi.canvas.start",
                "id": run.id,
                "num_steps": run.job.num_steps,
                "prompt": service.builder.codec.decode(run.prompt.ids),
                "rows": service.canvas_rows(run.frames.initial_rows()),
            }
        )
        async for kind, payload in service.events(run, request):
            if kind == "frame":
                yield sse(
                    {
                        "object": "sumi.canvas",
                        "id": run.id,
                        **payload,
                        "provisional": True,
                        "rows": service.canvas_rows(payload["rows"]),
                    }
                )
                continue
            choices, tokens = service.builder.choices(run.job, payload)
            yield sse(
                {
                    "object": "sumi.canvas.final",
                    "id": run.id,
                    "choices": choices,
                    "usage": usage(len(run.prompt.ids), tokens),
                    "num_forwards": int(payload.num_forwards or 0),
                    "sumi": service.extra(run, payload),
                }
            )

    async for chunk in _guarded(chunks()):
        yield chunk
