"""The web interface: server-rendered pages, no build step, over the same engine and accounts.

Sign-in takes an account's token (or name and password) and opens a server-side session
(cookie HttpOnly, SameSite=Strict, Secure over HTTPS); every form carries the session's CSRF
token, and the sign-in form one bound to a pre-session cookie, with a limit on failed
attempts (see :mod:`vultus.server.signin`). Pages by
role: search (investigator), ingest (investigator), sources (all; admin registers), requests
queue (dpo), audit log (auditor), and a public request page that needs no account and never
shows a search result.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import RateLimitedError, VultusError
from ..policy import LegalBasis
from ..report import access_report_html
from ..store.accounts import Account, Role
from .app import ApiError, engine_of
from .clients import client_key, scheme_of
from .routes import MAX_ID, _photo_bytes
from .signin import LOGIN_COOKIE, MAX_FAILURES, WINDOW_SECONDS, FailureLimiter, LoginCsrf, name_key, same_token

web = APIRouter()

SESSION_COOKIE = "vultus_session"
SESSION_SECONDS = 8 * 3600

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1d2b3a;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center}
header a{color:#cde;text-decoration:none}header .who{margin-left:auto;font-size:.9rem}
main{max-width:64rem;margin:1.5rem auto;padding:0 1rem}
form.card,.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1rem;margin-bottom:1rem}
label{display:block;margin:.5rem 0 .2rem;font-weight:600}input,select{padding:.4rem;width:100%;box-sizing:border-box}
button{margin-top:.8rem;padding:.5rem 1rem;background:#1d5fa8;color:#fff;border:0;border-radius:6px;cursor:pointer}
.drop{border:2px dashed #8aa;border-radius:8px;padding:1.2rem;text-align:center;color:#567}
.drop.over{background:#eef6ff}.results{display:flex;flex-wrap:wrap;gap:.8rem}
.result{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.6rem;width:14rem;font-size:.85rem}
.result img{width:100%;border-radius:4px}.note{background:#fff8e1;border:1px solid #f0d58a;padding:.6rem;border-radius:6px}
.error{background:#fdecea;border:1px solid #f5a9a1;padding:.6rem;border-radius:6px}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border:1px solid #ddd;padding:.3rem .5rem;font-size:.85rem;text-align:left}
progress{width:100%}
"""

_DROP_SCRIPT = """
document.querySelectorAll('.drop').forEach(function (zone) {
  var input = document.getElementById(zone.dataset.input);
  ['dragenter','dragover'].forEach(function (e) { zone.addEventListener(e, function (ev) {
    ev.preventDefault(); zone.classList.add('over'); }); });
  ['dragleave','drop'].forEach(function (e) { zone.addEventListener(e, function (ev) {
    ev.preventDefault(); zone.classList.remove('over'); }); });
  zone.addEventListener('drop', function (ev) { input.files = ev.dataTransfer.files;
    zone.querySelector('span').textContent = input.files.length + ' file(s) chosen'; });
});
"""


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
    ("/ui/sources", "Sources", set(Role)),
    ("/ui/requests", "Requests", {Role.DPO}),
    ("/ui/audit", "Audit log", {Role.AUDITOR}),
]


#: Where each role lands after signing in.
_HOME = {Role.INVESTIGATOR: "/ui/search", Role.DPO: "/ui/requests", Role.AUDITOR: "/ui/audit", Role.ADMIN: "/ui/sources"}


def _page(title: str, body: str, session: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
    nav = ""
    if session is not None:
        account: Account = session["account"]
        links = "".join(f'<a href="{href}">{label}</a>' for href, label, roles in _NAV if account.role in roles)
        nav = (f'{links}<span class="who">{escape(account.name)} ({account.role.value}) · '
               f'<form method="post" action="/ui/logout" style="display:inline">'
               f'<input type="hidden" name="csrf" value="{session["csrf"]}">'
               f'<button style="margin:0;padding:.2rem .5rem">Sign out</button></form></span>')
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)} · Vultus</title>
<style>{_STYLE}</style></head><body><header><strong>Vultus</strong>{nav}</header>
<main><h1>{escape(title)}</h1>{body}</main><script>{_DROP_SCRIPT}</script></body></html>"""
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _csrf_field(session: dict[str, Any]) -> str:
    return f'<input type="hidden" name="csrf" value="{session["csrf"]}">'


def _error_box(message: str) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>'


# -- sign-in ----------------------------------------------------------------------------------


@web.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, error: str = "") -> HTMLResponse:
    return _login_form(request, _error_box(error) if error else "")


def _login_form(request: Request, notice: str = "", status: int = 200) -> HTMLResponse:
    """The sign-in page, with a CSRF token bound to a fresh pre-session cookie."""
    csrf, _ = _login_guards(request)
    cookie = csrf.new_cookie()
    form = f"""{notice}<form class="card" method="post" action="/ui/login">
<input type="hidden" name="csrf" value="{csrf.token_for(cookie)}">
<label for="name">Name (not needed with a token)</label><input id="name" name="name" autocomplete="username">
<label for="token">Password or access token</label><input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form><p>A person in the photos? <a href="/request">Make a request here</a>.</p>"""
    response = _page("Sign in", form, status=status)
    response.set_cookie(LOGIN_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=scheme_of(request) == "https", path="/ui/login")
    return response


@web.post("/ui/login", include_in_schema=False)
def login(request: Request, token: str = Form(""), name: str = Form(""), csrf: str = Form("")) -> Response:
    engine = engine_of(request)
    guard, failures = _login_guards(request)
    if not guard.check(request.cookies.get(LOGIN_COOKIE), csrf):
        return _login_form(request, _error_box("The sign-in form expired or did not come from this site; sign in "
                                               "again on this page."), status=403)
    keys = [f"client:{client_key(request)}"] + ([name_key(name.strip())] if name.strip() else [])
    # Counted before the secret is checked, and given back below when it was right: checking
    # first and counting after would let parallel guesses all through before the first count.
    attempt = failures.reserve(keys)
    if attempt.wait is not None:
        return _login_form(request, _error_box(
            f"Too many failed sign-ins from this address or for this account: at most {MAX_FAILURES} in "
            f"{WINDOW_SECONDS // 60} minutes. Try again in {max(1, round(attempt.wait / 60))} minute(s), or ask an "
            "administrator for a new token."), status=429)
    secret = token.strip()
    if name.strip():
        account = engine.authenticate_password(name.strip(), token) or engine.authenticate(secret)
    else:
        account = engine.authenticate(secret)
    if account is None:
        return _login_form(request, _error_box("That name and password, or that token, is not valid, or the account "
                                               "is disabled."), status=401)
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


def _search_form(session: dict[str, Any], purpose: str = "", case: str = "") -> str:
    return f"""<form class="card" method="post" action="/ui/search" enctype="multipart/form-data">{_csrf_field(session)}
<div class="drop" data-input="photo"><span>Drop a photo here, or choose one:</span>
<input id="photo" name="photo" type="file" accept="image/*" required></div>
<label for="purpose">Purpose</label><input id="purpose" name="purpose" value="{escape(purpose)}" required>
<label for="case">Case reference</label><input id="case" name="case" value="{escape(case)}" required>
<button type="submit">Search</button></form>"""


@web.get("/ui/search", response_class=HTMLResponse, include_in_schema=False)
def search_page(request: Request) -> HTMLResponse:
    session = _signed_in(request, Role.INVESTIGATOR)
    return _page("Search", _search_form(session), session)


@web.post("/ui/search", response_class=HTMLResponse, include_in_schema=False)
def search_submit(request: Request, photo: UploadFile = File(...), purpose: str = Form(""), case: str = Form(""),
                  csrf: str = Form("")) -> HTMLResponse:
    session = _signed_in(request, Role.INVESTIGATOR)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    try:
        with engine.acting_as(session["account"].name):
            result = engine.search(_photo_bytes(request, photo), purpose=purpose, case=case)
    except ApiError as exc:
        return _page("Search", _error_box(exc.message) + _search_form(session, purpose, case), session, status=exc.status)
    except VultusError as exc:
        return _page("Search", _error_box(str(exc)) + _search_form(session, purpose, case), session, status=422)
    # Crops are served only for faces this session's own logged searches returned: the
    # crop route must not become a way to page through the gallery (no bulk export).
    _sessions(request)[session["sid"]].setdefault("faces", set()).update(c.face_id for c in result.candidates)
    cards = "".join(
        f"""<div class="result" data-testid="result"><img alt="face {c.face_id}" src="/ui/crops/{c.face_id}">
<div><strong>{c.similarity:.3f}</strong> similarity</div><div>{escape(c.source)} · {escape(c.legal_basis)}</div>
<div>ingested {c.ingested_at[:10]}</div><div style="word-break:break-all">{escape(c.path)}</div></div>"""
        for c in result.candidates
    ) or "<p>No candidate at this threshold.</p>"
    note = (f'<p class="note">{len(result.candidates)} candidate(s) at similarity ≥ {result.threshold:.2f}: leads for '
            "a person to check, never identifications. This search was logged with its purpose and case. "
            + (f"Expected false candidates at this threshold and gallery size: {result.expected_false_candidates:.3g}."
               if result.expected_false_candidates is not None else "Expected false candidates: not calibrated yet.")
            + "</p>")
    return _page("Search results", note + f'<div class="results">{cards}</div>' + _search_form(session, purpose, case), session)


@web.get("/ui/crops/{face_id}", include_in_schema=False)
def crop(face_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], request: Request) -> Response:
    session = _signed_in(request, Role.INVESTIGATOR)
    engine = engine_of(request)
    hit = engine.store.hydrate([face_id]).get(face_id)
    if hit is None or not hit.crop_key or hit.restricted or face_id not in session.get("faces", set()):
        raise ApiError(404, "unknown_face", f"No face {face_id} among the results of your searches.")
    return Response(engine.blobs.get(hit.crop_key), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


# -- ingest and sources -----------------------------------------------------------------------


@web.get("/ui/ingest", response_class=HTMLResponse, include_in_schema=False)
def ingest_page(request: Request) -> HTMLResponse:
    session = _signed_in(request, Role.INVESTIGATOR)
    options = "".join(f'<option>{escape(s.name)}</option>' for s in engine_of(request).sources())
    body = f"""<form class="card" method="post" action="/ui/ingest" enctype="multipart/form-data">{_csrf_field(session)}
<label for="source">Source</label><select id="source" name="source">{options}</select>
<div class="drop" data-input="photos"><span>Drop photos here, or choose them:</span>
<input id="photos" name="photos" type="file" accept="image/*" multiple required></div>
<button type="submit">Ingest</button></form>"""
    return _page("Ingest", body, session)


@web.post("/ui/ingest", response_class=HTMLResponse, include_in_schema=False)
def ingest_submit(request: Request, source: str = Form(...), photos: list[UploadFile] = File(...),
                  csrf: str = Form("")) -> HTMLResponse:
    from .routes import ingest_uploads

    session = _signed_in(request, Role.INVESTIGATOR)
    _check_csrf(session, csrf)
    job = ingest_uploads(request, source=source, photos=photos, account=session["account"])
    body = f"""<div class="card"><progress id="bar" value="0" max="1"></progress><p id="status">Queued…</p></div>
<script>
function gated(summary) {{
  var low = (summary && summary.low_quality) || {{}}; var parts = [];
  for (var reason in low) parts.push(low[reason] + (reason === 'too_small' ? ' too small' : ' below the detector score'));
  return parts.length ? '; faces not indexed by the quality gate: ' + parts.join(', ') : '';
}}
(function poll() {{ fetch('/ui/ingest/{job["id"]}.json').then(r => r.json()).then(function (job) {{
  var bar = document.getElementById('bar'); bar.max = job.total || 1; bar.value = job.done;
  document.getElementById('status').textContent = job.status + ': ' + job.done + ' of ' + (job.total || '?') +
    ' photos, ' + job.faces + ' faces' + (job.error ? ' — ' + job.error.message : '') + gated(job.summary);
  if (job.status === 'queued' || job.status === 'running') setTimeout(poll, 500); }}); }})();
</script>"""
    return _page("Ingest progress", body, session)


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
    rows = "".join(
        f"<tr><td>{escape(s.name)}</td><td>{escape(s.legal_basis)}</td><td>{s.retention_days} days</td>"
        f"<td>{escape(s.controller)}</td><td>{escape(s.purpose)}</td><td>{s.image_count}</td><td>{s.face_count}</td></tr>"
        for s in engine_of(request).sources()
    )
    body = ("<table><tr><th>Name</th><th>Legal basis</th><th>Retention</th><th>Controller</th><th>Purpose</th>"
            f"<th>Images</th><th>Faces</th></tr>{rows}</table>")
    if session["account"].role == Role.ADMIN:
        body += _source_form(session)
    return _page("Sources", body, session)


def _source_form(session: dict[str, Any]) -> str:
    bases = "".join(f"<option>{b.value}</option>" for b in LegalBasis)
    return f"""<h2>Register a source</h2><form class="card" method="post" action="/ui/sources">{_csrf_field(session)}
<label for="name">Name</label><input id="name" name="name" required>
<label for="basis">Legal basis (GDPR Art. 6(1))</label><select id="basis" name="basis">{bases}</select>
<label for="purpose">Purpose</label><input id="purpose" name="purpose" required>
<label for="retention">Retention (e.g. 365d, 2y; at most 3y)</label><input id="retention" name="retention" required>
<label for="controller">Controller</label><input id="controller" name="controller">
<label for="consent_ref">Consent records (for consent)</label><input id="consent_ref" name="consent_ref">
<button type="submit">Register</button></form>"""


@web.post("/ui/sources", response_class=HTMLResponse, include_in_schema=False)
def sources_submit(request: Request, name: str = Form(""), basis: str = Form(""), purpose: str = Form(""),
                   retention: str = Form(""), controller: str = Form(""), consent_ref: str = Form(""),
                   csrf: str = Form("")) -> Response:
    session = _signed_in(request, Role.ADMIN)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    try:
        with engine.acting_as(session["account"].name):
            engine.add_source(name, basis=basis, purpose=purpose, retention=retention,
                              controller=controller or None, consent_ref=consent_ref or None)
    except VultusError as exc:
        return _page("Sources", _error_box(str(exc)) + _source_form(session), session, status=400)
    return RedirectResponse("/ui/sources", status_code=303)


# -- requests queue (DPO) ---------------------------------------------------------------------


@web.get("/ui/requests", response_class=HTMLResponse, include_in_schema=False)
def requests_page(request: Request) -> HTMLResponse:
    session = _signed_in(request, Role.DPO)
    rows = []
    for r in reversed(engine_of(request).requests()):
        action = ""
        if r.origin == "public" and r.completed_at is None:
            label = {"access": "Disclose (access report)", "erasure": "Carry out erasure", "objection": "Carry out objection"}[r.kind]
            action = (f'<form method="post" action="/ui/requests/{r.id}/fulfil">{_csrf_field(session)}'
                      f'<button style="margin:0">{label}</button></form>')
        rows.append(f"<tr><td>{r.id}</td><td>{r.kind}</td><td>{r.origin}</td><td>{r.received_at}</td><td>{r.due_at}</td>"
                    f"<td>{r.completed_at or 'OPEN'}</td><td>{escape(r.outcome or '')}</td><td>{action}</td></tr>")
    body = ("<table><tr><th>#</th><th>Kind</th><th>From</th><th>Received</th><th>Due</th><th>Completed</th>"
            f"<th>Outcome</th><th></th></tr>{''.join(rows)}</table>")
    return _page("Requests", body, session)


@web.post("/ui/requests/{request_id}/fulfil", response_class=HTMLResponse, include_in_schema=False)
def fulfil(request_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], request: Request, csrf: str = Form("")) -> HTMLResponse:
    session = _signed_in(request, Role.DPO)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    with engine.acting_as(session["account"].name):
        done = engine.fulfil_request(request_id)
    contact = escape(done["contact"] or "")
    if done["kind"] == "access":
        report = base64.b64encode(access_report_html(done["result"]).encode()).decode()
        body = (f'<p class="note">Access report for request {request_id}: send it to {contact}.</p>'
                f'<p><a download="access-report-{request_id}.html" href="data:text/html;base64,{report}">'
                "Download the report</a></p>")
    else:
        receipt = base64.b64encode(json.dumps(done["result"], indent=2).encode()).decode()
        body = (f'<p class="note">Request {request_id} carried out: {len(done["result"]["removed_images"])} photo(s) '
                f'erased. Send the signed receipt to {contact}.</p><p><a download="receipt-{request_id}.json" '
                f'href="data:application/json;base64,{receipt}">Download the receipt</a></p>')
    return _page("Request carried out", body + '<p><a href="/ui/requests">Back to the requests</a></p>', session)


# -- audit log (auditor) ----------------------------------------------------------------------


@web.get("/ui/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(request: Request, verify: bool = False) -> HTMLResponse:
    session = _signed_in(request, Role.AUDITOR)
    engine = engine_of(request)
    banner = ""
    if verify:
        result = engine.verify_audit()
        banner = (f'<p class="note">The log verifies: {result.checked} entries intact.</p>' if result.ok else
                  _error_box(f"The log fails verification at entry {result.bad_id}: {result.problem}."))
    rows = "".join(
        f"<tr><td>{e.id}</td><td>{e.at}</td><td>{escape(e.actor)}</td><td>{e.action}</td>"
        f"<td>{escape(json.dumps({k: v for k, v in e.details.items() if k != 'candidates'})[:160])}</td></tr>"
        for e in reversed(engine.audit_entries()[-500:])
    )
    body = (f'{banner}<p><a href="/ui/audit?verify=true">Verify the whole log</a></p>'
            f"<table><tr><th>#</th><th>At</th><th>Actor</th><th>Action</th><th>Details</th></tr>{rows}</table>")
    return _page("Audit log", body, session)


# -- the public request page ------------------------------------------------------------------


def _public_form(error: str = "") -> str:
    return f"""{_error_box(error) if error else ''}<p>Send a photo of your face to ask what this organisation holds
about you, to have it erased, or to object to its processing. No name or identity document is needed; your photo is
used only to find your face and is not kept.</p>
<form class="card" method="post" action="/request" enctype="multipart/form-data">
<label for="kind">What do you ask for?</label><select id="kind" name="kind">
<option value="access">See what is held about me</option><option value="erasure">Erase my photos</option>
<option value="objection">Erase my photos and never add them again</option></select>
<label for="contact">E-mail address for the answer</label><input id="contact" name="contact" type="email" required>
<div class="drop" data-input="photo"><span>Drop a photo of your face here, or choose one:</span>
<input id="photo" name="photo" type="file" accept="image/*" required></div>
<button type="submit">Send request</button></form>"""


@web.get("/request", response_class=HTMLResponse, include_in_schema=False)
def public_page(request: Request) -> HTMLResponse:
    return _page("Your data: a request", _public_form())


@web.post("/request", response_class=HTMLResponse, include_in_schema=False)
def public_submit(request: Request, kind: str = Form(...), contact: str = Form(...),
                  photo: UploadFile = File(...)) -> HTMLResponse:
    client = client_key(request)
    try:
        done = engine_of(request).submit_public_request(
            kind=kind, photo=_photo_bytes(request, photo), contact=contact, client=client)
    except ApiError as exc:
        return _page("Your data: a request", _public_form(exc.message), status=exc.status)
    except RateLimitedError as exc:
        return _page("Your data: a request", _public_form(str(exc)), status=429)
    except VultusError as exc:
        return _page("Your data: a request", _public_form(str(exc)), status=422)
    body = (f'<p class="note" data-testid="confirmation">Your request number {done["request_id"]} is registered. The '
            f"data-protection officer will answer at {escape(contact)} by {done['due_at'][:10]}.</p>")
    return _page("Request received", body)


def install(app: Any) -> None:
    """Add the web pages to ``app`` and send signed-out browsers to the sign-in page."""
    app.include_router(web)

    @app.exception_handler(_SignIn)
    async def _to_login(_: Request, __: _SignIn) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", status_code=303)


__all__ = ["install", "web", "session_of", "SESSION_COOKIE"]
