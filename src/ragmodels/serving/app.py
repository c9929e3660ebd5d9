"""The FastAPI application: ``POST /v1/answer``, ``GET /healthz``, ``GET /readyz`` and the page at ``/``.

The pipeline is loaded in a background thread at startup (``/readyz`` answers 503 until it is ready),
or given ready-made. Every request is logged as one JSON line (id, method, path, status, latency,
batch size); its id is echoed in the ``X-Request-ID`` header.

Bounds (ServerSettings): request bodies past ``max_body_bytes`` get 413 (``body_limit``); more than
``max_in_flight`` questions admitted at once, 503 with ``Retry-After``; errors are small plain-words JSON
(``errors``). With a ``token``, ``/v1/answer`` and ``/readyz`` need ``Authorization: Bearer <token>``.
No interactive docs page (FastAPI's loads its scripts from a CDN); the schema is at ``/openapi.json``.
"""

import asyncio
import hmac
import re
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from ragmodels.pipeline import RagPipeline

from .batcher import DynamicBatcher
from .body_limit import BodyLimit
from .errors import AsciiJSONResponse, error_response, validation_response
from .logs import logger
from .schemas import AnswerResponse, request_model
from .settings import ServerSettings

PAGE = Path(__file__).parent / "static" / "index.html"
# the page runs only its own inline script and styles, and talks only to this server
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PROTECTED = ("/v1/", "/readyz")  # paths behind the token, when there is one
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a client's X-Request-ID is kept only if it looks like this


class _State:
    """The pipeline once loaded (or why it failed), and the batcher that feeds it."""

    def __init__(self) -> None:
        self.pipeline: RagPipeline | None = None
        self.error: str | None = None
        self.batcher: DynamicBatcher | None = None
        self.in_flight = 0  # questions admitted and not yet answered

    def load(self, loader: Callable[[], RagPipeline]) -> None:
        try:
            self.pipeline = loader()
        except Exception as err:  # noqa: BLE001 - reported by /readyz and the log
            self.error = f"{type(err).__name__}: {err}"
            logger.exception("loading the model failed", extra={"fields": {"event": "load_failed"}})


def create_app(pipeline: RagPipeline | Callable[[], RagPipeline], settings: ServerSettings | None = None) -> FastAPI:
    """The server's app over a ready ``pipeline`` or a function that loads one (run in a thread at startup)."""
    settings = settings or ServerSettings()
    state = _State()
    AnswerRequest = request_model(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher = DynamicBatcher(
            lambda questions, options: state.pipeline.answer(questions, options),
            settings.max_batch_size, settings.max_wait_ms,
        )
        state.batcher.start()
        if isinstance(pipeline, RagPipeline):
            state.pipeline = pipeline
        else:
            threading.Thread(target=state.load, args=(pipeline,), name="ragmodels-load", daemon=True).start()
        yield
        await state.batcher.close()

    app = FastAPI(title="ragmodels", summary="Retrieval-augmented question answering", lifespan=lifespan,
                  docs_url=None, redoc_url=None, default_response_class=AsciiJSONResponse)
    app.state.rag = state
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, drain_bytes=settings.drain_bytes)
    retry = {"Retry-After": str(settings.retry_after_s)}

    @app.middleware("http")
    async def log_requests(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        request.state.id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request.state.batch_size = None
        start = time.perf_counter()
        guarded = settings.token is not None and request.url.path.startswith(PROTECTED)
        if guarded and not _authorized(request, settings.token):
            response = error_response(401, "This server needs an access token: send the header "
                                           "'Authorization: Bearer <token>' (the token given to ragmodels serve).",
                                      {"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.id
        fields = {"event": "request", "id": request.state.id, "method": request.method, "path": request.url.path,
                  "status": response.status_code, "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                  "batch_size": request.state.batch_size}
        logger.info("request", extra={"fields": fields})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        """Malformed JSON -> 400; a body that breaks the schema or the limits -> 422. One readable line each."""
        return validation_response(err.errors(), AnswerRequest.model_fields)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: 200 once the model and its index are loaded, 503 while loading or after a failed load."""
        if state.pipeline is not None:
            p = state.pipeline
            return AsciiJSONResponse({"status": "ready", "head": p.head, "passages": p.num_passages,
                                      "n_docs": p.model.config.n_docs, "device": str(p.device)})
        status = "failed" if state.error else "loading"
        return AsciiJSONResponse({"status": status, "error": state.error}, status_code=503,
                                 headers=None if state.error else retry)

    @app.post("/v1/answer", response_model=AnswerResponse,
              responses={400: {"description": "malformed JSON or an unreadable question"},
                         401: {"description": "no or wrong access token (when the server has one)"},
                         413: {"description": "request body too large"},
                         503: {"description": "model not loaded yet, or too many questions in flight (Retry-After)"},
                         504: {"description": "timed out"}})
    async def answer(body: AnswerRequest, request: Request):
        """Answer questions with the passages used; requests with equal options are batched together."""
        pipeline = state.pipeline
        if pipeline is None:
            return error_response(503, "The model is not loaded yet; see GET /readyz.", retry)
        limit = min(settings.max_n_docs, pipeline.num_passages)
        if body.n_docs is not None and body.n_docs > limit:
            return error_response(422, f"n_docs={body.n_docs} is more than the {limit} this server allows "
                                       f"(knowledge base: {pipeline.num_passages} passages).")
        if state.in_flight + len(body.questions) > settings.max_in_flight:
            return error_response(503, f"The server is busy ({state.in_flight} questions in flight, at most "
                                       f"{settings.max_in_flight}); retry after {settings.retry_after_s} s.", retry)
        state.in_flight += len(body.questions)
        try:
            results, batch_size = await asyncio.wait_for(
                state.batcher.submit(body.questions, body.options()), settings.request_timeout_s
            )
        except TimeoutError:
            return error_response(504, f"No answer within {settings.request_timeout_s:g} s; try fewer questions, "
                                       "fewer beams or fewer new tokens.")
        except ValueError as err:
            return error_response(400, str(err))
        finally:
            state.in_flight -= len(body.questions)
        request.state.batch_size = batch_size
        return {"answers": [{"question": q, **a.to_dict()} for q, a in zip(body.questions, results)]}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Content-Security-Policy": PAGE_POLICY})

    return app


def _authorized(request: Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
