"""Revision 6: people. New tables only: sources that allow clustering, people, their faces, forgotten faces.

No existing table changes, so no row is copied: a database from before gets the four tables
empty (no source allows clustering until an administrator turns it on). The tables are
frozen here, as in the baseline; ``sources`` and ``faces`` are named only for the foreign keys.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import BigInteger, Column, ForeignKey, Integer, LargeBinary, MetaData, String, Table, Text

revision = "6"
down_revision = "5"
branch_labels = None
depends_on = None

#: Ids and what refers to them, and counts that may pass 2**31: INTEGER on SQLite (its
#: INTEGER PRIMARY KEY is 64-bit already, and AUTOINCREMENT needs that exact type), BIGINT
#: (BIGSERIAL for an id) on PostgreSQL, whose INTEGER is 32-bit.
_BIG = Integer().with_variant(BigInteger(), "postgresql")

tables = MetaData()

# Referred to by the foreign keys only; not changed here.
Table("sources", tables, Column("id", _BIG, primary_key=True))
Table("faces", tables, Column("id", _BIG, primary_key=True))

clustering_sources = Table(
    "clustering_sources",
    tables,
    Column("source_id", _BIG, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("enabled_at", String(32), nullable=False),
    Column("enabled_by", Text, nullable=False),
    Column("legal_basis", String(32), nullable=False),
    Column("note", Text),
)

people = Table(
    "people",
    tables,
    Column("id", _BIG, primary_key=True),
    Column("source_id", _BIG, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", LargeBinary),
    Column("cover_face_id", _BIG, ForeignKey("faces.id", ondelete="SET NULL")),
    Column("centroid", LargeBinary),
    Column("model_id", String(64)),
    Column("size", Integer, nullable=False, server_default="0"),
    Column("face_count", Integer, nullable=False, server_default="0"),
    Column("face_sum", _BIG, nullable=False, server_default="0"),
    Column("dirty", Integer, nullable=False, server_default="0"),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    sqlite_autoincrement=True,
)

person_faces = Table(
    "person_faces",
    tables,
    Column("face_id", _BIG, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    Column("person_id", _BIG, ForeignKey("people.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("pinned", Integer, nullable=False, server_default="0"),
)

forgotten_faces = Table(
    "forgotten_faces",
    tables,
    Column("face_id", _BIG, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    Column("forgotten_at", String(32), nullable=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    for table in (clustering_sources, people, person_faces, forgotten_faces):
        table.create(bind)  # with its indexes
    # Vultus before this revision refuses a database whose schema version it does not know.
    op.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("Vultus does not downgrade a database: restore a backup made before the upgrade.")
