"""The rules of lawful processing: legal bases, retention, local-only ingest, purpose, models.

Pure functions and enums; nothing here touches storage. Use cases call these before they
store or search anything, so a refused request leaves no trace in the data directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable

from .categories import SearchCategory, closest_category, parse_categories
from .errors import (
    InvalidSourceError,
    MissingPurposeError,
    ModelMismatchError,
    RemoteSourceRefused,
)

__all__ = [
    "SuppressionCheck",
    "LegalBasis",
    "parse_retention",
    "format_retention",
    "validate_source_name",
    "source_fields",
    "refuse_remote",
    "require_purpose",
    "check_gallery_model",
    "SearchCategory",
    "source_purposes",
    "LeftOut",
    "split_by_category",
]


class LegalBasis(StrEnum):
    """Grounds of GDPR Art. 6(1) under which a source's photos are processed.

    Biometric templates are special-category data (Art. 9): for ``consent`` the source
    should carry a consent reference; for the others the controller documents the Art. 9(2)
    condition relied on (for example substantial public interest) in its records.
    """

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal-obligation"
    VITAL_INTERESTS = "vital-interests"
    PUBLIC_TASK = "public-task"
    LEGITIMATE_INTERESTS = "legitimate-interests"

    @classmethod
    def parse(cls, text: str) -> "LegalBasis":
        """The basis named by ``text`` (case and ``_`` or ``-`` do not matter)."""
        key = text.strip().lower().replace("_", "-")
        try:
            return cls(key)
        except ValueError:
            choices = ", ".join(b.value for b in cls)
            raise InvalidSourceError(
                f"{text!r} is not a legal basis Vultus knows; use one of: {choices}."
            ) from None


_UNITS = {"d": 1, "w": 7, "m": 30, "y": 365}
#: BIPA 15(a): biometric identifiers are destroyed within 3 years at the latest.
MAX_RETENTION_DAYS = 3 * 365


def parse_retention(text: str) -> int:
    """Days in a retention like ``365d``, ``12w``, ``6m`` or ``3y`` (at most 3 years)."""
    match = re.fullmatch(r"\s*(\d+)\s*([dwmy])\s*", text.lower())
    if not match:
        raise InvalidSourceError(
            f"Retention {text!r} is not a duration; write a number and a unit: "
            "d (days), w (weeks), m (30-day months) or y (365-day years), e.g. 365d."
        )
    days = int(match.group(1)) * _UNITS[match.group(2)]
    if days < 1:
        raise InvalidSourceError(f"Retention {text!r} is zero; it must be at least 1 day (e.g. 30d).")
    if days > MAX_RETENTION_DAYS:
        raise InvalidSourceError(
            f"Retention {text} is {days} days; biometric data may be kept at most 3 years "
            f"({MAX_RETENTION_DAYS} days). Choose a shorter period."
        )
    return days


def format_retention(days: int) -> str:
    """The canonical text for a retention in days (``365d``)."""
    return f"{days}d"


def validate_source_name(name: str) -> str:
    """Return ``name`` if it is a usable source name, else raise."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name or ""):
        raise InvalidSourceError(
            f"Source name {name!r} is not allowed; use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def source_fields(
    name: str,
    *,
    basis: str,
    purpose: str,
    retention: str,
    controller: str | None = None,
    consent_ref: str | None = None,
    purposes: Iterable[str] | str | None = None,
) -> dict[str, object]:
    """The checked, normalised fields of a new source, ready to store; raises on bad input.

    ``purposes`` are the search categories it may be searched for; None means the one
    closest to the ``purpose`` text (:func:`source_purposes`).
    """
    purpose = (purpose or "").strip()
    if not purpose:
        raise InvalidSourceError("A source needs a --purpose saying why its photos are processed.")
    return {
        "name": validate_source_name(name),
        "legal_basis": LegalBasis.parse(basis).value,
        "purpose": purpose,
        "retention_days": parse_retention(retention),
        "controller": (controller or "").strip() or "the operator of this deployment",
        "consent_ref": (consent_ref or "").strip() or None,
        "purposes": [c.value for c in source_purposes(purposes, purpose)],
    }


def source_purposes(purposes: Iterable[str] | str | None, purpose: str) -> tuple[SearchCategory, ...]:
    """The categories named in ``purposes`` (comma lists allowed), or when None the one closest
    to the free-text ``purpose`` (vultus.categories.closest_category, the rules revision 5 used)."""
    if purposes is None:
        return (closest_category(purpose),)
    return parse_categories(purposes)


@dataclass(frozen=True)
class LeftOut:
    """A source a search did not cover, and the categories it allows (none of them the search's)."""

    source: str
    allows: tuple[str, ...]

    def reason(self, category: str) -> str:
        """``custody (allows investigation; not journalism)``."""
        return f"{self.source} (allows {', '.join(self.allows) or 'no category'}; not {category})"

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "allows": list(self.allows)}


def split_by_category(sources: Iterable, category: SearchCategory) -> tuple[list, list[LeftOut]]:
    """The sources whose purposes allow ``category``, and those left out with what they allow.

    Purpose limitation (GDPR Art. 5(1)(b)): a search for a category covers only the sources
    declared for it; the others' faces are never its candidates.
    """
    covered, left_out = [], []
    for source in sources:
        if category.value in source.purposes:
            covered.append(source)
        else:
            left_out.append(LeftOut(source.name, tuple(source.purposes)))
    return covered, left_out


_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def refuse_remote(paths: Iterable[str]) -> None:
    """Refuse any path that is a URL: Vultus ingests only files the operator holds.

    EU AI Act Art. 5(1)(e) forbids building face databases by untargeted scraping of the
    internet; Vultus has no crawler and makes no network connection to fetch photos.
    """
    for path in paths:
        if _REMOTE.match(str(path)):
            raise RemoteSourceRefused(
                f"{path} is a network address. Vultus has no crawler by design: building a "
                "face database by scraping the internet is forbidden (EU AI Act Art. 5(1)(e)). "
                "Ingest only photos your organisation lawfully holds: download them through your "
                "own lawful process, then ingest the local files or folder. Nothing was stored."
            )


def require_purpose(purpose: str | None, case: str | None) -> tuple[str, str]:
    """Both a purpose and a case reference, stripped; every search must be accountable."""
    purpose = (purpose or "").strip()
    case = (case or "").strip()
    if not purpose or not case:
        missing = " and ".join(
            label for label, value in (("--purpose", purpose), ("--case", case)) if not value
        )
        raise MissingPurposeError(
            f"A search needs {missing}: say why you are searching and for which case, so the "
            "search can be accounted for."
        )
    return purpose, case


def check_gallery_model(gallery_models: Iterable[str], model_id: str) -> None:
    """Refuse to compare templates made by different embedders: the distances mean nothing."""
    others = sorted(set(gallery_models) - {model_id})
    if others:
        raise ModelMismatchError(
            f"This gallery's faces were embedded with {', '.join(others)}, but the current "
            f"embedder is {model_id}. Templates of different models cannot be compared: use the "
            "embedder the gallery was built with (leave VULTUS_EMBEDDER and --embedder unset), or "
            "convert the gallery with `vultus reindex --model NAME`; if such a conversion was "
            "interrupted, run it again to finish."
        )


@dataclass(frozen=True)
class SuppressionCheck:
    """Suppression entries of one model and how to test a new face against them.

    ``embedder`` is None for the gallery's own model (its templates are at hand) and the
    registered name of an earlier model otherwise, which then embeds every new face too.
    """

    model_id: str
    embedder: str | None
    radius: float
