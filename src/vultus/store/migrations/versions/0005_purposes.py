"""Revision 5: purposes per source. A new table, ``source_purposes``, holds the search categories
each source may be searched for; ``sources`` itself is not changed.

Every source already registered gets one category, the one closest to its registered purpose
text, by keyword rules: the text is lower-cased, its punctuation made spaces, and the first
category in the order below with a keyword that begins a word of it is taken (a keyword
ending in a space must be a whole word):

1. missing-persons: missing, disappear, runaway, tracing, reunit, reunif, humanitarian, ...
2. investigation: investigat, police, law enforcement, crim, fraud, forensic, witness, ...
3. event-delivery: event, wedding, conference, festival, marathon, guest, deliver, ...
4. journalism: journalis, news, press, reporting, editorial, picture desk, caption, ...
5. archive: archiv, histor, heritage, museum, library, research, collection, ...

and, when none applies, ``archive`` (the fallback, which is also the default category of a
search, ``VULTUS_DEFAULT_CATEGORY``: a source whose text names no other use stays covered by
searches that name no category). "picture desk archive research" is journalism, "finding
witnesses" investigation, "testing" archive. The rules are frozen here (as the tables are in
every revision); ``vultus.categories.KEYWORD_RULES`` is this release's copy, which also
chooses the category of a source registered without ``--purposes``.
"""

from __future__ import annotations

import re

from alembic import op
from sqlalchemy import BigInteger, Column, ForeignKey, Integer, MetaData, String, Table, text

revision = "5"
down_revision = "4"
branch_labels = None
depends_on = None

#: Ids and what refers to them, and counts that may pass 2**31: INTEGER on SQLite (its
#: INTEGER PRIMARY KEY is 64-bit already, and AUTOINCREMENT needs that exact type), BIGINT
#: (BIGSERIAL for an id) on PostgreSQL, whose INTEGER is 32-bit.
_BIG = Integer().with_variant(BigInteger(), "postgresql")

tables = MetaData()

# Referred to by the new table's foreign key only; it is not changed here.
Table("sources", tables, Column("id", _BIG, primary_key=True))

source_purposes = Table(
    "source_purposes",
    tables,
    Column("source_id", _BIG, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("category", String(32), primary_key=True),
)

#: (category, keywords) in the order they are tried; see the docstring.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("missing-persons", ("missing", "disappear", "runaway", "tracing", "reunit", "reunif", "humanitarian",
                         "disaster victim", "next of kin", "lost person", "lost child", "lost people")),
    ("investigation", ("investigat", "police", "law enforcement", "crim", "fraud", "forensic", "suspect", "evidence",
                       "witness", "security", "court", "offen", "custody", "prosecut")),
    ("event-delivery", ("event", "wedding", "conference", "festival", "marathon", "race ", "races", "attendee", "guest",
                        "participant", "deliver", "customer", "client", "school photo", "ceremony", "concert")),
    ("journalism", ("journalis", "news", "press ", "reporting", "reporter", "editorial", "picture desk", "caption",
                    "fact-check", "fact check", "broadcast", "magazine")),
    ("archive", ("archiv", "histor", "heritage", "museum", "library", "research", "collection", "preserv", "catalog")),
)
FALLBACK = "archive"


def closest(purpose: str) -> str:
    """The category of a registered purpose text, by :data:`RULES`, else :data:`FALLBACK`."""
    words = " ".join(re.sub(r"[^\w-]+", " ", str(purpose).lower()).split()) + " "
    for category, keywords in RULES:
        if re.search(r"\b(?:" + "|".join(re.escape(k) for k in keywords) + ")", words):
            return category
    return FALLBACK


def upgrade() -> None:
    bind = op.get_bind()
    source_purposes.create(bind)
    rows = bind.execute(text("SELECT id, purpose FROM sources ORDER BY id")).all()
    if rows:
        bind.execute(source_purposes.insert(), [{"source_id": row.id, "category": closest(row.purpose)} for row in rows])
    # Vultus before this revision refuses a database whose schema version it does not know.
    op.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("Vultus does not downgrade a database: restore a backup made before the upgrade.")
