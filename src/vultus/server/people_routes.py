"""The `/v1/people` routes (and a source's clustering switch): one thin route per engine operation, each role-checked.

Who may do what: investigators (who ingest and search) and DPOs list and look at people and
may forget a group; investigators correct groups (name, merge, split) and run a clustering;
only administrators, who register sources, turn clustering on or off for a source.
Added to :data:`vultus.server.routes.router` (under ``/v1``) by :func:`install`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from ..store.accounts import Account, Role
from .access import engine_of, require


#: Largest id SQLite stores (int64).
MAX_ID = 2**63 - 1
#: Most ids one merge or split names (a person's faces are listed page by page by nobody: a cap keeps a body bounded).
MAX_IDS = 10_000
READERS = (Role.INVESTIGATOR, Role.DPO)

PersonId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The person's id.")]
StoredId = Annotated[int, Field(ge=1, le=MAX_ID)]


def list_people(request: Request, source: str | None = None,
                account: Account = Depends(require(*READERS))) -> list[dict[str, Any]]:
    """Every person (of SOURCE) with ``id``, ``name``, ``count``, ``cover`` and ``faces`` (each with
    ``face_id``, ``path``, ``box``); audited."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.list(source=source)


def show_person(person_id: PersonId, request: Request, account: Account = Depends(require(*READERS))) -> dict[str, Any]:
    """One person with its faces; audited."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.show(person_id)


class Naming(BaseModel):
    name: str | None = Field(description="The name to give; null clears it.", max_length=10_000)


def name_person(person_id: PersonId, body: Naming, request: Request,
                account: Account = Depends(require(Role.INVESTIGATOR))) -> dict[str, Any]:
    """Give a person a name (or clear it with null); its faces are pinned so the name stays with them."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.name(person_id, body.name)


class Merge(BaseModel):
    ids: list[StoredId] = Field(min_length=2, max_length=MAX_IDS,
                                description="People of one source; the first keeps its id and takes the others' faces.")


def merge_people(body: Merge, request: Request, account: Account = Depends(require(Role.INVESTIGATOR))) -> dict[str, Any]:
    """Merge people of one source into the first id; returns the merged person."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.merge(body.ids)


class Split(BaseModel):
    faces: list[StoredId] = Field(min_length=1, max_length=MAX_IDS, description="Face ids of the person to split off.")


def split_person(person_id: PersonId, body: Split, request: Request,
                 account: Account = Depends(require(Role.INVESTIGATOR))) -> dict[str, Any]:
    """Split faces off a person into a new one (a video appearance moves whole); returns the new person."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.split(person_id, body.faces)


def forget_person(person_id: PersonId, request: Request,
                  account: Account = Depends(require(Role.INVESTIGATOR, Role.DPO))) -> dict[str, Any]:
    """Drop a person's grouping and name; its faces stay, never grouped automatically again."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.forget(person_id)


class Clustering(BaseModel):
    source: str


def cluster_people(body: Clustering, request: Request,
                   account: Account = Depends(require(Role.INVESTIGATOR))) -> dict[str, Any]:
    """Group a source's faces into people in full, keeping every correction; the run's figures."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.cluster(body.source)


class ClusteringSwitch(BaseModel):
    enabled: bool
    note: str | None = Field(None, max_length=10_000,
                             description="Where the decision that allows grouping is recorded (with enabled).")


def set_clustering(name: str, body: ClusteringSwitch, request: Request,
                   account: Account = Depends(require(Role.ADMIN))) -> dict[str, Any]:
    """Allow (or stop) grouping a source's faces into people (admin); off deletes its people groups."""
    engine = engine_of(request)
    with engine.acting_as(account.name):
        return engine.people.set_clustering(name, enabled=body.enabled, note=body.note)


def install(router: APIRouter) -> None:
    """Add these routes to ``router`` (the ``/v1`` API), after its own."""
    router.add_api_route("/people", list_people, methods=["GET"], tags=["people"])
    router.add_api_route("/people/{person_id}", show_person, methods=["GET"], tags=["people"])
    router.add_api_route("/people/{person_id}/name", name_person, methods=["POST"], tags=["people"])
    router.add_api_route("/people/merge", merge_people, methods=["POST"], tags=["people"])
    router.add_api_route("/people/{person_id}/split", split_person, methods=["POST"], tags=["people"])
    router.add_api_route("/people/{person_id}/forget", forget_person, methods=["POST"], tags=["people"])
    router.add_api_route("/people/cluster", cluster_people, methods=["POST"], tags=["people"])
    router.add_api_route("/sources/{name}/clustering", set_clustering, methods=["POST"], tags=["sources"])
