"""Accounts and sources: registering who may use a deployment, and where its photos come from, audited."""

from __future__ import annotations

from typing import Iterable

from .errors import InvalidSourceError
from .people import set_clustering
from .policy import source_fields, source_purposes
from .store import AuditAction, SourceRecord, MetadataStore, iso, utcnow
from .store.accounts import Account

__all__ = ["add_source", "set_source", "add_user", "disable_user", "set_password"]


def add_source(store: MetadataStore, *, actor: str, name: str, basis: str, purpose: str, retention: str,
               controller: str | None = None, consent_ref: str | None = None,
               purposes: Iterable[str] | str | None = None, clustering: bool = False,
               clustering_note: str | None = None) -> SourceRecord:
    """Register a source of photos with its controller, legal basis, purpose, retention and the
    search categories it may be searched for (``purposes``; None: the one closest to ``purpose``).

    With ``clustering``, its registration allows grouping its faces into people (recorded and
    audited as :func:`vultus.people.set_clustering` does), in the same transaction.
    """
    fields = source_fields(
        name, basis=basis, purpose=purpose, retention=retention, controller=controller, consent_ref=consent_ref,
        purposes=purposes,
    )
    with store.transaction():
        record = store.add_source(**fields)
        store.log(actor=actor, action=AuditAction.SOURCE_ADD,
                  details={**fields, "purposes_from_text": purposes is None})
        if clustering:
            set_clustering(store, actor=actor, source=record.name, enabled=True, note=clustering_note)
    return record


def set_source(store: MetadataStore, *, actor: str, name: str, purposes: Iterable[str] | str | None = None,
               clustering: bool | None = None, clustering_note: str | None = None) -> SourceRecord:
    """Change what a source allows: the search categories it may be searched for (``purposes``)
    and whether its faces are grouped into people (``clustering``), in one transaction.

    A change of categories is audited with the values before and after; a change that changes
    nothing is still logged (someone asked for it). The clustering switch is recorded and
    audited by :func:`vultus.people.set_clustering`. Giving nothing to change is refused.
    """
    if purposes is None and clustering is None:
        raise InvalidSourceError(f"Nothing to change for source {name!r}: give --purposes CATEGORY[,CATEGORY...] "
                                 "or --clustering / --no-clustering.")
    if purposes is not None:
        with store.transaction():
            before = store.get_source(name)
            categories = [c.value for c in source_purposes(purposes, before.purpose)]
            after = store.set_source_purposes(name, categories)
            store.log(actor=actor, action=AuditAction.SOURCE_SET,
                      details={"name": name, "before": {"purposes": list(before.purposes)},
                               "after": {"purposes": list(after.purposes)}})
    if clustering is not None:
        # Its own transaction: turning it off then leaves no copy of the groups (purge_deleted).
        set_clustering(store, actor=actor, source=name, enabled=clustering, note=clustering_note)
    return store.get_source(name)


def add_user(store: MetadataStore, *, actor: str, name: str, role: str) -> tuple[Account, str]:
    """Create an account; return it and its token, which is shown this once only."""
    account, token = store.accounts.add(name, role, at=iso(utcnow()))
    store.log(actor=actor, action=AuditAction.USER_ADD, details={"name": name, "role": account.role.value})
    return account, token


def disable_user(store: MetadataStore, *, actor: str, name: str) -> None:
    """Disable an account: its token stops working; its audit entries stay."""
    store.accounts.disable(name, at=iso(utcnow()))
    store.log(actor=actor, action=AuditAction.USER_DISABLE, details={"name": name})


def set_password(store: MetadataStore, *, actor: str, name: str, password: str) -> None:
    """Give an account a password for the web sign-in."""
    store.accounts.set_password(name, password)
    store.log(actor=actor, action=AuditAction.USER_PASSWORD, details={"name": name})
