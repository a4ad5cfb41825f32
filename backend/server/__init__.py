"""The local HTTP job API (FastAPI): ``create_app`` builds it, ``serve`` runs it with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import socket

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__
from backend.errors import MeshsmithError
from backend.jobs import JobRunner, JobStore
from backend.server import health, jobs
from backend.server.device import detect_device
from backend.settings import LOOPBACK_HOSTS, ServerSettings, remove_state_file, write_state_file

log = logging.getLogger(__name__)

_STATUS_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "not_ready", 413: "too_large"}


def create_app(settings: ServerSettings, *, port: int | None = None) -> FastAPI:
    """The app; its lifespan opens the job store, starts the worker and writes the state file."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store = JobStore(settings.data_dir)
        runner = JobRunner(store, workers=settings.job_workers, memory_limit_bytes=settings.job_memory_bytes,
                           time_limit=settings.job_time_limit)
        runner.start()
        app.state.store, app.state.runner = store, runner
        app.state.device = detect_device()
        if port is not None:
            write_state_file(settings, port, __version__)
        log.info("Meshsmith backend %s on %s:%s, device %s", __version__, settings.host, port, app.state.device)
        try:
            yield
        finally:
            remove_state_file(settings)
            runner.stop()

    app = FastAPI(title="Meshsmith backend", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.include_router(health.router, prefix="/v1")
    app.include_router(jobs.router, prefix="/v1")

    @app.exception_handler(MeshsmithError)
    async def meshsmith_error(request: Request, exc: MeshsmithError):
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.detail, dict):
            body = exc.detail
        else:
            body = {"code": _STATUS_CODES.get(exc.status_code, "error"), "message": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"code": "bad_params", "message": f"The request is not valid: {problems}."}, 422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"code": "internal", "message": f"The backend hit an internal error ({type(exc).__name__}); see its log."},
            500,
        )

    return app


def serve(settings: ServerSettings) -> None:
    """Bind, write the state file and serve until interrupted."""
    import uvicorn

    if settings.host not in LOOPBACK_HOSTS:
        log.warning("listening on %s: other machines can reach this backend (token still required)", settings.host)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise SystemExit(
            f"Cannot listen on {settings.host}:{settings.port} ({exc.strerror}). "
            "Is another backend running? Pick another port with --port, or --port 0 for any free one."
        ) from None
    port = sock.getsockname()[1]
    app = create_app(settings, port=port)
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
