"""The fixed vocabulary of search purposes, and the category closest to a free-text purpose.

A source declares the categories it may be searched for; a search names the one it is for
(GDPR Art. 5(1)(b), purpose limitation). The vocabulary is closed, so that a source's
declaration and a search's category can be compared by a machine, unlike free text.

This module sits under the settings (``VULTUS_DEFAULT_CATEGORY`` is checked against it) and
imports nothing of Vultus but its errors.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Iterable

from .errors import UnknownCategoryError

__all__ = ["SearchCategory", "KEYWORD_RULES", "FALLBACK", "closest_category", "parse_categories", "vocabulary"]


class SearchCategory(StrEnum):
    """What a search is for, as a source declares it may be searched."""

    #: Reporting: verifying who is in a picture, finding a person's photos for a story.
    JOURNALISM = "journalism"
    #: Archiving and historical or scientific research on a collection (GDPR Art. 89).
    ARCHIVE = "archive"
    #: Investigations: of crimes, fraud, security incidents, by the police or others.
    INVESTIGATION = "investigation"
    #: Finding missing people, tracing and reuniting families, identifying victims.
    MISSING_PERSONS = "missing-persons"
    #: Giving the people photographed at an event their own photos.
    EVENT_DELIVERY = "event-delivery"

    @staticmethod
    def normalise(text: str) -> str:
        """``text`` as a category is spelt: lower case, ``-`` for spaces and ``_``."""
        return re.sub(r"[\s_]+", "-", str(text).strip().lower())

    @classmethod
    def parse(cls, text: str, *, what: str = "Search category") -> "SearchCategory":
        """The category named by ``text`` (case, spaces and ``_`` or ``-`` do not matter)."""
        try:
            return cls(cls.normalise(text))
        except ValueError:
            raise UnknownCategoryError(
                f"{what} {text!r} is not one of Vultus's search categories; use one of: {vocabulary()}."
            ) from None


def vocabulary() -> str:
    """The categories, comma-separated, for messages and help texts."""
    return ", ".join(c.value for c in SearchCategory)


def parse_categories(values: Iterable[str] | str, *, what: str = "Purpose category") -> tuple[SearchCategory, ...]:
    """The categories named in ``values`` (each may be a comma list), once each, in vocabulary order.

    Raises when one is unknown or none is named: a source that allows nothing is a mistake.
    """
    if isinstance(values, str):
        values = [values]
    named = [part for value in values for part in str(value).split(",") if part.strip()]
    found = {SearchCategory.parse(part, what=what) for part in named}
    if not found:
        raise UnknownCategoryError(
            f"No purpose category was given; name at least one of: {vocabulary()} (several with commas)."
        )
    return tuple(c for c in SearchCategory if c in found)


#: The rules that place a free-text purpose in a category: the first category (in this order)
#: one of whose words begins a word of the text, case and punctuation aside (a word ending in
#: a space must be a whole word). The most specific uses come first,
#: so "tracing missing people for the police" is missing-persons and "newsroom archive" is
#: journalism. Revision 5 of the store applies a frozen copy of these to the sources it finds.
KEYWORD_RULES: tuple[tuple[SearchCategory, tuple[str, ...]], ...] = (
    (SearchCategory.MISSING_PERSONS, ("missing", "disappear", "runaway", "tracing", "reunit", "reunif",
                                      "humanitarian", "disaster victim", "next of kin", "lost person", "lost child",
                                      "lost people")),
    (SearchCategory.INVESTIGATION, ("investigat", "police", "law enforcement", "crim", "fraud", "forensic", "suspect",
                                    "evidence", "witness", "security", "court", "offen", "custody", "prosecut")),
    (SearchCategory.EVENT_DELIVERY, ("event", "wedding", "conference", "festival", "marathon", "race ", "races",
                                     "attendee", "guest", "participant", "deliver", "customer", "client", "school photo",
                                     "ceremony", "concert")),
    (SearchCategory.JOURNALISM, ("journalis", "news", "press ", "reporting", "reporter", "editorial", "picture desk",
                                 "caption", "fact-check", "fact check", "broadcast", "magazine")),
    (SearchCategory.ARCHIVE, ("archiv", "histor", "heritage", "museum", "library", "research", "collection",
                              "preserv", "catalog")),
)

#: The category of a purpose no rule places: a collection an organisation holds, searched to
#: find who is in it, is an archive; it is also the default category of a search
#: (``VULTUS_DEFAULT_CATEGORY``), so that a source whose text names no other use is searched
#: by a search that names no category, as every source was before categories existed.
FALLBACK = SearchCategory.ARCHIVE

_PATTERNS = [(category, re.compile(r"\b(?:" + "|".join(re.escape(word) for word in words) + ")"))
             for category, words in KEYWORD_RULES]


def closest_category(purpose: str) -> SearchCategory:
    """The category closest to a free-text purpose, by :data:`KEYWORD_RULES`; :data:`FALLBACK` when none applies."""
    text = " ".join(re.sub(r"[^\w-]+", " ", str(purpose).lower()).split()) + " "
    for category, pattern in _PATTERNS:
        if pattern.search(text):
            return category
    return FALLBACK
