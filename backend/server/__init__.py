"""The local HTTP job API (FastAPI): ``create_app`` builds it, ``serve`` runs it with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__
from backend.errors import MeshsmithError, TooLarge, UploadStalled
from backend.jobs import JobRunner, JobStore
from backend.server import health, jobs
from backend.server.device import detect_device
from backend.settings import LOOPBACK_HOSTS, ServerSettings, remove_state_file, write_state_file

log = logging.getLogger(__name__)

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "not_ready", 413: "too_large",
                 429: "queue_full"}


def create_app(settings: ServerSettings, *, port: int | None = None) -> FastAPI:
    """The app; its lifespan opens the job store, starts the worker and writes the state file."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store = JobStore(settings.data_dir)
        orphans = store.remove_orphans()
        if orphans:
            log.info("removed %d job folders without a job record (uploads cut short)", orphans)
        store.clean(settings.job_max_age, settings.jobs_disk_bytes)
        runner = JobRunner(store, workers=settings.job_workers, memory_limit_bytes=settings.job_memory_bytes,
                           time_limit=settings.job_time_limit)
        runner.start()
        cleaner = asyncio.create_task(_clean_hourly(store, settings))
        app.state.store, app.state.runner = store, runner
        app.state.device = detect_device()
        if port is not None:
            write_state_file(settings, port, __version__)
        log.info("Meshsmith backend %s on %s:%s, device %s", __version__, settings.host, port, app.state.device)
        try:
            yield
        finally:
            cleaner.cancel()
            remove_state_file(settings)
            runner.stop()

    # No /docs, /redoc or /openapi.json: docs/api.md is the reference, and an open schema
    # endpoint only helps a page that probes this port.
    app = FastAPI(title="Meshsmith backend", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.state.settings = settings
    # Listening on every interface (0.0.0.0, ::) is a choice to be reached by any name; the token still holds.
    if settings.host not in ("0.0.0.0", "::"):
        app.add_middleware(HostCheck, allowed={"127.0.0.1", "localhost", "::1", settings.host.lower()})
    app.include_router(health.router, prefix="/v1")
    app.include_router(jobs.router, prefix="/v1")

    # The upload cap holds while a body streams in (a chunked one has no Content-Length to
    # check first): the request is refused once it passes the cap, before it is stored.
    app.add_middleware(UploadCap, limit_bytes=settings.max_upload_bytes + UPLOAD_OVERHEAD,
                       limit_mb=settings.max_upload_mb, stall_seconds=settings.upload_stall_seconds)

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


#: Bytes of multipart framing and the ``params`` field allowed beside the files' own cap.
UPLOAD_OVERHEAD = 1 << 20


class HostCheck:
    """ASGI middleware: answer only requests addressed (Host header) to one of ``allowed``.

    A DNS-rebinding page reaches 127.0.0.1 under its own name; its requests carry that name.
    (Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would run the app in a task
    of its own and turn :class:`UploadCap`'s 413 into a 500.)
    """

    def __init__(self, app, allowed: set[str]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if _host_name(host) not in self.allowed:
                response = JSONResponse({"code": "bad_host", "message": "This backend answers only requests "
                                         f"addressed to {', '.join(sorted(self.allowed))} (the Host header)."}, 421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class UploadCap:
    """ASGI middleware: a request body that passes ``limit_bytes`` raises :class:`TooLarge`
    (answered 413 by the app's handler) as soon as it does, whatever its framing; one that
    stops arriving for ``stall_seconds`` raises :class:`UploadStalled` (408)."""

    def __init__(self, app, limit_bytes: int, limit_mb: float, stall_seconds: float = 30.0):
        self.app, self.limit, self.limit_mb, self.stall = app, limit_bytes, limit_mb, stall_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        seen, complete = 0, False

        async def capped():
            nonlocal seen, complete
            if complete:                       # after the body: e.g. waiting for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.stall)
            except asyncio.TimeoutError:
                raise UploadStalled(f"The upload stopped arriving for {self.stall:g} s; send it again.") from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge(
                        f"The upload is larger than this backend's limit of {self.limit_mb:.0f} MB (all files "
                        "together). Decimate the mesh or use smaller textures first, or start the backend with a "
                        "higher --max-upload-mb.")
            return message

        await self.app(scope, capped, send)


#: Seconds between two retention passes while the server runs.
CLEAN_INTERVAL = 3600.0


async def _clean_hourly(store: JobStore, settings: ServerSettings) -> None:
    while True:
        await asyncio.sleep(CLEAN_INTERVAL)
        await asyncio.to_thread(store.clean, settings.job_max_age, settings.jobs_disk_bytes)


def _host_name(header: str) -> str:
    """The host part of a Host header, lower case: ``[::1]:8765`` -> ``::1``, ``Localhost:80`` -> ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free one); SystemExit with a sentence if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (without it a kept-alive connection waited ~40 ms per request on delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"Cannot listen on {host}:{port} ({exc.strerror}). "
            "Is another backend running? Pick another port with --port, or --port 0 for any free one."
        ) from None
    return sock


def serve(settings: ServerSettings) -> None:
    """Bind, write the state file and serve until interrupted."""
    import uvicorn

    if settings.host not in LOOPBACK_HOSTS:
        log.warning("listening on %s: other machines can reach this backend (token still required)", settings.host)
    # Files the server and its workers write (job folders, logs, results) are this user's only.
    os.umask(0o077)
    sock = listening_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    app = create_app(settings, port=port)
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
