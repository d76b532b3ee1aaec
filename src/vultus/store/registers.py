"""The registers of data-subject rights: suppression entries and the requests register."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy import delete, func, literal, select, update

from ..errors import UnknownRequestError
from .blobs import Cipher
from .schema import public_attempts, requests, suppressions
from .session import Session

__all__ = ["Registers", "Suppression", "Request"]

_CONTEXT = b"suppression"
_REQUEST_CONTEXT = b"request-template"
_CONTACT_CONTEXT = b"request-contact"


@dataclass(frozen=True)
class Suppression:
    """A suppression entry as it may be listed: by id only, never with its template."""

    id: int
    created_at: str
    withdrawn_at: str | None


@dataclass(frozen=True)
class Request:
    """One data-subject request and its deadline."""

    id: int
    kind: str
    received_at: str
    due_at: str
    completed_at: str | None
    probe_sha256: str | None
    outcome: str | None
    origin: str = "operator"

    def as_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


_REQUEST_COLUMNS = (
    requests.c.id,
    requests.c.kind,
    requests.c.received_at,
    requests.c.due_at,
    requests.c.completed_at,
    requests.c.probe_sha256,
    requests.c.outcome,
    requests.c.origin,
)


class Registers:
    """Suppression entries (sealed templates) and requests, in the store's database."""

    def __init__(self, session: Session, cipher: Cipher):
        self.session = session
        self.cipher = cipher

    # -- suppressions -----------------------------------------------------------------------

    def add_suppression(self, template: np.ndarray, *, model_id: str, at: str) -> int:
        conn = self.session.current()
        sealed = self.cipher.encrypt(np.asarray(template, dtype="<f4").tobytes(), _CONTEXT)
        return int(
            conn.execute(
                suppressions.insert().values(created_at=at, template=sealed, model_id=model_id)
            ).inserted_primary_key[0]
        )

    def active_templates(self, model_id: str) -> np.ndarray:
        """Every active suppression template of ``model_id``, decrypted, as an (n, dim) array."""
        with self.session.read() as conn:
            rows = conn.execute(
                select(suppressions.c.template).where(
                    suppressions.c.withdrawn_at.is_(None), suppressions.c.model_id == model_id
                )
            ).scalars().all()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(self.cipher.decrypt(r, _CONTEXT), dtype="<f4") for r in rows]).astype(np.float32)

    def suppression_models(self) -> list[str]:
        """The model ids under which active suppression entries were recorded."""
        with self.session.read() as conn:
            return sorted(
                conn.execute(
                    select(suppressions.c.model_id).where(suppressions.c.withdrawn_at.is_(None)).distinct()
                ).scalars().all()
            )

    def open_request_models(self) -> dict[str, int]:
        """Open public requests that hold a sealed template, counted by the template's model."""
        with self.session.read() as conn:
            rows = conn.execute(
                select(requests.c.model_id, func.count())
                .where(requests.c.completed_at.is_(None), requests.c.template.is_not(None))
                .group_by(requests.c.model_id)
            ).all()
        return {str(model): int(count) for model, count in rows}

    def list_suppressions(self) -> list[Suppression]:
        with self.session.read() as conn:
            rows = conn.execute(
                select(suppressions.c.id, suppressions.c.created_at, suppressions.c.withdrawn_at).order_by(suppressions.c.id)
            ).all()
        return [Suppression(r.id, r.created_at, r.withdrawn_at) for r in rows]

    def withdraw_suppression(self, suppression_id: int, *, at: str) -> bool:
        """Withdraw an entry: its template is erased, its id and dates stay for the record."""
        conn = self.session.current()
        return bool(
            conn.execute(
                update(suppressions)
                .where(suppressions.c.id == suppression_id, suppressions.c.withdrawn_at.is_(None))
                .values(withdrawn_at=at, template=None)
            ).rowcount
        )

    def reseal_suppressions(self, is_current: Callable[[bytes], bool]) -> int:
        """Re-encrypt templates not sealed under the current key; return how many."""
        done = 0
        with self.session.write() as conn:
            for row in conn.execute(select(suppressions.c.id, suppressions.c.template)).all():
                if row.template is not None and not is_current(row.template):
                    plain = self.cipher.decrypt(row.template, _CONTEXT)
                    conn.execute(
                        update(suppressions)
                        .where(suppressions.c.id == row.id)
                        .values(template=self.cipher.encrypt(plain, _CONTEXT))
                    )
                    done += 1
        return done

    def reseal_requests(self, is_current: Callable[[bytes], bool]) -> int:
        """Re-encrypt open public requests' templates and contacts not under the current key."""
        done = 0
        with self.session.write() as conn:
            rows = conn.execute(select(requests.c.id, requests.c.template, requests.c.contact)).all()
            for row in rows:
                values = {}
                for column, context in (("template", _REQUEST_CONTEXT), ("contact", _CONTACT_CONTEXT)):
                    sealed = getattr(row, column)
                    if sealed is not None and not is_current(sealed):
                        values[column] = self.cipher.encrypt(self.cipher.decrypt(sealed, context), context)
                if values:
                    conn.execute(update(requests).where(requests.c.id == row.id).values(**values))
                    done += 1
        return done

    # -- requests ---------------------------------------------------------------------------

    def open_request(self, *, kind: str, received_at: str, due_at: str, probe_sha256: str | None) -> int:
        conn = self.session.current()
        return int(
            conn.execute(
                requests.insert().values(kind=kind, received_at=received_at, due_at=due_at, probe_sha256=probe_sha256)
            ).inserted_primary_key[0]
        )

    def complete_request(self, request_id: int, *, at: str, outcome: str) -> None:
        """Mark a request done; a public request's face template and hashes are erased with it."""
        conn = self.session.current()
        conn.execute(
            update(requests).where(requests.c.id == request_id).values(
                completed_at=at, outcome=outcome, template=None, contact_hash=None, client_hash=None
            )
        )
        conn.execute(delete(public_attempts).where(public_attempts.c.request_id == request_id))

    def list_requests(self, *, overdue_at: str | None = None) -> list[Request]:
        """All requests, or only those open past their due date at ``overdue_at``."""
        query = select(*_REQUEST_COLUMNS).order_by(requests.c.id)
        if overdue_at is not None:
            query = query.where(requests.c.completed_at.is_(None), requests.c.due_at < overdue_at)
        with self.session.read() as conn:
            return [Request(**row) for row in conn.execute(query).mappings()]

    def get_request(self, request_id: int) -> Request:
        with self.session.read() as conn:
            row = conn.execute(select(*_REQUEST_COLUMNS).where(requests.c.id == request_id)).mappings().first()
        if row is None:
            raise UnknownRequestError(f"There is no request {request_id}; see the requests register.")
        return Request(**row)

    # -- public requests ----------------------------------------------------------------------

    def open_public_request(
        self, *, kind: str, template: np.ndarray, model_id: str, contact: str,
        received_at: str, due_at: str, probe_sha256: str, attempt_id: int,
    ) -> int:
        """Register a public request (template and contact sealed) for its reserved attempt.

        ``template`` may hold one row per probe photo: its rows are sealed one after the other."""
        conn = self.session.current()
        request_id = int(
            conn.execute(
                requests.insert().values(
                    kind=kind, received_at=received_at, due_at=due_at, probe_sha256=probe_sha256, origin="public",
                    template=self.cipher.encrypt(np.asarray(template, dtype="<f4").tobytes(), _REQUEST_CONTEXT),
                    model_id=model_id,
                    contact=self.cipher.encrypt(contact.encode(), _CONTACT_CONTEXT),
                )
            ).inserted_primary_key[0]
        )
        conn.execute(update(public_attempts).where(public_attempts.c.id == attempt_id).values(request_id=request_id))
        return request_id

    def _hash(self, kind: str, value: str) -> str:
        # Keyed, and by kind, so that the same text as contact and as client never match.
        return self.cipher.mac(f"public-{kind}:{value}".encode())

    def refused_public_attempt(self, attempt_id: int) -> None:
        """Keep a refused attempt counted against its client only, not its contact address."""
        with self.session.write() as conn:
            conn.execute(update(public_attempts).where(public_attempts.c.id == attempt_id).values(contact_hash=""))

    def forget_public_attempts(self, *, before: str) -> None:
        """Delete the public page's attempt records older than ``before`` (their hashes too)."""
        old = public_attempts.c.at < before
        with self.session.write() as conn:
            if conn.execute(select(public_attempts.c.id).where(old).limit(1)).first() is not None:
                conn.execute(delete(public_attempts).where(old))

    def reserve_public_attempt(self, *, contact: str, client: str, at: str, since: str, limit: int) -> int | None:
        """Count one public attempt and return its id, or None if ``limit`` were already made
        since ``since`` from this contact address or client.

        The count and the insert are one SQL statement, so concurrent requests cannot all
        pass the check before any of them is counted (SQLite runs a writing statement under
        the database's write lock, from its first read to its commit; on PostgreSQL, whose
        statements read a snapshot, the dialect's lock serializes the attempts).
        """
        contact_hash = self._hash("contact", contact.strip().lower())
        client_hash = self._hash("client", client)
        recent = (
            select(func.count()).select_from(public_attempts).where(
                public_attempts.c.at >= since,
                (public_attempts.c.contact_hash == contact_hash) | (public_attempts.c.client_hash == client_hash),
            ).scalar_subquery()
        )
        values = select(literal(at), literal(contact_hash), literal(client_hash)).where(recent < limit)
        with self.session.write() as conn:
            self.session.dialect.serialize(conn, "public_attempts")
            conn.execute(delete(public_attempts).where(public_attempts.c.at < since))
            # RETURNING, not rowcount (which drivers need not report for an INSERT ... SELECT).
            inserted = conn.execute(
                public_attempts.insert().from_select(["at", "contact_hash", "client_hash"], values)
                .returning(public_attempts.c.id)
            ).scalar()
            return None if inserted is None else int(inserted)

    def public_request_template(self, request_id: int) -> tuple[Request, np.ndarray, str]:
        """An open public request, its requester's template (flat: several photos' rows one after
        the other) and the template's model id."""
        request = self.get_request(request_id)
        with self.session.read() as conn:
            row = conn.execute(select(requests.c.template, requests.c.model_id).where(requests.c.id == request_id)).first()
        if request.origin != "public" or request.completed_at is not None or row.template is None:
            raise UnknownRequestError(f"Request {request_id} is not an open public request; see the requests register.")
        vector = np.frombuffer(self.cipher.decrypt(row.template, _REQUEST_CONTEXT), dtype="<f4").astype(np.float32)
        return request, vector, row.model_id

    def contact_of(self, request_id: int) -> str | None:
        """The contact address a public requester gave (decrypted), or None."""
        with self.session.read() as conn:
            sealed = conn.execute(select(requests.c.contact).where(requests.c.id == request_id)).scalar()
        return None if sealed is None else self.cipher.decrypt(sealed, _CONTACT_CONTEXT).decode()
