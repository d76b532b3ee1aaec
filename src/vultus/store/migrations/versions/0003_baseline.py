"""Revision 3, the baseline: the schema of schema version 3, as Vultus wrote it before migrations.

Its tables are frozen here, not imported from ``schema.py``: a later revision changes the
tables there, never what this revision created. A database made before migrations, at
schema version 3, is stamped with this revision once it is found to have these tables.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    BigInteger,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

revision = "3"
down_revision = None
branch_labels = None
depends_on = None

#: Tables added while the schema version stayed 3: a database at version 3 may lack them,
#: and Vultus created them on open, as stamping it does.
ADDED_AT_VERSION_3 = ("public_attempts", "erasures")

#: Ids and what refers to them, and counts that may pass 2**31: INTEGER on SQLite (its
#: INTEGER PRIMARY KEY is 64-bit already, and AUTOINCREMENT needs that exact type), BIGINT
#: (BIGSERIAL for an id) on PostgreSQL, whose INTEGER is 32-bit.
_BIG = Integer().with_variant(BigInteger(), "postgresql")

tables = MetaData()

#: Key/value facts about the deployment (schema version, ...).
meta = Table(
    "meta",
    tables,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: A registered collection with its provenance: who controls it, on what legal basis, why,
#: and for how long its photos may be kept. No template is computed without one.
sources = Table(
    "sources",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("controller", Text, nullable=False),
    Column("legal_basis", String(32), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("retention_days", Integer, nullable=False),
    Column("consent_ref", Text),
    Column("created_at", String(32), nullable=False),
)

#: One indexed photo. ``blob_key`` names the engine's own copy (None when no face was found,
#: so that no copy is kept without need); times are ISO-8601 UTC strings.
images = Table(
    "images",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("source_id", _BIG, ForeignKey("sources.id"), nullable=False, index=True),
    Column("original_path", Text, nullable=False),
    Column("size_bytes", _BIG, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("format", String(16), nullable=False),
    Column("ingested_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False, index=True),
    Column("face_count", Integer, nullable=False),
    Column("blob_key", Text),
    # Ids are never reused: a stale index entry must not come to mean another photo.
    sqlite_autoincrement=True,
)

#: One face in an image: where it is, how sure the detector was, and its template.
faces = Table(
    "faces",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("image_id", _BIG, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("box_left", Integer, nullable=False),
    Column("box_top", Integer, nullable=False),
    Column("box_right", Integer, nullable=False),
    Column("box_bottom", Integer, nullable=False),
    Column("landmarks", Text, nullable=False),
    Column("det_score", Float, nullable=False),
    # The template, float32, sealed with AES-GCM under the deployment's key.
    Column("embedding", LargeBinary, nullable=False),
    Column("model_id", String(64), nullable=False, index=True),
    Column("crop_key", Text),
    # GDPR Art. 18: a restricted face is kept (and shown in access reports) but never searched.
    Column("restricted", Integer, nullable=False, server_default="0"),
    sqlite_autoincrement=True,
)

#: The append-only, hash-chained log of everything done with the data (EU AI Act Art. 12).
#: ``hash`` = sha256(prev_hash + canonical JSON of id, at, actor, action, details).
audit = Table(
    "audit",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("at", String(32), nullable=False, index=True),
    Column("actor", Text, nullable=False),
    Column("action", String(32), nullable=False, index=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    sqlite_autoincrement=True,
)

#: Which photos each logged search returned, so an access request finds those searches.
search_hits = Table(
    "search_hits",
    tables,
    Column("audit_id", _BIG, ForeignKey("audit.id"), nullable=False, index=True),
    Column("image_sha256", String(64), nullable=False, index=True),
    Column("face_id", _BIG, nullable=False),
)

#: Faces whose owners objected (GDPR Art. 21): the template, sealed, never searchable;
#: ingest skips any face that matches one. Withdrawing clears the template.
suppressions = Table(
    "suppressions",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("template", LargeBinary),
    Column("model_id", String(64), nullable=False),
    Column("withdrawn_at", String(32)),
    sqlite_autoincrement=True,
)

#: Data-subject requests (access, erasure, objection, restriction), due one month after receipt.
requests = Table(
    "requests",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("received_at", String(32), nullable=False),
    Column("due_at", String(32), nullable=False, index=True),
    Column("completed_at", String(32)),
    Column("probe_sha256", String(64)),
    Column("outcome", Text),
    # "operator" (made at the command line or API) or "public" (the public request page).
    Column("origin", String(16), nullable=False, server_default="operator"),
    # Public requests only: the requester's face template and contact address, sealed, kept
    # until the request is carried out (the photo itself is never kept). The two hash
    # columns are no longer written (see public_attempts) and are cleared on open.
    Column("template", LargeBinary),
    Column("model_id", String(64)),
    Column("contact", LargeBinary),
    Column("contact_hash", String(64), index=True),
    Column("client_hash", String(64), index=True),
    sqlite_autoincrement=True,
)

#: Every attempt on the public request page in the last day, accepted or refused (no face,
#: unreadable photo), for its daily limit. The hashes are HMACs under the deployment's key
#: (an unkeyed hash of an e-mail address is reversed by a dictionary); rows older than a day
#: are deleted at the next attempt, and a request's row when it is carried out.
public_attempts = Table(
    "public_attempts",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("at", String(32), nullable=False, index=True),
    Column("contact_hash", String(64), nullable=False, index=True),
    Column("client_hash", String(64), nullable=False, index=True),
    Column("request_id", _BIG),
)

#: Accounts of the people who use the server: no anonymous use (ACLU v. Clearview).
#: Only a hash of each token is kept; the token itself is shown once, at creation.
users = Table(
    "users",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    # Optional, for the web sign-in: scrypt$n$r$p$salt$hash.
    Column("password_hash", Text),
    Column("created_at", String(32), nullable=False),
    Column("disabled_at", String(32)),
    sqlite_autoincrement=True,
)

#: Every erasure (a person's request, an objection, a purge), entered as an intent in the
#: transaction that deletes its rows: what is left to remove (blob keys and face ids; never
#: a template or an image) until it is done, then the signed receipt it produced. A crash
#: between the two leaves the intent for the next command to finish. The receipt lists
#: sha256s of the removed photos only, no biometric data.
erasures = Table(
    "erasures",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("request_id", _BIG),
    Column("started_at", String(32), nullable=False),
    # JSON {"blob_keys": [...], "face_ids": [...]}; cleared once done.
    Column("pending", Text),
    # JSON: the receipt's fields until done, then the signed receipt itself.
    Column("receipt", Text, nullable=False),
    Column("completed_at", String(32), index=True),
    sqlite_autoincrement=True,
)


def upgrade() -> None:
    bind = op.get_bind()
    tables.create_all(bind)
    meta = tables.tables["meta"]
    # Vultus before migrations checks this value; a later revision sets it to its own id, so
    # that such a release refuses a database it no longer knows instead of writing to it.
    op.bulk_insert(meta, [{"key": "schema_version", "value": revision}, {"key": "audit_head", "value": ""}])


def downgrade() -> None:
    raise NotImplementedError("Vultus does not downgrade a database: restore a backup made before the upgrade.")
