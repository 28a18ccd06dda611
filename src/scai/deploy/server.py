"""The computing-centre HTTP server (FastAPI + uvicorn).

Endpoints (all JSON replies; errors are ``{"detail": "..."}`` with a 4xx status):

* ``POST /v1/predict`` -- raw spectra as JSON ``{"spectra": [[...]], "axis": [...]?, "policy":
  ..., "budget": ..., "threshold": ...}`` or as a ``.npy`` body (``Content-Type:
  application/x-npy``, options as query parameters);
* ``POST /v1/continue?stage=k`` -- features of stage ``k`` as ``.npy`` (float32 or float16);
  the centre runs stages ``k+1 .. L-1``;
* ``GET /v1/health``, ``GET /v1/model`` (the manifest), and FastAPI's ``/openapi.json`` and
  ``/docs``.

Bearer-token authentication (constant-time comparison) guards predict, continue and model when a
token is configured; health stays open for load balancers. Bodies are limited in size (413),
read under a timeout (408), and answered under a timeout (504). Requests are micro-batched
(:mod:`scai.deploy.batching`); the model runs in one worker thread. Nothing is unpickled.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from scai.deploy.batching import MicroBatcher, QueueFullError
from scai.deploy.payloads import (
    FEATURE_DTYPES,
    NPY_CONTENT_TYPE,
    SPECTRA_DTYPES,
    PayloadError,
    decode_npy,
    parse_json_body,
    parse_options,
    parse_stage,
    spectra_from_json,
)
from scai.deploy.service import Job, ModelService
from scai.errors import ConfigError

__all__ = ["ServerConfig", "create_app", "serve", "read_token_file"]

log = logging.getLogger("scai.deploy.server")


@dataclass(frozen=True)
class ServerConfig:
    """Limits and batching of the server."""

    max_body_bytes: int = 8 << 20  # largest request body; larger -> 413
    max_rows: int = 1024  # most spectra (or feature rows) in one request; more -> 413
    max_batch_rows: int = 256  # micro-batch: stop gathering at this many rows
    batch_wait_ms: float = 3.0  # micro-batch: gather for this long after the first request
    max_queue: int = 2048  # requests allowed to wait for the model; more -> 503
    body_timeout_s: float = 10.0  # reading the body takes longer -> 408
    request_timeout_s: float = 30.0  # the model does not answer in time -> 504
    threads: int | None = None  # PyTorch intra-op threads (None: PyTorch's default)


class ExitResult(BaseModel):
    """One spectrum's answer (documentation of the reply; see ``ModelService.format``)."""

    prediction: str
    class_index: int
    exit: int  # 0-based exit that answered
    confidence: float
    macs: float  # MACs spent by this server on the spectrum
    flagged: bool  # anytime: exit 1 alone exceeded the budget
    probabilities: list[float]


class PredictResponse(BaseModel):
    """Reply of ``/v1/predict`` and ``/v1/continue``."""

    model_sha256: str | None
    n: int
    results: list[ExitResult]
    warnings: list[str] | None = None


def read_token_file(path: str | Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace removed); refuses an empty file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--token-file {p}: no such file")
    token = p.read_text().strip()
    if not token:
        raise ConfigError(f"--token-file {p}: the file is empty; put the token on one line")
    return token


_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["spectra"],
                    "properties": {
                        "spectra": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                        "axis": {"type": "array", "items": {"type": "number"}},
                        "policy": {"type": "string", "enum": ["full", "anytime", "threshold", "batch"]},
                        "budget": {"type": "string", "example": "150k"},
                        "threshold": {"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]},
                    },
                }
            },
            NPY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {"name": "policy", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "budget", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "threshold", "in": "query", "required": False, "schema": {"type": "string"}},
    ],
}
_CONTINUE_BODY = {
    "requestBody": {"required": True, "content": {NPY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
    "parameters": [
        {"name": "stage", "in": "query", "required": True, "schema": {"type": "integer"}},
        {"name": "policy", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "budget", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "threshold", "in": "query", "required": False, "schema": {"type": "string"}},
    ],
}
_RESPONSES = {400: _ERROR, 401: _ERROR, 408: _ERROR, 413: _ERROR, 415: _ERROR, 503: _ERROR, 504: _ERROR}


def create_app(
    model: str | Path | ModelService,
    *,
    token: str | None = None,
    config: ServerConfig | None = None,
) -> Any:
    """Build the FastAPI application serving ``model``.

    Parameters
    ----------
    model : str, Path or ModelService
        A model directory, or an already loaded service (tests share one).
    token : str, optional
        Bearer token required on predict/continue/model; ``None`` disables authentication.
    config : ServerConfig, optional
    """
    cfg = config or ServerConfig()
    service = model if isinstance(model, ModelService) else ModelService(model, threads=cfg.threads)
    token_bytes = token.encode("utf-8") if token else None
    batcher: MicroBatcher[Job, Any] = MicroBatcher(
        service.process, max_rows=cfg.max_batch_rows, max_wait_s=cfg.batch_wait_ms / 1e3,
        max_queue=cfg.max_queue, rows=lambda job: job.rows,
    )
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="scai computing centre",
        version=str(service.manifest["scai_version"]),
        description="Early-exit spectral classification: full predictions, and continuation of edge-started inference.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.batcher = batcher

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(PayloadError)
    async def _payload_error(_request: Request, exc: PayloadError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return error(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - last resort
        log.exception("unexpected error")
        return error(500, f"internal error ({type(exc).__name__}); see the server log")

    def authorise(request: Request) -> None:
        if token_bytes is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8"), token_bytes)
        if not ok:
            raise PayloadError("missing or wrong bearer token (send 'Authorization: Bearer <token>')", status=401)

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise PayloadError(f"Content-Length {length!r:.30} is not a number")
            if int(length) > cfg.max_body_bytes:
                raise PayloadError(f"body of {int(length):,} bytes exceeds the limit of {cfg.max_body_bytes:,} bytes", status=413)
        chunks: list[bytes] = []
        size = 0

        async def _read() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > cfg.max_body_bytes:
                    raise PayloadError(f"body exceeds the limit of {cfg.max_body_bytes:,} bytes", status=413)
                chunks.append(chunk)

        try:
            await asyncio.wait_for(_read(), cfg.body_timeout_s)
        except asyncio.TimeoutError:
            raise PayloadError(f"body not received within {cfg.body_timeout_s:g} s", status=408) from None
        return b"".join(chunks)

    def content_type(request: Request) -> str:
        return request.headers.get("content-type", "").split(";")[0].strip().lower()

    def check_rows(n: int) -> None:
        if n > cfg.max_rows:
            raise PayloadError(f"request holds {n} spectra; at most {cfg.max_rows} per request", status=413)

    async def run(job: Job) -> JSONResponse:
        try:
            res = await batcher.submit(job, timeout=cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise PayloadError(f"the model did not answer within {cfg.request_timeout_s:g} s", status=504) from None
        except QueueFullError as exc:
            raise PayloadError(str(exc), status=503) from None
        return JSONResponse(service.format(res, job.warnings))

    @app.get("/v1/health", summary="Liveness and batching counters (no authentication)")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": service.manifest["model_name"],
            "model_sha256": service.manifest["model_sha256"],
            "uptime_s": round(time.time() - started, 3),
            "batching": asdict(batcher.stats),
        }

    @app.get("/v1/model", summary="The model's manifest: stages, shapes, MACs, thresholds, classes, axis, preprocessing",
             responses={401: _ERROR})
    async def model_manifest(request: Request) -> JSONResponse:
        authorise(request)
        return JSONResponse(service.manifest)

    @app.post("/v1/predict", summary="Classify raw spectra (JSON or .npy)", response_model=PredictResponse,
              openapi_extra=_PREDICT_BODY, responses=_RESPONSES)
    async def predict(request: Request) -> JSONResponse:
        authorise(request)
        body = await read_body(request)
        ctype = content_type(request)
        q = request.query_params
        if ctype == NPY_CONTENT_TYPE:
            X = decode_npy(body, name="spectra", dtypes=SPECTRA_DTYPES, ndim=(1, 2))
            X = X[None, :] if X.ndim == 1 else X
            check_rows(X.shape[0])
            axis = None
            options = parse_options(q.get("policy"), q.get("budget"), q.get("threshold"), n_exits=service.n_exits)
        elif ctype in ("application/json", ""):
            obj = parse_json_body(body)
            X, axis = spectra_from_json(obj, max_rows=cfg.max_rows)
            options = parse_options(obj.get("policy", q.get("policy")), obj.get("budget", q.get("budget")),
                                    obj.get("threshold", q.get("threshold")), n_exits=service.n_exits)
        else:
            raise PayloadError(f"Content-Type {ctype!r} is not supported; use application/json or {NPY_CONTENT_TYPE}", status=415)
        return await run(Job("predict", np.asarray(X, dtype=np.float32), options, axis=axis))

    @app.post("/v1/continue", summary="Continue from the features of stage k (.npy float32/float16)",
              response_model=PredictResponse, openapi_extra=_CONTINUE_BODY, responses=_RESPONSES)
    async def continue_(request: Request) -> JSONResponse:
        authorise(request)
        q = request.query_params
        stage = parse_stage(q.get("stage"), service.n_exits)
        options = parse_options(q.get("policy"), q.get("budget"), q.get("threshold"), n_exits=service.n_exits)
        body = await read_body(request)
        ctype = content_type(request)
        if ctype != NPY_CONTENT_TYPE:
            raise PayloadError(f"Content-Type {ctype!r} is not supported; send features as {NPY_CONTENT_TYPE}", status=415)
        feats = decode_npy(body, name="features", dtypes=FEATURE_DTYPES, ndim=(3,))
        check_rows(feats.shape[0])
        C, W = service.shapes[stage]
        if feats.shape[1:] != (C, W):
            raise PayloadError(f"features of stage {stage} must have shape (n, {C}, {W}); got {tuple(feats.shape)}")
        return await run(Job("continue", feats.astype(np.float32), options, stage=stage))

    return app


def serve(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    config: ServerConfig | None = None,
    log_level: str = "info",
) -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    app = create_app(model_dir, token=token, config=config)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, timeout_keep_alive=5,
                timeout_graceful_shutdown=5, server_header=False)
