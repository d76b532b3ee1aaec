"""The web People page: a source's faces grouped into people, shown as cover crops, corrected by clicking.

Same sessions, CSRF tokens and templates as the other pages (:mod:`vultus.server.web`), and the
same roles as the ``/v1/people`` routes (:mod:`vultus.server.people_routes`): investigators and
DPOs look at people (every listing is audited by the engine) and may forget one; investigators
name, merge, split and run a clustering. Every form posts with the session's CSRF token and is
answered with a redirect to the page to look at next and a one-time message (post, redirect,
get); a change that cannot be made is answered with the page and the reason on it, with a 4xx
status, and changes nothing.

Face crops come from ``/ui/crops/ID``, which serves only faces the session was shown: a page
here adds the faces it shows to the session's list, as a search adds its results.
"""

from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import ClusteringOffError, DataDirLockedError, PeopleError, UnknownPersonError, UnknownSourceError
from ..people import MAX_NAME
from ..store.accounts import Role
from .access import engine_of
from .people_routes import MAX_ID, MAX_IDS
from .web import _check_csrf, _page, _sessions, _signed_in

people_web = APIRouter()

#: Who looks at people (and may forget one), and who corrects them: as in the /v1/people routes.
READERS = (Role.INVESTIGATOR, Role.DPO)
EDITORS = (Role.INVESTIGATOR,)
FORGETTERS = (Role.INVESTIGATOR, Role.DPO)

_ID = re.compile(r"[0-9]{1,19}")


class _Refused(Exception):
    """A form that cannot be carried out: the message for the page and its status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _stored_id(text: str, what: str) -> int:
    """``text`` as a stored id (1 to 2^63-1), or a refusal that says what was wrong."""
    text = text.strip()
    if not _ID.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise _Refused(400, f"{text[:40]!r} is not a {what} id (ids are whole numbers from 1); reload the page and "
                       "choose again.")
    return int(text)


def _refusal(exc: Exception) -> _Refused:
    """What the page says about an engine's refusal, with the status the API gives it."""
    if isinstance(exc, UnknownPersonError):
        return _Refused(404, f"{exc} The People page lists the people there are now.")
    if isinstance(exc, UnknownSourceError):
        return _Refused(404, str(exc))
    if isinstance(exc, (ClusteringOffError, DataDirLockedError)):
        return _Refused(409, str(exc))
    return _Refused(400, str(exc))


def _flash(request: Request, session: dict[str, Any], text: str, *, href: str = "", link: str = "") -> None:
    """Keep ``text`` (and a link to ``href``) for the next page this session opens, once."""
    _sessions(request)[session["sid"]]["flash"] = {"text": text, "href": href, "link": link}


def _take_flash(request: Request, session: dict[str, Any]) -> dict[str, str] | None:
    return _sessions(request)[session["sid"]].pop("flash", None)


def _show_pictures(request: Request, session: dict[str, Any], face_ids: list[int]) -> None:
    """Let ``/ui/crops`` serve these faces to this session: the page about to show them was audited."""
    _sessions(request)[session["sid"]].setdefault("faces", set()).update(face_ids)


def _where(path: str, **query: str) -> str:
    """``path`` with the query parameters that have a value."""
    shown = {k: v for k, v in query.items() if v}
    return path + (f"?{urlencode(shown)}" if shown else "")


def _label(person: dict[str, Any]) -> str:
    return person["name"] or f"Person {person['id']}"


# -- the list of people ---------------------------------------------------------------------------


@people_web.get("/ui/people", response_class=HTMLResponse, include_in_schema=False)
def people_page(request: Request, source: str = "") -> HTMLResponse:
    session = _signed_in(request, *READERS)
    return _people_list(request, session, source=source)


def _people_list(request: Request, session: dict[str, Any], *, source: str = "", error: str = "",
                 status: int = 200, selected: frozenset[int] = frozenset()) -> HTMLResponse:
    """The people of every source that groups its faces (or of ``source``), largest first, as cover crops."""
    engine = engine_of(request)
    role = session["account"].role
    grouped = sorted(c.source for c in engine.people.clustering_sources())
    try:
        with engine.acting_as(session["account"].name):
            people = engine.people.list(source=source or None) if grouped or source else []
    except (PeopleError, UnknownSourceError) as exc:
        refused = _refusal(exc)  # a source that is not there or groups nothing: the reason, and no list
        return _page("people.html", "People", session, max(status, refused.status), sections=[], source="",
                     error=refused.message, flash=None, selected=selected, can_edit=False, all_sources=grouped)
    sections = [{"source": name, "people": [p for p in people if p["source"] == name]}
                for name in grouped if not source or name == source]
    _show_pictures(request, session, [p["cover"]["face_id"] for p in people if p["cover"]])
    return _page("people.html", "People", session, status, sections=sections, source=source, error=error,
                 flash=_take_flash(request, session), selected=selected, can_edit=role in EDITORS,
                 all_sources=grouped)


@people_web.post("/ui/people/cluster", include_in_schema=False)
def cluster_submit(request: Request, source: str = Form(""), view: str = Form(""), csrf: str = Form("")) -> Response:
    session = _signed_in(request, *EDITORS)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    try:
        with engine.acting_as(session["account"].name):
            run = engine.people.cluster(source)
    except (PeopleError, UnknownSourceError, DataDirLockedError) as exc:
        refused = _refusal(exc)
        return _people_list(request, session, error=refused.message, status=refused.status)
    _flash(request, session, (
        f"Clustering of {run['source']} done: {run['faces']} face(s), {run['people']} people ({run['new_people']} new, "
        f"{run['people_removed']} gone), {run['faces_moved']} face(s) moved, {run['unassigned']} left unassigned, "
        f"{run['pinned']} kept where a correction put them."))
    return RedirectResponse(_where("/ui/people", source=view and run["source"]), status_code=303)


@people_web.post("/ui/people/merge", include_in_schema=False)
def merge_submit(request: Request, ids: list[str] = Form([]), view: str = Form(""), csrf: str = Form("")) -> Response:
    session = _signed_in(request, *EDITORS)
    _check_csrf(session, csrf)
    engine = engine_of(request)
    chosen: list[int] = []
    try:
        chosen = list(dict.fromkeys(_stored_id(i, "person") for i in ids[:MAX_IDS + 1]))
        if len(chosen) < 2:
            raise _Refused(400, "Tick the boxes of two or more people of one source to merge them (the first ticked, "
                           f"in the page's order, keeps its id); {len(chosen) or 'none'} ticked.")
        if len(chosen) > MAX_IDS:
            raise _Refused(400, f"At most {MAX_IDS} people are merged at once; tick fewer.")
        with engine.acting_as(session["account"].name):
            merged = engine.people.merge(chosen)
    except _Refused as exc:
        return _people_list(request, session, source=_known(engine, view), error=exc.message, status=exc.status,
                            selected=frozenset(chosen))
    except (PeopleError, DataDirLockedError) as exc:
        refused = _refusal(exc)
        return _people_list(request, session, source=_known(engine, view), error=refused.message,
                            status=refused.status, selected=frozenset(chosen))
    others = ", ".join(str(i) for i in chosen if i != merged["id"])
    _flash(request, session, f"Merged person(s) {others} into {_label(merged)}: {merged['count']} face(s) now.")
    return RedirectResponse(f"/ui/people/{merged['id']}", status_code=303)


def _known(engine: Any, source: str) -> str:
    """``source`` when it groups its faces (the view to show again), else no filter."""
    return source if source in {c.source for c in engine.people.clustering_sources()} else ""


# -- one person ---------------------------------------------------------------------------------


@people_web.get("/ui/people/{person_id}", response_class=HTMLResponse, include_in_schema=False)
def person_page(person_id: str, request: Request) -> HTMLResponse:
    session = _signed_in(request, *READERS)
    return _person(request, session, person_id)


def _person(request: Request, session: dict[str, Any], person_id: str | int, *, error: str = "", status: int = 200,
            name: str | None = None, selected: frozenset[int] = frozenset()) -> HTMLResponse:
    """A person's faces in a grid with the forms that correct it; the list, with the reason, when there is none."""
    engine = engine_of(request)
    try:
        number = person_id if isinstance(person_id, int) else _stored_id(person_id, "person")
        with engine.acting_as(session["account"].name):
            person = engine.people.show(number)
    except _Refused as exc:
        return _people_list(request, session, error=exc.message, status=404)
    except PeopleError as exc:
        refused = _refusal(exc)
        return _people_list(request, session, error=error or refused.message, status=max(status, refused.status))
    role = session["account"].role
    _show_pictures(request, session, [f["face_id"] for f in person["faces"]])
    return _page("person.html", _label(person), session, status, person=person, error=error,
                 flash=_take_flash(request, session), name=(person["name"] or "") if name is None else name,
                 max_name=MAX_NAME, selected=selected, can_edit=role in EDITORS, can_forget=role in FORGETTERS)


#: What a correction does: given the engine and the person's id, where to go next and the message there.
Correction = Callable[[Any, int], tuple[str, dict[str, str]]]


def _change(request: Request, session: dict[str, Any], person_id: str, correction: Correction,
            **redisplay: Any) -> Response:
    """Carry out ``correction`` and redirect, or show the person's page with why it cannot be done."""
    engine = engine_of(request)
    try:
        number = _stored_id(person_id, "person")
    except _Refused as exc:
        return _people_list(request, session, error=exc.message, status=404)
    try:
        with engine.acting_as(session["account"].name):
            target, message = correction(engine, number)
    except _Refused as exc:
        return _person(request, session, number, error=exc.message, status=exc.status, **redisplay)
    except (PeopleError, DataDirLockedError) as exc:
        refused = _refusal(exc)
        return _person(request, session, number, error=refused.message, status=refused.status, **redisplay)
    _flash(request, session, **message)
    return RedirectResponse(target, status_code=303)


@people_web.post("/ui/people/{person_id}/name", include_in_schema=False)
def name_submit(person_id: str, request: Request, name: str = Form(""), clear: str = Form(""),
                csrf: str = Form("")) -> Response:
    session = _signed_in(request, *EDITORS)
    _check_csrf(session, csrf)

    def rename(engine: Any, number: int) -> tuple[str, dict[str, str]]:
        if not clear and not name.strip():
            raise _Refused(400, "The name is empty: type a name, or remove the person's name with \"Clear name\".")
        person = engine.people.name(number, None if clear else name)
        said = f"Named this person {person['name']}." if person["name"] else "The person's name was cleared."
        return f"/ui/people/{number}", {"text": f"{said} Its {person['count']} face(s) stay with it through later runs."}

    return _change(request, session, person_id, rename, name=name)


@people_web.post("/ui/people/{person_id}/split", include_in_schema=False)
def split_submit(person_id: str, request: Request, faces: list[str] = Form([]), csrf: str = Form("")) -> Response:
    session = _signed_in(request, *EDITORS)
    _check_csrf(session, csrf)

    def split(engine: Any, number: int) -> tuple[str, dict[str, str]]:
        chosen = list(dict.fromkeys(_stored_id(f, "face") for f in faces[:MAX_IDS + 1]))
        if not chosen:
            raise _Refused(400, "Tick the faces to split off (click their crops), then \"Split off\"; none was ticked.")
        if len(chosen) > MAX_IDS:
            raise _Refused(400, f"At most {MAX_IDS} faces are split off at once; tick fewer.")
        new = engine.people.split(number, chosen)
        return f"/ui/people/{number}", {
            "text": f"Split {new['count']} face(s) off into a new person; no later run puts them back together.",
            "href": f"/ui/people/{new['id']}", "link": f"Open {_label(new)}"}

    ticked = frozenset(int(f) for f in faces if _ID.fullmatch(f.strip()))
    return _change(request, session, person_id, split, selected=ticked)


@people_web.post("/ui/people/{person_id}/forget", include_in_schema=False)
def forget_submit(person_id: str, request: Request, confirm: str = Form(""), csrf: str = Form("")) -> Response:
    session = _signed_in(request, *FORGETTERS)
    _check_csrf(session, csrf)

    def forget(engine: Any, number: int) -> tuple[str, dict[str, str]]:
        if confirm != "yes":
            raise _Refused(400, "Tick \"I understand\" to forget this person; nothing was changed.")
        done = engine.people.forget(number)
        return _where("/ui/people", source=done["source"]), {"text": (
            f"Person {number} forgotten: its name and grouping are gone; its {done['faces']} face(s) stay in the "
            "gallery and are never grouped automatically again.")}

    return _change(request, session, person_id, forget)


__all__ = ["people_web", "READERS", "EDITORS", "FORGETTERS"]
