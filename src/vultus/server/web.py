"""The web interface: server-rendered pages, no build step, over the same engine and accounts.

Sign-in takes an account's token (or name and password) and opens a server-side session
(cookie HttpOnly, SameSite=Strict, Secure over HTTPS); every form carries the session's CSRF
token, and the sign-in form one bound to a pre-session cookie, with a limit on failed
attempts (see :mod:`vultus.server.signin`). Pages by
role: search (investigator), ingest (investigator), people (investigator, dpo: in
:mod:`vultus.server.people_web`), sources (all; admin registers), requests
queue (dpo), audit log (auditor), and a public request page that needs no account and never
shows a search result.

The views here gather the data; the HTML is in Jinja2 templates under ``templates/`` (autoescaped,
all extending ``base.html``), the stylesheet and scripts are files under ``static/``, served at
``/ui/static/``, so no page has an inline script or style.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined

from ..errors import RateLimitedError, VultusError
from ..policy import LegalBasis, SearchCategory
from ..report import access_report_html, clock
from ..store.accounts import Role
from .access import ApiError, engine_of
from .clients import client_key, scheme_of
from .routes import MAX_ID, ingest_uploads, probe_uploads
from .signin import LOGIN_COOKIE, MAX_FAILURES, WINDOW_SECONDS, FailureLimiter, LoginCsrf, name_key, same_token

web = APIRouter()

SESSION_COOKIE = "vultus_session"
SESSION_SECONDS = 8 * 3600

#: Where the stylesheet and scripts are served from (no account needed: the public page uses them).
STATIC_PATH = "/ui/static"
STATIC_DIR = Path(__file__).with_name("static")

# Autoescape for every template, whatever its name: every value a page shows may come from a
# user or the gallery. StrictUndefined makes a misspelt variable an error, not an empty string.
_templates = Environment(loader=PackageLoader("vultus.server", "templates"), autoescape=True,
                         undefined=StrictUndefined)
# Times in videos, as mm:ss.
_templates.filters["clock"] = clock


# -- sessions ---------------------------------------------------------------------------------


def _sessions(request: Request) -> dict[str, dict[str, Any]]:
    return request.app.state.__dict__.setdefault("sessions", {})


def _login_guards(request: Request) -> tuple[LoginCsrf, FailureLimiter]:
    state = request.app.state.__dict__
    return state.setdefault("login_csrf", LoginCsrf()), state.setdefault("signin_failures", FailureLimiter())


def session_of(request: Request) -> dict[str, Any] | None:
    """The signed-in session the request's cookie names, with its account; None if none or expired."""
    sid = request.cookies.get(SESSION_COOKIE, "")
    session = _sessions(request).get(sid)
    if session is None or session["expires"] < time.time():
        return None
    account = engine_of(request).store.accounts.get(session["name"])
    if account.disabled_at is not None:
        return None
    return {**session, "account": account, "sid": sid}


class _SignIn(Exception):
    """Raised to send the browser to the sign-in page."""


def _signed_in(request: Request, *roles: Role) -> dict[str, Any]:
    session = session_of(request)
    if session is None:
        raise _SignIn()
    if roles and session["account"].role not in roles:
        raise ApiError(403, "forbidden", f"This page needs the {' or '.join(r.value for r in roles)} role.")
    return session


def _check_csrf(session: dict[str, Any], token: str) -> None:
    if not same_token(session["csrf"], token):
        raise ApiError(403, "csrf", "The form expired or did not come from this site; reload the page and try again.")


# -- rendering --------------------------------------------------------------------------------

_NAV = [
    ("/ui/search", "Search", {Role.INVESTIGATOR}),
    ("/ui/ingest", "Ingest", {Role.INVESTIGATOR}),
    ("/ui/people", "People", {Role.INVESTIGATOR, Role.DPO}),
    ("/ui/sources", "Sources", set(Role)),
    ("/ui/requests", "Requests", {Role.DPO}),
    ("/ui/audit", "Audit log", {Role.AUDITOR}),
]


#: Where each role lands after signing in.
_HOME = {Role.INVESTIGATOR: "/ui/search", Role.DPO: "/ui/requests", Role.AUDITOR: "/ui/audit", Role.ADMIN: "/ui/sources"}


def _page(template: str, title: str, session: dict[str, Any] | None = None, status: int = 200,
          **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context`` under ``title``, with the header of ``session``'s account."""
    account = session["account"] if session is not None else None
    nav = [(href, label) for href, label, roles in _NAV if account is not None and account.role in roles]
    html = _templates.get_template(template).render(
        title=title, account=account, nav=nav, csrf=session["csrf"] if session is not None else "", **context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


# -- sign-in ----------------------------------------------------------------------------------


@web.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, error: str = "") -> HTMLResponse:
    return _login_form(request, error)


def _login_form(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    """The sign-in page, under ``error`` if any, with a CSRF token bound to a fresh pre-session cookie."""
    csrf, _ = _login_guards(request)
    cookie = csrf.new_cookie()
    response = _page("login.html", "Sign in", status=status, error=error, login_csrf=csrf.token_for(cookie))
    response.set_cookie(LOGIN_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=scheme_of(request) == "https", path="/ui/login")
    return response


@web.post("/ui/login", include_in_schema=False)
def login(request: Request, token: str = Form(""), name: str = Form(""), csrf: str = Form("")) -> Response:
    engine = engine_of(request)
    guard, failures = _login_guards(request)
    if not guard.check(request.cookies.get(LOGIN_COOKIE), csrf):
        return _login_form(request, "The sign-in form expired or did not come from this site; sign in again on this "
                           "page.", status=403)
    keys = [f"client:{client_key(request)}"] + ([name_key(name.strip())] if name.strip() else [])
    # Counted before the secret is checked, and given back below when it was right: checking
    # first and counting after would let parallel guesses all through before the first count.
    attempt = failures.reserve(keys)
    if attempt.wait is not None:
        return _login_form(request, (
            f"Too many failed sign-ins from this address or for this account: at most {MAX_FAILURES} in "
            f"{WINDOW_SECONDS // 60} minutes. Try again in {max(1, round(attempt.wait / 60))} minute(s), or ask an "
            "administrator for a new token."), status=429)
    secret = token.strip()
    if name.strip():
        account = engine.authenticate_password(name.strip(), token) or engine.authenticate(secret)
    else:
        account = engine.authenticate(secret)
    if account is None:
        return _login_form(request, "That name and password, or that token, is not valid, or the account is "
                           "disabled.", status=401)
    failures.release(attempt)
    sessions = _sessions(request)
    now = time.time()
    for stale in [key for key, value in sessions.items() if value["expires"] < now]:
        del sessions[stale]  # expired sessions go at the next sign-in, so the table stays small
    sid = secrets.token_urlsafe(32)
    sessions[sid] = {"name": account.name, "csrf": secrets.token_urlsafe(24),
                               "expires": time.time() + SESSION_SECONDS}
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(SESSION_COOKIE, sid, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=scheme_of(request) == "https", path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


@web.post("/ui/logout", include_in_schema=False)
def logout(request: Request, csrf: str = Form("")) -> Response:
    session = _signed_in(request)
    _check_csrf(session, csrf)
    _sessions(request).pop(request.cookies.get(SESSION_COOKIE, ""), None)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@web.get("/ui/", include_in_schema=False)
def home(request: Request) -> Response:
    session = _signed_in(request)
    return RedirectResponse(_HOME[session["account"].role], status_code=303)


# -- search -----------------------------------------------------------------------------------


def _categories(request: Request) -> dict[str, Any]:
    """The search form's category list, the deployment's default first selected."""
    return {"categories": [c.value for c in SearchCategory], "default_category": engine_of(request).settings.default_category}


@web.get("/ui/search", response_class=HTMLResponse, include_in_schema=False)
def search_page(request: Request) -> HTMLResponse:
    session = _signed_in(request, Role.INVESTIGATOR)
    return _page("search.html", "Search", session, result=None, error="", purpose="", case="", category="",
                 **_categories(request))


@web.post("/ui/search", response_class=HTMLResponse, include_in_schema=False)
def search_submit(request: Request, photo: list[UploadFile] = File(...), purpose: str = Form(""), case: str = Form(""),
                  category: str = Form(""), csrf: str = Form("")) -> HTMLResponse:
    session = _signed_in(request, Role.INVESTIGATOR)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    form = {"purpose": purpose, "case": case, "category": category, **_categories(request)}
    try:
        with engine.acting_as(session["account"].name):
            result = engine.search(probe_uploads(request, photo), purpose=purpose, case=case, category=category or None)
    except ApiError as exc:
        return _page("search.html", "Search", session, exc.status, result=None, error=exc.message, **form)
    except VultusError as exc:
        return _page("search.html", "Search", session, 422, result=None, error=str(exc), **form)
    # Crops are served only for faces this session's own logged searches returned: the
    # crop route must not become a way to page through the gallery (no bulk export).
    _sessions(request)[session["sid"]].setdefault("faces", set()).update(c.face_id for c in result.candidates)
    return _page("search.html", "Search results", session, result=result, error="", **form)


@web.get("/ui/crops/{face_id}", include_in_schema=False)
def crop(face_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], request: Request) -> Response:
    return _result_picture(request, face_id, "crop_key")


@web.get("/ui/stills/{face_id}", include_in_schema=False)
def still(face_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], request: Request) -> Response:
    """The still of the video appearance a search result's face belongs to (its best frame, the face outlined)."""
    return _result_picture(request, face_id, "still_key")


def _result_picture(request: Request, face_id: int, kind: str) -> Response:
    """The crop or still of ``face_id``, only if a search of this session returned it, or a People
    page (:mod:`vultus.server.people_web`, investigators and DPOs) showed it to this session."""
    session = _signed_in(request, Role.INVESTIGATOR, Role.DPO)
    engine = engine_of(request)
    hit = engine.store.hydrate([face_id]).get(face_id)
    key = getattr(hit, kind) if hit is not None else None
    if hit is None or not key or hit.restricted or face_id not in session.get("faces", set()):
        raise ApiError(404, "unknown_face", f"No face {face_id} among the results of your searches or the people "
                       "pages you opened.")
    return Response(engine.blobs.get(key), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


# -- ingest and sources -----------------------------------------------------------------------


@web.get("/ui/ingest", response_class=HTMLResponse, include_in_schema=False)
def ingest_page(request: Request) -> HTMLResponse:
    session = _signed_in(request, Role.INVESTIGATOR)
    names = [source.name for source in engine_of(request).sources()]
    return _page("ingest.html", "Ingest", session, sources=names)


@web.post("/ui/ingest", response_class=HTMLResponse, include_in_schema=False)
def ingest_submit(request: Request, source: str = Form(...), photos: list[UploadFile] = File(...),
                  csrf: str = Form("")) -> HTMLResponse:
    session = _signed_in(request, Role.INVESTIGATOR)
    _check_csrf(session, csrf)
    job = ingest_uploads(request, source=source, photos=photos, account=session["account"])
    return _page("ingest_progress.html", "Ingest progress", session, job_id=job["id"])


@web.get("/ui/ingest/{job_id}.json", include_in_schema=False)
def ingest_progress(job_id: str, request: Request) -> dict[str, Any]:
    _signed_in(request, Role.INVESTIGATOR)
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "unknown_job", f"No ingest job {job_id!r}.")
    return job


@web.get("/ui/sources", response_class=HTMLResponse, include_in_schema=False)
def sources_page(request: Request) -> HTMLResponse:
    session = _signed_in(request)
    return _sources(session, sources=engine_of(request).sources())


def _sources(session: dict[str, Any], *, sources: list[Any], error: str = "", status: int = 200) -> HTMLResponse:
    """The sources table, or ``error`` in its place, and for an admin the form that registers one."""
    return _page("sources.html", "Sources", session, status, sources=sources, error=error,
                 can_register=session["account"].role == Role.ADMIN, bases=[basis.value for basis in LegalBasis],
                 categories=[c.value for c in SearchCategory])


@web.post("/ui/sources", response_class=HTMLResponse, include_in_schema=False)
def sources_submit(request: Request, name: str = Form(""), basis: str = Form(""), purpose: str = Form(""),
                   retention: str = Form(""), controller: str = Form(""), consent_ref: str = Form(""),
                   purposes: list[str] = Form([]), csrf: str = Form("")) -> Response:
    session = _signed_in(request, Role.ADMIN)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    try:
        with engine.acting_as(session["account"].name):
            # No box ticked: the category closest to the purpose text, shown in the table after.
            engine.add_source(name, basis=basis, purpose=purpose, retention=retention,
                              controller=controller or None, consent_ref=consent_ref or None,
                              purposes=purposes or None)
    except VultusError as exc:
        return _sources(session, sources=[], error=str(exc), status=400)
    return RedirectResponse("/ui/sources", status_code=303)


# -- requests queue (DPO) ---------------------------------------------------------------------


_FULFIL_LABELS = {"access": "Disclose (access report)", "erasure": "Carry out erasure",
                  "objection": "Carry out objection"}


@web.get("/ui/requests", response_class=HTMLResponse, include_in_schema=False)
def requests_page(request: Request) -> HTMLResponse:
    session = _signed_in(request, Role.DPO)
    # The button of an open public request, by its kind; other requests have none.
    rows = [(r, _FULFIL_LABELS[r.kind] if r.origin == "public" and r.completed_at is None else "")
            for r in reversed(engine_of(request).requests())]
    return _page("requests.html", "Requests", session, rows=rows)


@web.post("/ui/requests/{request_id}/fulfil", response_class=HTMLResponse, include_in_schema=False)
def fulfil(request_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], request: Request, csrf: str = Form("")) -> HTMLResponse:
    session = _signed_in(request, Role.DPO)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    with engine.acting_as(session["account"].name):
        done = engine.fulfil_request(request_id)
    appearances = 0
    if done["kind"] == "access":
        download, removed = access_report_html(done["result"]), 0
    else:
        download, removed = json.dumps(done["result"], indent=2), len(done["result"]["removed_images"])
        appearances = sum(len(v["time_ranges"]) for v in done["result"].get("removed_videos", []))
    return _page("fulfilled.html", "Request carried out", session, kind=done["kind"], request_id=request_id,
                 contact=done["contact"] or "", removed=removed, appearances=appearances,
                 download=base64.b64encode(download.encode()).decode())


# -- audit log (auditor) ----------------------------------------------------------------------


@web.get("/ui/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(request: Request, verify: bool = False) -> HTMLResponse:
    session = _signed_in(request, Role.AUDITOR)
    engine = engine_of(request)
    verified = engine.verify_audit() if verify else None
    entries = [(e, json.dumps({k: v for k, v in e.details.items() if k != "candidates"})[:160])
               for e in reversed(engine.audit_entries()[-500:])]
    return _page("audit.html", "Audit log", session, verified=verified, entries=entries)


# -- the public request page ------------------------------------------------------------------


@web.get("/request", response_class=HTMLResponse, include_in_schema=False)
def public_page(request: Request) -> HTMLResponse:
    return _page("public.html", "Your data: a request", error="")


@web.post("/request", response_class=HTMLResponse, include_in_schema=False)
def public_submit(request: Request, kind: str = Form(...), contact: str = Form(...),
                  photo: list[UploadFile] = File(...)) -> HTMLResponse:
    client = client_key(request)
    try:
        done = engine_of(request).submit_public_request(
            kind=kind, photo=probe_uploads(request, photo), contact=contact, client=client)
    except ApiError as exc:
        return _page("public.html", "Your data: a request", error=exc.message, status=exc.status)
    except RateLimitedError as exc:
        return _page("public.html", "Your data: a request", error=str(exc), status=429)
    except VultusError as exc:
        return _page("public.html", "Your data: a request", error=str(exc), status=422)
    return _page("public_done.html", "Request received", request_id=done["request_id"], contact=contact,
                 due=done["due_at"][:10], photos=len(photo))


def install(app: Any) -> None:
    """Add the web pages to ``app`` and send signed-out browsers to the sign-in page."""
    app.include_router(web)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(_SignIn)
    async def _to_login(_: Request, __: _SignIn) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", status_code=303)


__all__ = ["install", "web", "session_of", "SESSION_COOKIE"]
