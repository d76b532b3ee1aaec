"""The relational schema: sources, images and faces, the source of truth for everything."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["metadata", "meta", "sources", "images", "faces", "SCHEMA_VERSION"]

SCHEMA_VERSION = "2"

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
    Column("id", Integer, primary_key=True),
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
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("source_id", Integer, ForeignKey("sources.id"), nullable=False, index=True),
    Column("original_path", Text, nullable=False),
    Column("size_bytes", Integer, nullable=False),
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
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
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
    sqlite_autoincrement=True,
)
