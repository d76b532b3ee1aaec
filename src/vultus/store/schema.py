"""The relational schema: sources, images and faces, the source of truth for everything."""

from __future__ import annotations

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

__all__ = [
    "metadata",
    "meta",
    "sources",
    "source_purposes",
    "images",
    "faces",
    "audit",
    "search_hits",
    "suppressions",
    "requests",
    "users",
    "public_attempts",
    "erasures",
    "clustering_sources",
    "people",
    "person_faces",
    "forgotten_faces",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = "6"

#: Ids and what refers to them, and counts that may pass 2**31: INTEGER on SQLite (its
#: INTEGER PRIMARY KEY is 64-bit already, and AUTOINCREMENT needs that exact type), BIGINT
#: (BIGSERIAL for an id) on PostgreSQL, whose INTEGER is 32-bit.
ID = Integer().with_variant(BigInteger(), "postgresql")

metadata = MetaData()

#: Key/value facts about the deployment (schema version, ...).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: A registered collection with its provenance: who controls it, on what legal basis, why,
#: and for how long its photos may be kept. No template is computed without one.
sources = Table(
    "sources",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("controller", Text, nullable=False),
    Column("legal_basis", String(32), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("retention_days", Integer, nullable=False),
    Column("consent_ref", Text),
    Column("created_at", String(32), nullable=False),
)

#: The search categories (vultus.categories.SearchCategory) a source may be searched for: a
#: search for another category never covers its faces (GDPR Art. 5(1)(b)). Revision 5.
source_purposes = Table(
    "source_purposes",
    metadata,
    Column("source_id", ID, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("category", String(32), primary_key=True),
)

#: One indexed photo or video. ``blob_key`` names the engine's own copy of a photo (None when
#: no face was found, so that no copy is kept without need, and always None for a video: the
#: engine keeps its stills and crops, never the video); times are ISO-8601 UTC strings. For a
#: video, width and height are the frame size and ``format`` the container's.
images = Table(
    "images",
    metadata,
    Column("id", ID, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("source_id", ID, ForeignKey("sources.id"), nullable=False, index=True),
    Column("original_path", Text, nullable=False),
    Column("size_bytes", ID, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("format", String(16), nullable=False),
    Column("ingested_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False, index=True),
    Column("face_count", Integer, nullable=False),
    Column("blob_key", Text),
    # "photo" or "video" (revision 4; rows from before it are photos).
    Column("media", String(8), nullable=False, server_default="photo"),
    # Seconds, for a video; NULL for a photo.
    Column("duration", Float),
    # Ids are never reused: a stale index entry must not come to mean another photo.
    sqlite_autoincrement=True,
)

#: One face in an image: where it is, how sure the detector was, and its template. In a video,
#: a face row is one template of an *appearance* (one person's stretch on screen): the rows of
#: one appearance share its number, time range, sampled times and still; each has the box and
#: time of the frame its template was seen in. All these columns are NULL for a photo's face.
faces = Table(
    "faces",
    metadata,
    Column("id", ID, primary_key=True),
    Column("image_id", ID, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
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
    # The appearance's number within its video (0, 1, ...); its rows are removed together.
    Column("appearance", Integer),
    # Seconds from the video's start of the frame this row's box and template come from.
    Column("media_time", Float),
    # Seconds of the first and last sampled frame the appearance was seen in.
    Column("time_start", Float),
    Column("time_end", Float),
    # JSON list of the sampled frame times (seconds) the appearance was seen at.
    Column("seen_at", Text),
    # Blob key of the appearance's still: its best frame with the face's box drawn (a JPEG,
    # encrypted like crops).
    Column("still_key", Text),
    sqlite_autoincrement=True,
)

#: The append-only, hash-chained log of everything done with the data (EU AI Act Art. 12).
#: ``hash`` = sha256(prev_hash + canonical JSON of id, at, actor, action, details).
audit = Table(
    "audit",
    metadata,
    Column("id", ID, primary_key=True),
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
    metadata,
    Column("audit_id", ID, ForeignKey("audit.id"), nullable=False, index=True),
    Column("image_sha256", String(64), nullable=False, index=True),
    Column("face_id", ID, nullable=False),
)

#: Faces whose owners objected (GDPR Art. 21): the template, sealed, never searchable;
#: ingest skips any face that matches one. Withdrawing clears the template.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("template", LargeBinary),
    Column("model_id", String(64), nullable=False),
    Column("withdrawn_at", String(32)),
    sqlite_autoincrement=True,
)

#: Data-subject requests (access, erasure, objection, restriction), due one month after receipt.
requests = Table(
    "requests",
    metadata,
    Column("id", ID, primary_key=True),
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
    metadata,
    Column("id", ID, primary_key=True),
    Column("at", String(32), nullable=False, index=True),
    Column("contact_hash", String(64), nullable=False, index=True),
    Column("client_hash", String(64), nullable=False, index=True),
    Column("request_id", ID),
)

#: Accounts of the people who use the server: no anonymous use (ACLU v. Clearview).
#: Only a hash of each token is kept; the token itself is shown once, at creation.
users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
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
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("request_id", ID),
    Column("started_at", String(32), nullable=False),
    # JSON {"blob_keys": [...], "face_ids": [...]}; cleared once done.
    Column("pending", Text),
    # JSON: the receipt's fields until done, then the signed receipt itself.
    Column("receipt", Text, nullable=False),
    Column("completed_at", String(32), index=True),
    sqlite_autoincrement=True,
)

#: Sources whose registration allows grouping their faces into people (revision 6): who turned
#: it on, when, on what legal basis (the source's, copied at the time) and the note given with it
#: (where the decision is recorded). Off by default; turning it off deletes the source's people.
clustering_sources = Table(
    "clustering_sources",
    metadata,
    Column("source_id", ID, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("enabled_at", String(32), nullable=False),
    Column("enabled_by", Text, nullable=False),
    Column("legal_basis", String(32), nullable=False),
    Column("note", Text),
)

#: A group of one source's faces taken to be one person (derived data, revision 6). ``name``, given
#: by a user, is personal data of the person named: sealed like a requester's contact. ``centroid``
#: (float32, the mean template of its faces) is biometric data: sealed like faces.embedding, made
#: by ``model_id``. ``face_count`` and ``face_sum`` (count and sum of its member face ids when the
#: centroid was made) and ``dirty`` tell that the centroid must be made again; ``size`` is its
#: number of faces as listed (a video appearance counts once, whatever its rows).
people = Table(
    "people",
    metadata,
    Column("id", ID, primary_key=True),
    Column("source_id", ID, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", LargeBinary),
    Column("cover_face_id", ID, ForeignKey("faces.id", ondelete="SET NULL")),
    Column("centroid", LargeBinary),
    Column("model_id", String(64)),
    Column("size", Integer, nullable=False, server_default="0"),
    Column("face_count", Integer, nullable=False, server_default="0"),
    Column("face_sum", ID, nullable=False, server_default="0"),
    Column("dirty", Integer, nullable=False, server_default="0"),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    # Ids are never reused: a person id in an old listing must not come to mean another group.
    sqlite_autoincrement=True,
)

#: Which person each grouped face is in (one row per face row, so every row of a video appearance).
#: ``pinned``: put there or kept there by a user's correction (name, merge, split); a clustering
#: run never moves a pinned face. Erasing a face deletes its row (the foreign key's cascade).
person_faces = Table(
    "person_faces",
    metadata,
    Column("face_id", ID, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    Column("person_id", ID, ForeignKey("people.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("pinned", Integer, nullable=False, server_default="0"),
)

#: Faces whose person a user forgot (`vultus people forget`): never grouped automatically again
#: (neither placed at ingest nor clustered), until the source's clustering is turned off.
forgotten_faces = Table(
    "forgotten_faces",
    metadata,
    Column("face_id", ID, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    Column("forgotten_at", String(32), nullable=False),
)
