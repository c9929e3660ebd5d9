"""The FastAPI application: ``POST /v1/answer``, ``GET /healthz``, ``GET /readyz`` and the page at ``/``.

The pipeline is loaded in a background thread at startup (``/readyz`` answers 503 until it is ready),
or given ready-made. Every request is logged as one JSON line (id, method, path, status, latency,
batch size); its id is echoed in the ``X-Request-ID`` header.
"""

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from ragmodels.pipeline import RagPipeline

from .batcher import DynamicBatcher
from .logs import logger
from .schemas import AnswerResponse, request_model
from .settings import ServerSettings

PAGE = Path(__file__).parent / "static" / "index.html"


class _State:
    """The pipeline once loaded (or why it failed), and the batcher that feeds it."""

    def __init__(self) -> None:
        self.pipeline: RagPipeline | None = None
        self.error: str | None = None
        self.batcher: DynamicBatcher | None = None

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

    app = FastAPI(title="ragmodels", summary="Retrieval-augmented question answering", lifespan=lifespan)
    app.state.rag = state

    @app.middleware("http")
    async def log_requests(request: Request, call_next):
        request.state.id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.batch_size = None
        start = time.perf_counter()
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
        errors = err.errors()
        status = 400 if any(e["type"] == "json_invalid" for e in errors) else 422
        messages = [_describe(e) for e in errors]
        return JSONResponse({"detail": "; ".join(messages), "errors": jsonable_encoder(errors)}, status_code=status)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: 200 once the model and its index are loaded, 503 while loading or after a failed load."""
        if state.pipeline is not None:
            p = state.pipeline
            return JSONResponse({"status": "ready", "head": p.head, "passages": p.num_passages,
                                 "n_docs": p.model.config.n_docs, "device": str(p.device)})
        status = "failed" if state.error else "loading"
        return JSONResponse({"status": status, "error": state.error}, status_code=503)

    @app.post("/v1/answer", response_model=AnswerResponse,
              responses={400: {"description": "malformed JSON"}, 503: {"description": "model not loaded yet"},
                         504: {"description": "timed out"}})
    async def answer(body: AnswerRequest, request: Request):
        """Answer questions with the passages used; requests with equal options are batched together."""
        pipeline = state.pipeline
        if pipeline is None:
            return JSONResponse({"detail": "The model is not loaded yet; see GET /readyz."}, status_code=503)
        limit = min(settings.max_n_docs, pipeline.num_passages)
        if body.n_docs is not None and body.n_docs > limit:
            return JSONResponse({"detail": f"n_docs={body.n_docs} is more than the {limit} this server allows "
                                           f"(knowledge base: {pipeline.num_passages} passages)."}, status_code=422)
        try:
            results, batch_size = await asyncio.wait_for(
                state.batcher.submit(body.questions, body.options()), settings.request_timeout_s
            )
        except TimeoutError:
            return JSONResponse({"detail": f"No answer within {settings.request_timeout_s:g} s; try fewer questions, "
                                           "fewer beams or fewer new tokens."}, status_code=504)
        except ValueError as err:
            return JSONResponse({"detail": str(err)}, status_code=400)
        request.state.batch_size = batch_size
        return {"answers": [{"question": q, **a.to_dict()} for q, a in zip(body.questions, results)]}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return app


def _describe(error: dict) -> str:
    """'body.questions.0: String should have at most 1000 characters' from a pydantic error."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    if error["type"] == "json_invalid":
        return f"Malformed JSON body ({error.get('ctx', {}).get('error', 'cannot be parsed')})"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    return f"{where}: {error['msg']}"
