"""Revision 4: video. Images get ``media`` and ``duration``; faces get what places them in a video.

Images rows from before are photos (``media`` 'photo', ``duration`` NULL); their faces get
NULL in every new column. The two tables are rebuilt, not altered in place: SQLite's ADD
COLUMN appends the column after the table's constraints, so an upgraded database would not
have the same tables as a new one. Their rows are copied through a plain copy table, ids and
the AUTOINCREMENT counters kept (ids are never reused: a stale index entry must not come to
mean another face). ``faces`` goes first and ``images`` after it, so dropping ``images``
cascades to nothing. The tables are frozen here, as in the baseline. On PostgreSQL the
columns are added in place (its ALTER TABLE has no such limit, and its sequences stay).
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, Float, ForeignKey, Integer, LargeBinary, MetaData, String, Table, Text, text

revision = "4"
down_revision = "3"
branch_labels = None
depends_on = None

tables = MetaData()

# Referred to by images' foreign key only; it is not changed here.
Table("sources", tables, Column("id", Integer, primary_key=True))

images = Table(
    "images",
    tables,
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
    Column("media", String(8), nullable=False, server_default="photo"),
    Column("duration", Float),
    sqlite_autoincrement=True,
)

faces = Table(
    "faces",
    tables,
    Column("id", Integer, primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("box_left", Integer, nullable=False),
    Column("box_top", Integer, nullable=False),
    Column("box_right", Integer, nullable=False),
    Column("box_bottom", Integer, nullable=False),
    Column("landmarks", Text, nullable=False),
    Column("det_score", Float, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("model_id", String(64), nullable=False, index=True),
    Column("crop_key", Text),
    Column("restricted", Integer, nullable=False, server_default="0"),
    Column("appearance", Integer),
    Column("media_time", Float),
    Column("time_start", Float),
    Column("time_end", Float),
    Column("seen_at", Text),
    Column("still_key", Text),
    sqlite_autoincrement=True,
)

#: The columns each table had at revision 3, copied as they are.
_V3_COLUMNS = {
    "images": ["id", "sha256", "source_id", "original_path", "size_bytes", "width", "height", "format",
               "ingested_at", "expires_at", "face_count", "blob_key"],
    "faces": ["id", "image_id", "box_left", "box_top", "box_right", "box_bottom", "landmarks", "det_score",
              "embedding", "model_id", "crop_key", "restricted"],
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        # PostgreSQL: its ADD COLUMN gives the same tables as a new database's (a table's
        # column order is not part of what Vultus compares there), and the id sequences stay.
        for table in (images, faces):
            for column in table.columns:
                if column.name not in _V3_COLUMNS[table.name]:
                    op.add_column(table.name, Column(column.name, column.type, nullable=column.nullable,
                                                     server_default=column.server_default))
        op.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        return
    counters = {name: bind.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :n"), {"n": name}).scalar()
                for name in ("images", "faces")}
    for name in ("faces", "images"):  # the child first: dropping images then cascades to nothing
        bind.execute(text(f"CREATE TABLE v3_copy_{name} AS SELECT * FROM {name}"))
        bind.execute(text(f"DROP TABLE {name}"))
    for table in (images, faces):
        table.create(bind)  # with its indexes
        columns = ", ".join(_V3_COLUMNS[table.name])
        bind.execute(text(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM v3_copy_{table.name}"))
        bind.execute(text(f"DROP TABLE v3_copy_{table.name}"))
        seq = counters[table.name]
        if seq is not None:
            bind.execute(text("DELETE FROM sqlite_sequence WHERE name = :n"), {"n": table.name})
            bind.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES (:n, :s)"), {"n": table.name, "s": seq})
    # Vultus before this revision refuses a database whose schema version it does not know.
    op.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("Vultus does not downgrade a database: restore a backup made before the upgrade.")
