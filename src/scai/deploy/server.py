"""The computing-centre HTTP server (FastAPI + uvicorn).

Endpoints (all JSON replies; errors are ``{"detail": "..."}`` with a 4xx status):

* ``POST /v1/predict`` -- raw spectra as JSON ``{"spectra": [[...]], "axis": [...]?, "policy":
  ..., "budget": ..., "threshold": ..., "on_unknown": ..., "on_ambiguous": ..., "sets": ...}`` or
  as a ``.npy`` body (``Content-Type: application/x-npy``, options as query parameters); every
  result carries the unknown-class score and flag, the input-domain flag and reason, ``held`` (why
  it was kept from leaving early: ``on_unknown=deeper``, the default, holds an unknown spectrum;
  ``on_ambiguous=deeper`` with ``sets`` one whose set has more than one class), and with
  ``sets=LEVEL`` the conformal set (``scai.inference.reliability``);
* ``POST /v1/continue?stage=k`` -- features of stage ``k`` as ``.npy`` (float32 or float16);
  the centre runs stages ``k+1 .. L-1``;
* ``GET /v1/health``, ``GET /v1/model`` (the manifest), and FastAPI's ``/openapi.json`` and
  ``/docs`` (``ServerConfig(docs=False)`` removes ``/docs`` and ``/redoc``).

Bearer-token authentication (constant-time comparison) guards predict, continue and model when a
token is configured; health stays open for load balancers but tells a caller without the token
only ``{"status": "ok"}``. Model identity: a request may name the model it was made for in the
``X-Scai-Model`` header (the weights' SHA-256; ``/v1/continue`` must, else 400), another model is a 409,
and every reply of predict, continue and model carries the header. Bodies are limited in size
(413), read under a timeout (408) and parsed in a worker thread, so a large body never stalls the
event loop; answers come under a timeout (504). Connections whose request headers do not arrive
within ``header_timeout_s`` are closed, and uvicorn refuses more than ``max_connections`` at once
(503). Requests are micro-batched (:mod:`scai.deploy.batching`); the model runs in one worker
thread. Nothing is unpickled.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import urllib.parse
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from scai.deploy.batching import MicroBatcher, QueueFullError
from scai.deploy.payloads import (
    FEATURE_DTYPES,
    MAX_JSON_DEPTH,
    MODEL_HEADER,
    NPY_CONTENT_TYPE,
    POLICIES,
    SPECTRA_DTYPES,
    PayloadError,
    RequestOptions,
    as_float32,
    decode_npy,
    parse_json_body,
    parse_options,
    parse_stage,
    spectra_from_json,
)
from scai.deploy.service import Job, ModelService
from scai.errors import ConfigError
from scai.inference.reliability import ON_AMBIGUOUS, ON_UNKNOWN

__all__ = ["MODEL_HEADER", "ServerConfig", "create_app", "serve", "uvicorn_config", "read_token_file"]

log = logging.getLogger("scai.deploy.server")

#: Query parameters each endpoint reads; any other is refused (a token in the URL included).
QUERY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "/v1/predict": ("policy", "budget", "threshold", "on_unknown", "on_ambiguous", "sets"),
    "/v1/continue": ("stage", "policy", "budget", "threshold", "on_unknown", "on_ambiguous", "sets"),
    "/v1/health": (),
    "/v1/model": (),
}
_CREDENTIAL_WORDS = ("token", "auth", "key", "secret", "password", "bearer")


@dataclass(frozen=True)
class ServerConfig:
    """Limits, timeouts and batching of the server (checked on creation)."""

    max_body_bytes: int = 8 << 20  # largest request body; larger -> 413
    max_rows: int = 1024  # most spectra (or feature rows) in one request; more -> 413
    max_batch_rows: int = 256  # micro-batch: stop gathering at this many rows
    batch_wait_ms: float = 3.0  # micro-batch: gather for this long after the first request
    max_queue: int = 2048  # requests allowed to wait for the model; more -> 503
    body_timeout_s: float = 10.0  # reading the body takes longer -> 408
    request_timeout_s: float = 30.0  # the model does not answer in time -> 504
    header_timeout_s: float = 10.0  # a connection's request headers must be complete this soon after it opened or after its last answer, else it is closed
    keep_alive_s: int = 5  # an idle keep-alive connection is closed after this many seconds
    max_connections: int = 1024  # open connections and running requests uvicorn allows; beyond -> 503
    threads: int | None = None  # PyTorch intra-op threads (None: PyTorch's default)
    docs: bool = True  # serve /docs and /redoc (their pages load JavaScript from public CDNs into the viewer's browser)

    def __post_init__(self) -> None:
        checks = {
            "max_body_bytes": self.max_body_bytes >= 1024,
            "max_rows": self.max_rows >= 1,
            "max_batch_rows": self.max_batch_rows >= 1,
            "batch_wait_ms": 0 <= self.batch_wait_ms < 60_000,
            "max_queue": self.max_queue >= 1,
            "body_timeout_s": 0 < self.body_timeout_s < float("inf"),
            "request_timeout_s": 0 < self.request_timeout_s < float("inf"),
            "header_timeout_s": 0 < self.header_timeout_s < float("inf"),
            "keep_alive_s": self.keep_alive_s >= 1,
            "max_connections": self.max_connections >= 1,
            "threads": self.threads is None or self.threads >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"ServerConfig: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} not allowed; use max_body_bytes >= 1024, "
                "batch_wait_ms in [0, 60000), finite timeouts > 0, keep_alive_s >= 1 and counts >= 1"
            )


class ExitResult(BaseModel):
    """One spectrum's answer (documentation of the reply; see ``ModelService.format``)."""

    prediction: str
    class_index: int
    exit: int  # 0-based exit that answered
    confidence: float
    macs: float  # MACs spent by this server on the spectrum
    flagged: bool  # the policy's promise was broken (over budget, batch guard)
    reason: str  # why it left where it did (scai.inference.exit_loop.REASONS)
    held: str = ""  # why it was kept from leaving early as confident: unknown, ambiguous, unknown+ambiguous ("" not held)
    probabilities: list[float]
    unknown_score: float | None = None  # unknown-class score at that exit (null: the model stores no detector)
    unknown: bool | None = None  # score above the exit's calibrated threshold
    out_of_domain: bool | None = None  # input-domain check (null on /v1/continue: the edge checked the spectrum)
    domain_reason: str | None = None  # why ("" when in domain)
    prediction_set: list[str] | None = None  # with sets=LEVEL: the conformal set (empty: no class is plausible)


class PredictResponse(BaseModel):
    """Reply of ``/v1/predict`` and ``/v1/continue``."""

    model_sha256: str
    n: int
    results: list[ExitResult]
    warnings: list[str] | None = None
    notes: list[str] | None = None  # what the model cannot say (a reliability component it does not store)


class HealthResponse(BaseModel):
    """Reply of ``/v1/health``; without the token (when one is set) only ``status``."""

    status: str
    model: str | None = None
    model_sha256: str | None = None
    uptime_s: float | None = None
    batching: dict[str, int] | None = None


def read_token_file(path: str | Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace removed); refuses an empty file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--token-file {p}: no such file")
    token = p.read_text().strip()
    if not token:
        raise ConfigError(f"--token-file {p}: the file is empty; put the token on one line")
    return token


_ERROR = {"description": "refused: a one-line reason in detail",
          "content": {"application/json": {"schema": {"type": "object", "required": ["detail"],
                                                      "properties": {"detail": {"type": "string"}}}}}}


def _openapi(cfg: ServerConfig, service: ModelService) -> dict[str, dict[str, Any]]:
    """OpenAPI fragments of predict and continue, stating the limits this server enforces."""
    n_exits = service.n_exits
    sha = service.manifest["model_sha256"]
    budget_text = {"type": "string", "minLength": 1, "maxLength": 64, "example": "150k",
                   "description": "MACs ('1500', '150k', '1.2M'), a share of the full path ('25%') or a time ('2ms'; not for batch)"}
    threshold_one = {"type": "number", "minimum": 0, "maximum": 1}
    threshold_json = {"oneOf": [threshold_one, {"type": "array", "minItems": n_exits, "maxItems": n_exits,
                                                "items": {"oneOf": [threshold_one, {"type": "null"}]}}],
                      "description": "policy threshold: one confidence for every exit, or one per exit (null: never leave there)"}
    model_header = {"name": MODEL_HEADER, "in": "header", "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$", "example": sha},
                    "description": "SHA-256 of the model's weights the request was made for; another model -> 409"}
    options = [
        {"name": "policy", "in": "query", "required": False, "schema": {"type": "string", "enum": list(POLICIES)}},
        {"name": "budget", "in": "query", "required": False, "schema": budget_text},
        {"name": "threshold", "in": "query", "required": False,
         "schema": {"type": "string", "maxLength": 64 * n_exits,
                    "description": "one confidence in [0, 1], or one per exit, comma-separated"}},
        {"name": "on_unknown", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(ON_UNKNOWN),
                    "description": "a spectrum flagged unknown where it is confident: run it deeper (default), or answer flagged"}},
    ]
    conformal = service.reliability.conformal
    levels = [] if conformal is None else [float(c) for c in conformal.confidence_levels]
    if levels:
        options.append({"name": "sets", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": [f"{c:g}" for c in levels],
                                   "description": "confidence level of the conformal prediction sets to return"}})
        options.append({"name": "on_ambiguous", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": list(ON_AMBIGUOUS),
                                   "description": "a spectrum whose set (needs sets) has more than one class where it is "
                                                  "confident: answer (default), or run it deeper"}})
    # The byte limit is stated in words: a body over it gets 413, which a schema's maxLength cannot say.
    npy = {"schema": {"type": "string", "format": "binary"},
           "description": f".npy (numpy.save, allow_pickle=False), at most {cfg.max_body_bytes:,} bytes"}
    predict_json = {
        "type": "object", "required": ["spectra"], "additionalProperties": False,
        "properties": {
            "spectra": {"type": "array", "minItems": 1, "maxItems": cfg.max_rows,
                        "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
                        "description": f"1..{cfg.max_rows} spectra of equal length (the model's {service.estimator.n_features_in_} "
                                       "points, or as many as axis)"},
            "axis": {"type": "array", "minItems": 1, "items": {"type": "number"},
                     "description": "the spectra's axis when it differs from the model's (resampled onto it)"},
            "policy": {"type": "string", "enum": list(POLICIES)},
            "budget": {"oneOf": [budget_text, {"type": "number", "exclusiveMinimum": 0}]},
            "threshold": threshold_json,
            "on_unknown": {"type": "string", "enum": list(ON_UNKNOWN)},
            **({"sets": {"type": "number", "enum": levels},
                "on_ambiguous": {"type": "string", "enum": list(ON_AMBIGUOUS)}} if levels else {}),
        },
    }
    responses = {str(k): _ERROR for k in (400, 401, 408, 409, 413, 415, 503, 504)}
    predict = {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": predict_json,
                                 "description": f"at most {cfg.max_body_bytes:,} bytes, nested at most {MAX_JSON_DEPTH} levels"},
            NPY_CONTENT_TYPE: {**npy, "description": npy["description"] + f"; float16/32/64, shape (n, W) or (W,), n <= {cfg.max_rows}"},
        }},
        "parameters": [*options, {**model_header, "required": False}],
        "responses": responses,
    }
    cont = {
        "requestBody": {"required": True, "content": {NPY_CONTENT_TYPE: {
            **npy, "description": npy["description"] + f"; float16/32 features of shape (n, C_k, W_k), n <= {cfg.max_rows}: "
            + ", ".join(f"stage {k}: (n, {c}, {w})" for k, (c, w) in enumerate(service.shapes[:-1]))}}},
        "parameters": [
            {"name": "stage", "in": "query", "required": True,
             "schema": {"type": "integer", "minimum": 0, "maximum": max(n_exits - 2, 0)},
             "description": "index of the last stage run on the edge"},
            *options, {**model_header, "required": True},
        ],
        "responses": responses,
    }
    return {"predict": predict, "continue": cont}


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
    from scai.inference.memory import bound_onednn_cache

    bound_onednn_cache()  # a server meets every batch size: bound the compiled-convolution cache
    service = model if isinstance(model, ModelService) else ModelService(model, threads=cfg.threads)
    token_bytes = token.encode("utf-8") if token else None
    model_sha = str(service.manifest["model_sha256"])
    batcher: MicroBatcher[Job, Any] = MicroBatcher(
        service.process, max_rows=cfg.max_batch_rows, max_wait_s=cfg.batch_wait_ms / 1e3,
        max_queue=cfg.max_queue, rows=lambda job: job.rows,
    )
    started = time.time()
    spec = _openapi(cfg, service)

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
        description=(
            "Early-exit spectral classification: full predictions, and continuation of edge-started inference. "
            f"Limits: bodies up to {cfg.max_body_bytes:,} bytes read within {cfg.body_timeout_s:g} s, "
            f"at most {cfg.max_rows} spectra per request, answers within {cfg.request_timeout_s:g} s. "
            f"Send the token as 'Authorization: Bearer <token>', never in the URL."
        ),
        lifespan=lifespan,
        docs_url="/docs" if cfg.docs else None,
        redoc_url="/redoc" if cfg.docs else None,
    )
    app.state.service = service
    app.state.batcher = batcher

    def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=dict(headers) if headers else None)

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

    @app.middleware("http")
    async def _last_resort(request: Request, call_next: Any) -> Any:
        """A bug in scai answers 500 with a one-line message and is logged once. (An exception
        handler for ``Exception`` runs in Starlette's outermost middleware, which re-raises after
        answering, so the server would log every traceback twice.)"""
        try:
            return await call_next(request)
        except Exception as exc:
            log.exception("unexpected error")
            return error(500, f"internal error ({type(exc).__name__}); see the server log")

    def authorised(request: Request) -> bool:
        if token_bytes is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8"), token_bytes)

    def authorise(request: Request) -> None:
        check_query(request)
        if not authorised(request):
            raise PayloadError("missing or wrong bearer token (send 'Authorization: Bearer <token>')", status=401)

    def check_query(request: Request) -> None:
        allowed = QUERY_PARAMETERS.get(request.url.path, ())
        for name in request.query_params:
            if name in allowed:
                continue
            if any(w in name.lower() for w in _CREDENTIAL_WORDS):
                raise PayloadError(
                    f"query parameter {name[:40]!r} looks like a credential; send the token as 'Authorization: Bearer <token>', "
                    "never in the URL (URLs end up in logs: rotate a token sent this way)"
                )
            raise PayloadError(f"unknown query parameter {name[:40]!r}; {request.url.path} takes {list(allowed) or 'none'}")

    def check_model(request: Request, *, required: bool) -> None:
        given = request.headers.get(MODEL_HEADER)
        if given is None:
            if required:
                raise PayloadError(
                    f"{request.url.path} needs header {MODEL_HEADER}: <SHA-256 of the model's weights> (the model whose "
                    "features these are; manifest.json's model_sha256)",
                )
            return
        given = given.strip().lower()
        if not hmac.compare_digest(given.encode("ascii", "replace"), model_sha.encode("ascii")):
            raise PayloadError(
                f"model mismatch: the request is for model {given[:16]!r}..., this centre serves {model_sha[:16]}... "
                f"({service.manifest['model_name']}); export and serve the same model directory", status=409,
            )

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise PayloadError(f"Content-Length {length[:30]!r} is not a number")
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

    def predict_job(body: bytes, ctype: str, query: Mapping[str, str]) -> Job:
        """Parse a predict body (worker thread: an 8 MB JSON body takes about a second)."""
        axis = None
        if ctype == NPY_CONTENT_TYPE:
            X = decode_npy(body, name="spectra", dtypes=SPECTRA_DTYPES, ndim=(1, 2))
            X = X[None, :] if X.ndim == 1 else X
            check_rows(X.shape[0])
            options = parse_options(query.get("policy"), query.get("budget"), query.get("threshold"), n_exits=service.n_exits,
                                    on_unknown=query.get("on_unknown"), sets=query.get("sets"),
                                    on_ambiguous=query.get("on_ambiguous"))
        elif ctype in ("application/json", ""):
            obj = parse_json_body(body)
            X, axis = spectra_from_json(obj, max_rows=cfg.max_rows)
            options = parse_options(obj.get("policy", query.get("policy")), obj.get("budget", query.get("budget")),
                                    obj.get("threshold", query.get("threshold")), n_exits=service.n_exits,
                                    on_unknown=obj.get("on_unknown", query.get("on_unknown")),
                                    sets=obj.get("sets", query.get("sets")),
                                    on_ambiguous=obj.get("on_ambiguous", query.get("on_ambiguous")))
        else:
            raise PayloadError(f"Content-Type {ctype[:60]!r} is not supported; use application/json or {NPY_CONTENT_TYPE}", status=415)
        return Job("predict", as_float32(X, "spectra"), options, axis=axis)

    def continue_job(body: bytes, stage: int, options: RequestOptions) -> Job:
        feats = decode_npy(body, name="features", dtypes=FEATURE_DTYPES, ndim=(3,))
        check_rows(feats.shape[0])
        C, W = service.shapes[stage]
        if feats.shape[1:] != (C, W):
            raise PayloadError(f"features of stage {stage} must have shape (n, {C}, {W}); got {tuple(feats.shape)}")
        return Job("continue", feats.astype(np.float32), options, stage=stage)

    async def run(job: Job) -> JSONResponse:
        try:
            res = await batcher.submit(job, timeout=cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise PayloadError(f"the model did not answer within {cfg.request_timeout_s:g} s", status=504) from None
        except QueueFullError as exc:
            raise PayloadError(str(exc), status=503) from None
        return JSONResponse(service.format(res, job.warnings), headers={MODEL_HEADER: model_sha})

    @app.get("/v1/health", summary="Liveness (no authentication); identity and counters only with the token",
             response_model=HealthResponse, response_model_exclude_none=True, responses={400: _ERROR})
    async def health(request: Request) -> dict[str, Any]:
        check_query(request)
        if token_bytes is not None and not authorised(request):
            return {"status": "ok"}
        return {
            "status": "ok",
            "model": service.manifest["model_name"],
            "model_sha256": model_sha,
            "uptime_s": round(time.time() - started, 3),
            "batching": asdict(batcher.stats),
        }

    @app.get("/v1/model", summary="The model's manifest: stages, shapes, MACs, thresholds, classes, axis, preprocessing",
             responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}, 400: _ERROR, 401: _ERROR})
    async def model_manifest(request: Request) -> JSONResponse:
        authorise(request)
        return JSONResponse(service.manifest, headers={MODEL_HEADER: model_sha})

    @app.post("/v1/predict", summary="Classify raw spectra (JSON or .npy)", response_model=PredictResponse,
              openapi_extra=spec["predict"])
    async def predict(request: Request) -> JSONResponse:
        authorise(request)
        check_model(request, required=False)
        body = await read_body(request)
        job = await run_in_threadpool(predict_job, body, content_type(request), request.query_params)
        return await run(job)

    @app.post("/v1/continue", summary="Continue from the features of stage k (.npy float32/float16)",
              response_model=PredictResponse, openapi_extra=spec["continue"])
    async def continue_(request: Request) -> JSONResponse:
        authorise(request)
        check_model(request, required=True)
        q = request.query_params
        stage = parse_stage(q.get("stage"), service.n_exits)
        options = parse_options(q.get("policy"), q.get("budget"), q.get("threshold"), n_exits=service.n_exits,
                                on_unknown=q.get("on_unknown"), sets=q.get("sets"), on_ambiguous=q.get("on_ambiguous"))
        body = await read_body(request)
        ctype = content_type(request)
        if ctype != NPY_CONTENT_TYPE:
            raise PayloadError(f"Content-Type {ctype[:60]!r} is not supported; send features as {NPY_CONTENT_TYPE}", status=415)
        return await run(await run_in_threadpool(continue_job, body, stage, options))

    return app


class _RedactQuery(logging.Filter):
    """Access-log filter: the values of query parameters the server does not read are replaced by
    ``***``, so a token a client put in the URL does not end up in the log."""

    KNOWN = frozenset(p for names in QUERY_PARAMETERS.values() for p in names)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redact_query(args[2], self.KNOWN), *args[3:])
        return True


def redact_query(path: str, known: frozenset[str]) -> str:
    """``path?query`` with the value of every parameter not in ``known`` replaced by ``***``."""
    base, _, query = path.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return base + "?" + urllib.parse.urlencode([(k, v if k in known else "***") for k, v in pairs], safe="*,%")


def _guarded_h11(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol, plus a deadline for a request's headers.

    uvicorn closes a keep-alive connection only after an answer and restarts that timer on every
    byte received, so a client that opens a connection and sends nothing, or sends its headers
    a byte at a time (slowloris), holds the connection forever. Here every connection not
    currently running a request must complete a request's headers within ``header_timeout_s``
    of opening, or of its previous answer; otherwise it is closed. Once the headers are in,
    reading the body is bounded by ``ServerConfig.body_timeout_s`` (408) and answering by
    ``request_timeout_s`` (504).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._busy():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self._busy():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _busy(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if not self._busy() and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def uvicorn_config(app: Any, *, host: str = "127.0.0.1", port: int = 8000, config: ServerConfig | None = None,
                   log_level: str = "info") -> Any:
    """The uvicorn settings of ``scai serve`` (tests serve with the same ones)."""
    import uvicorn

    cfg = config or ServerConfig()
    out = uvicorn.Config(
        app, host=host, port=int(port), log_level=log_level, http=_guarded_h11(cfg.header_timeout_s),
        timeout_keep_alive=cfg.keep_alive_s, limit_concurrency=cfg.max_connections,
        h11_max_incomplete_event_size=16 << 10, timeout_graceful_shutdown=5, server_header=False,
    )
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactQuery) for f in access.filters):
        access.addFilter(_RedactQuery())
    return out


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
    uvicorn.Server(uvicorn_config(app, host=host, port=port, config=config, log_level=log_level)).run()
