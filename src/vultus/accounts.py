"""Accounts and sources: registering who may use a deployment, and where its photos come from, audited."""

from __future__ import annotations

from .people import set_clustering
from .policy import source_fields
from .store import AuditAction, SourceRecord, MetadataStore, iso, utcnow
from .store.accounts import Account

__all__ = ["add_source", "add_user", "disable_user", "set_password"]


def add_source(store: MetadataStore, *, actor: str, name: str, basis: str, purpose: str, retention: str,
               controller: str | None = None, consent_ref: str | None = None, clustering: bool = False,
               clustering_note: str | None = None) -> SourceRecord:
    """Register a source of photos with its controller, legal basis, purpose and retention.

    With ``clustering``, its registration allows grouping its faces into people (recorded and
    audited as :func:`vultus.people.set_clustering` does), in the same transaction.
    """
    fields = source_fields(
        name, basis=basis, purpose=purpose, retention=retention, controller=controller, consent_ref=consent_ref
    )
    with store.transaction():
        record = store.add_source(**fields)
        store.log(actor=actor, action=AuditAction.SOURCE_ADD, details=fields)
        if clustering:
            set_clustering(store, actor=actor, source=record.name, enabled=True, note=clustering_note)
    return record


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
