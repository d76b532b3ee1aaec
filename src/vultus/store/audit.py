"""The audit log: append-only, hash-chained, with a keyed head so truncation shows too.

Each entry's hash covers the previous entry's hash and the canonical JSON of the entry
(id, time, actor, action, details). Editing an entry breaks its hash; deleting one breaks
the next entry's link (and leaves a gap in the ids); reordering breaks both. Deleting
the newest entries leaves a valid chain, so the head (last id and hash) is also kept in
the meta table under a MAC made with the deployment's key, which a tamperer without the
key file cannot forge. Entries are appended inside the caller's transaction, so an action
and its record commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterator

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .schema import audit, meta, search_hits

__all__ = ["AuditAction", "AuditEntry", "AuditLog", "Verification", "GENESIS"]

GENESIS = "0" * 64
_HEAD_KEY = "audit_head"


class AuditAction(StrEnum):
    """Everything that is logged."""

    SOURCE_ADD = "source.add"
    SOURCE_SET = "source.set"
    INGEST = "ingest"
    SEARCH = "search"
    ACCESS = "access"
    ERASURE = "erasure"
    OBJECTION = "objection"
    SUPPRESSION_WITHDRAW = "suppression.withdraw"
    RESTRICTION = "restriction"
    RESTRICTION_LIFT = "restriction.lift"
    PURGE = "purge"
    KEYS_ROTATE = "keys.rotate"
    CALIBRATION = "calibration"
    MODEL_CHANGE = "model.change"
    PUBLIC_REQUEST = "request.public"
    USER_ADD = "user.add"
    USER_DISABLE = "user.disable"
    USER_PASSWORD = "user.password"
    #: Clustering turned on or off for a source (with the source's legal basis).
    PEOPLE_CLUSTERING = "people.clustering"
    #: A full clustering run over a source, and the faces placed at ingest.
    PEOPLE_CLUSTER = "people.cluster"
    PEOPLE_PLACE = "people.place"
    #: People listed or one shown (their faces are personal data).
    PEOPLE_LIST = "people.list"
    PEOPLE_SHOW = "people.show"
    #: A user's corrections: a name given or cleared, groups merged, faces split off, a group forgotten.
    PEOPLE_NAME = "people.name"
    PEOPLE_MERGE = "people.merge"
    PEOPLE_SPLIT = "people.split"
    PEOPLE_FORGET = "people.forget"
    #: The deployment copied into another store and index (`vultus migrate`): logged on both.
    DEPLOYMENT_MIGRATE = "deployment.migrate"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Verification:
    """Result of checking the chain: ok, or the first entry found wrong and why."""

    ok: bool
    checked: int
    bad_id: int | None = None
    problem: str = ""


def canonical(entry_id: int, at: str, actor: str, action: str, details: dict[str, Any]) -> str:
    """The exact text that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        {"id": entry_id, "at": at, "actor": actor, "action": action, "details": details},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def chain_hash(prev_hash: str, text: str) -> str:
    return hashlib.sha256((prev_hash + "\n" + text).encode()).hexdigest()


class AuditLog:
    """Appends to and checks the audit table of one store."""

    def __init__(self, mac: Any):
        #: ``mac(bytes) -> str``: the keyed hash that protects the head.
        self._mac = mac

    def append(
        self, conn: Connection, *, at: str, actor: str, action: AuditAction, details: dict[str, Any]
    ) -> int:
        """Add an entry inside ``conn``'s transaction; return its id."""
        # Writing first takes SQLite's write lock (PostgreSQL: the head row's lock, until the
        # commit), so two processes cannot both chain onto the same previous entry.
        conn.execute(update(meta).where(meta.c.key == _HEAD_KEY).values(value=meta.c.value))
        last = conn.execute(select(audit.c.id, audit.c.hash).order_by(audit.c.id.desc()).limit(1)).first()
        prev_hash = last.hash if last else GENESIS
        # The id is the next after both the last entry and the signed head: no gap when a
        # transaction rolls back (a PostgreSQL sequence would skip the id it gave out, and the
        # chain would read as an entry removed), and still a gap after entries were deleted
        # from the end, so that truncation shows.
        head = conn.execute(select(meta.c.value).where(meta.c.key == _HEAD_KEY)).scalar() or ""
        head_id = int(head.split(":", 1)[0]) if head[:1].isdigit() else 0
        entry_id = max(last.id if last else 0, head_id) + 1
        conn.execute(audit.insert().values(id=entry_id, at=at, actor=actor, action=str(action), details="{}",
                                           prev_hash=prev_hash, hash=""))
        text = canonical(entry_id, at, actor, str(action), details)
        digest = chain_hash(prev_hash, text)
        stored_details = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        conn.execute(update(audit).where(audit.c.id == entry_id).values(details=stored_details, hash=digest))
        head = self._head_value(entry_id, digest)
        if conn.execute(update(meta).where(meta.c.key == _HEAD_KEY).values(value=head)).rowcount == 0:
            conn.execute(meta.insert().values(key=_HEAD_KEY, value=head))
        if action == AuditAction.SEARCH:
            hits = [
                {"audit_id": entry_id, "image_sha256": c["image_sha256"], "face_id": c["face_id"]}
                for c in details.get("candidates", [])
            ]
            if hits:
                conn.execute(search_hits.insert(), hits)
        return int(entry_id)

    def _head_value(self, entry_id: int, digest: str) -> str:
        return f"{entry_id}:{digest}:{self._mac(f'{entry_id}:{digest}'.encode())}"

    def entries(
        self, conn: Connection, *, since: str | None = None, until: str | None = None, action: str | None = None
    ) -> Iterator[AuditEntry]:
        """Entries in order, optionally within [since, until) and of one action."""
        query = select(audit).order_by(audit.c.id)
        if since:
            query = query.where(audit.c.at >= since)
        if until:
            query = query.where(audit.c.at < until)
        if action:
            query = query.where(audit.c.action == action)
        for row in conn.execute(query):
            yield AuditEntry(row.id, row.at, row.actor, row.action, json.loads(row.details), row.prev_hash, row.hash)

    def verify(self, conn: Connection) -> Verification:
        """Walk the whole chain; report the first edited, removed or reordered entry."""
        prev_hash, prev_id, checked = GENESIS, 0, 0
        for row in conn.execute(select(audit).order_by(audit.c.id)):
            try:
                details = json.loads(row.details)
            except ValueError:
                return Verification(False, checked, row.id, "its details are not valid JSON (edited)")
            if row.id != prev_id + 1:
                gone = f"entry {prev_id + 1} is" if row.id == prev_id + 2 else f"entries {prev_id + 1} to {row.id - 1} are"
                return Verification(False, checked, prev_id + 1, f"{gone} missing (removed)")
            if row.prev_hash != prev_hash:
                return Verification(False, checked, row.id, "it does not link to the entry before it (removed or reordered)")
            if chain_hash(prev_hash, canonical(row.id, row.at, row.actor, row.action, details)) != row.hash:
                return Verification(False, checked, row.id, "its content does not match its hash (edited)")
            prev_hash, prev_id, checked = row.hash, row.id, checked + 1
        head = conn.execute(select(meta.c.value).where(meta.c.key == _HEAD_KEY)).scalar()
        if checked == 0 and not head:
            return Verification(True, 0)
        if head != self._head_value(prev_id, prev_hash):
            return Verification(
                False, checked, prev_id + 1,
                "the log ends earlier than its signed head says (entries removed from the end) "
                "or the head was altered",
            )
        return Verification(True, checked)
