"""The HTTP server: app factory, authentication, roles and the one JSON error shape.

Every route under ``/v1`` needs ``Authorization: Bearer TOKEN`` of an active account
(401 otherwise) whose role the route allows (403 otherwise); the account is the actor of
every audit entry the request makes. Every user error is a 4xx with the body
``{"error": {"code": "...", "message": "..."}}``; the message says what to do.

Authentication, the body's size and its pace are checked before the body is read, by the
middleware in :mod:`vultus.server.limits`; ingest jobs run one at a time in order
(:mod:`vultus.server.jobs`).
"""

from __future__ import annotations

import re
import shutil
import sys

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import Settings
from ..engine import Engine
from ..errors import (
    DataDirPermissionError,
    DiskFullError,
    ReadOnlyDataDirError,
    storage_error,
    AccountError,
    ClusteringOffError,
    DataDirLockedError,
    FaceError,
    ImageTooLargeError,
    IndexErasureError,
    IndexUnavailableError,
    MediaError,
    ModelMismatchError,
    PolicyError,
    ReceiptError,
    SettingsError,
    SourceExistsError,
    RateLimitedError,
    UnknownAccountError,
    UnknownPersonError,
    UnknownRequestError,
    UnknownSourceError,
    VultusError,
)
from .access import ApiError, Unauthorized, account_for, as_dict, current_account, engine_of, forbidden_message, require  # noqa: F401 - the server's API
from .clients import parse_proxies
from .jobs import JobRunner
from .limits import BodyGuard

__all__ = ["create_app", "ApiError", "Unauthorized", "account_for", "require", "DEFAULT_MAX_UPLOAD"]

#: Largest photo accepted in one upload.
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024


# Most specific first: the first matching class decides the status.
_STATUS: list[tuple[type[VultusError], int]] = [
    (ImageTooLargeError, 413),
    (UnknownSourceError, 404),
    (UnknownAccountError, 404),
    (UnknownRequestError, 404),
    (UnknownPersonError, 404),
    (ClusteringOffError, 409),
    (RateLimitedError, 429),
    (DiskFullError, 507),
    (ReadOnlyDataDirError, 503),
    (DataDirPermissionError, 503),
    (IndexUnavailableError, 503),
    (IndexErasureError, 503),
    (SourceExistsError, 409),
    (DataDirLockedError, 409),
    (ModelMismatchError, 409),
    (MediaError, 422),
    (FaceError, 422),
    (ReceiptError, 422),
    (AccountError, 400),
    (PolicyError, 400),
    (SettingsError, 400),
]


def _code(exc: Exception) -> str:
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    """The ASGI app over one engine (made from ``settings`` when not given)."""
    app = FastAPI(
        title="Vultus",
        version=__version__,
        description="Accountable face search over photo collections you lawfully hold. "
        "Results are candidates for a person to check, never identifications.",
        docs_url="/docs",
    )
    app.state.engine = engine or Engine(settings or Settings.from_env())
    for notice in app.state.engine.notices:
        print(f"Note: {notice}", file=sys.stderr)
    # Uploads wait here, unencrypted, only until their ingest ends; a crashed server's
    # leftovers must not stay.
    shutil.rmtree(app.state.engine.data_dir / "uploads", ignore_errors=True)
    active = app.state.engine.settings
    app.state.max_upload = max_upload
    app.state.max_batch_photos = active.max_batch_photos
    app.state.body_timeout = active.body_timeout
    app.state.trusted_proxies = parse_proxies(active.trusted_proxies)
    app.state.jobs = JobRunner(app.state.engine)
    app.add_middleware(BodyGuard)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(VultusError)
    async def _vultus_error(_: Request, exc: VultusError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        return _error(status, _code(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in exc.errors()
        )
        return _error(422, "invalid_request", f"The request is missing or has malformed fields: {problems}.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _fault(_: Request, exc: Exception) -> JSONResponse:
        known = storage_error(exc, app.state.engine.data_dir) if isinstance(exc, (OSError, DBAPIError)) else None
        if known is not None:  # the disk, not the request: say which, as the CLI does
            return _error(507 if isinstance(known, DiskFullError) else 503, _code(known), str(known))
        # A fault of the server, not of the request: same shape, and the traceback goes to
        # the server's log (Starlette re-raises it), never to the client.
        return _error(500, "internal_error", "The server failed on this request; the administrator finds why in the "
                      "server's log. Nothing was changed by the part that failed.")

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Liveness: the server answers (no authentication)."""
        return {"status": "ok", "version": __version__}

    from .routes import public, router

    from .people_web import people_web
    from .web import install

    app.include_router(router)
    app.include_router(public)
    install(app)
    app.include_router(people_web)
    return app
