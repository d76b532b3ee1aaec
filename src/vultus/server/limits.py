"""What the server checks before it reads a request body, and how it reads one.

FastAPI parses a multipart form (spooling every file part to the temporary directory)
before any dependency runs, so a route's own checks come too late: an anonymous 2 GB body
would be on disk before its 401. :class:`BodyGuard` is an ASGI middleware that runs first,
for every request that carries a body:

1. a ``/v1`` route answers 401/403 from the ``Authorization`` header and the route's role,
   and a web upload page (``/ui/search``, ``/ui/ingest``) needs a signed-in session of the
   page's role, before a byte of the body is read;
2. a ``Content-Length`` over the route's limit is answered 413 at once;
3. the body is then read through a counting stream that stops at the limit (for chunked
   bodies, which have no length) and that times out a body that stalls or trickles: each
   read waits at most ``VULTUS_BODY_TIMEOUT`` seconds, and the whole body must come at
   ``MIN_BODY_RATE`` or faster after that allowance (408).

Refusals have the app's JSON error shape. Nothing of a refused body is kept: what the
form parser spooled before the limit is in unlinked temporary files, freed when the
request ends.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..probes import MAX_PROBES
from .access import Unauthorized, account_for, forbidden_message

__all__ = [
    "BodyGuard", "BodyTooLarge", "BodyTimeout", "body_limit", "FORM_OVERHEAD", "SMALL_BODY", "MIN_BODY_RATE",
    "PROBE_ROUTES", "PUBLIC_PHOTO_ROUTES", "BATCH_ROUTES", "WEB_UPLOAD_ROUTES",
]

#: Room for a multipart form's boundaries, part headers and text fields next to its photos.
FORM_OVERHEAD = 64 * 1024
#: Limit of every body that carries no photo (JSON, sign-in and other small forms).
SMALL_BODY = 1024 * 1024
#: Slowest a body may arrive, in bytes per second, once its first VULTUS_BODY_TIMEOUT is spent.
MIN_BODY_RATE = 16 * 1024

#: Routes whose form carries probe photos of one person: up to MAX_PROBES, each at most the upload limit.
PROBE_ROUTES = frozenset({"/v1/search", "/v1/access", "/v1/erasure", "/v1/objection", "/v1/restriction",
                          "/ui/search"})
#: The public page's routes: anyone may send to them, so their photos (one or several) share
#: one upload limit, no more than a single photo was allowed before several were taken.
PUBLIC_PHOTO_ROUTES = frozenset({"/public/requests", "/request"})
#: Routes whose form carries up to VULTUS_MAX_BATCH_PHOTOS photos.
BATCH_ROUTES = frozenset({"/v1/ingest/uploads", "/ui/ingest"})
#: Web pages taking uploads, with the role they need.
WEB_UPLOAD_ROUTES = {"/ui/search": "investigator", "/ui/ingest": "investigator"}


class BodyTooLarge(HTTPException):
    """The body is over its route's limit (413)."""

    code = "upload_too_large"

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is over this route's {_size(limit)} limit; send smaller or fewer "
                              "photos (each at most the upload limit), or split a batch into several uploads.")


class BodyTimeout(HTTPException):
    """The body stalled or came too slowly (408)."""

    code = "body_timeout"

    def __init__(self, seconds: float):
        super().__init__(408, f"The request body stopped arriving (nothing for {seconds:g} s, or slower than "
                              f"{MIN_BODY_RATE // 1024} KiB/s); send it again over a working connection.")


def _size(limit: int) -> str:
    return f"{limit / (1024 * 1024):.0f} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"


def body_limit(path: str, *, max_upload: int, max_batch_photos: int) -> int:
    """The most bytes a request body to ``path`` may have."""
    if path in PROBE_ROUTES:
        return MAX_PROBES * (max_upload + 1024) + FORM_OVERHEAD
    if path in PUBLIC_PHOTO_ROUTES:
        return max_upload + FORM_OVERHEAD
    if path in BATCH_ROUTES:
        return max_batch_photos * (max_upload + 1024) + FORM_OVERHEAD
    return SMALL_BODY


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    # Connection: close - the rest of a refused body is never read, so the connection
    # cannot carry another request.
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={"Connection": "close", **headers})


class BodyGuard:
    """The ASGI middleware described in this module's docstring."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]  # routes match the path under the app's mount point
        path = path.rstrip("/") or "/"
        refusal = await self._refuse_early(scope, state, path)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit = body_limit(path, max_upload=state.max_upload, max_batch_photos=state.max_batch_photos)
        declared = None if _header(scope, b"transfer-encoding") else _content_length(scope)
        if declared is not None and declared > limit:
            await _error(413, BodyTooLarge.code, BodyTooLarge(limit).detail)(scope, receive, send)
            return
        body = _CountedBody(receive, limit, state.body_timeout)
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body, tracked_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            # Raised where no exception handler turned it into a response.
            if started:
                raise
            await _error(exc.status_code, exc.code, exc.detail)(scope, receive, send)

    async def _refuse_early(self, scope: Scope, state: Any, path: str) -> Callable | None:
        """The response refusing the request from its headers alone, or None to go on."""
        if path.startswith("/v1/"):
            roles = self._route_roles(scope)
            if roles is None:
                return None  # no such route: the app answers 404 or 405 without reading the body
            try:
                account = await anyio.to_thread.run_sync(account_for, state.engine, _header(scope, b"authorization"))
            except Unauthorized as exc:
                return _error(401, exc.code, exc.message)
            if account.role not in roles:
                return _error(403, "forbidden", forbidden_message(account, roles))
            return None
        role = WEB_UPLOAD_ROUTES.get(path)
        if role is not None:
            from .web import session_of

            session = await anyio.to_thread.run_sync(session_of, Request(scope))
            if session is None:
                return RedirectResponse("/ui/login", status_code=303, headers={"Connection": "close"})
            if session["account"].role.value != role:
                return _error(403, "forbidden", f"This page needs the {role} role.")
        return None

    @staticmethod
    def _route_roles(scope: Scope) -> tuple[Any, ...] | None:
        """The roles the matching /v1 route allows, or None when no route matches."""
        from .routes import router

        for route in router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                dependant = getattr(route, "dependant", None)
                for dependency in getattr(dependant, "dependencies", []):
                    if hasattr(dependency.call, "roles"):
                        return tuple(dependency.call.roles)
                return None
        return None


class _CountedBody:
    """``receive`` that stops at ``limit`` bytes and times out a stalled or trickling body."""

    def __init__(self, receive: Receive, limit: int, timeout: float):
        self.receive = receive
        self.limit = limit
        self.timeout = timeout
        self.received = 0
        self.complete = False
        self.started = time.monotonic()

    async def __call__(self) -> Message:
        if self.complete:
            return await self.receive()  # waiting for a disconnect is no body read: no timeout
        allowed = self.started + self.timeout + self.received / MIN_BODY_RATE - time.monotonic()
        wait = min(self.timeout, allowed)
        if wait <= 0:
            raise BodyTimeout(self.timeout)
        try:
            with anyio.fail_after(wait):
                message = await self.receive()
        except TimeoutError:
            raise BodyTimeout(self.timeout) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise BodyTooLarge(self.limit)
            self.complete = not message.get("more_body", False)
        return message


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length").strip()
    return int(raw) if raw.isdigit() else None


def _has_body(scope: Scope) -> bool:
    """Whether the request may carry a body (chunked, a length above 0, or a form method).

    Transfer-Encoding is looked at first: with both headers, the HTTP parser reads the
    chunked body whatever Content-Length says, so ``Content-Length: 0`` must not wave a
    chunked body past the checks.
    """
    if _header(scope, b"transfer-encoding"):
        return True
    length = _content_length(scope)
    if length is not None:
        return length > 0
    return scope["method"] in ("POST", "PUT", "PATCH")
