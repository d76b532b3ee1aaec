"""Purposes per source on the fakes: the vocabulary, the category closest to a text, and the
categories a source declares (COMPLIANCE.md 3; issue 15)."""

from __future__ import annotations

import importlib

import pytest

from vultus.categories import FALLBACK, KEYWORD_RULES, SearchCategory, closest_category, parse_categories
from vultus.errors import InvalidSourceError, UnknownCategoryError, UnknownSourceError


def test_the_vocabulary_is_fixed_and_spelt_loosely():
    assert [c.value for c in SearchCategory] == ["journalism", "archive", "investigation", "missing-persons",
                                                 "event-delivery"]
    assert SearchCategory.parse(" Missing_Persons ") is SearchCategory.MISSING_PERSONS
    assert SearchCategory.parse("event delivery") is SearchCategory.EVENT_DELIVERY
    with pytest.raises(UnknownCategoryError, match="'spying'.*journalism, archive, investigation, missing-persons, "
                                                   "event-delivery"):
        SearchCategory.parse("spying")
    # Comma lists and repeats, once each, in the vocabulary's order.
    assert parse_categories(["archive,journalism", "ARCHIVE"]) == (SearchCategory.JOURNALISM, SearchCategory.ARCHIVE)
    with pytest.raises(UnknownCategoryError, match="at least one"):
        parse_categories([" , "])
    with pytest.raises(UnknownCategoryError, match="'surveillance'"):
        parse_categories("archive,surveillance")


@pytest.mark.parametrize("text, category", [
    ("finding witnesses", "investigation"),
    ("Police custody photographs", "investigation"),
    ("picture desk archive research", "journalism"),  # the picture desk is the more specific use
    ("Newsroom", "journalism"),
    ("archive research", "archive"),
    ("museum heritage collection", "archive"),
    ("Tracing missing people for the police", "missing-persons"),
    ("wedding photos for the guests", "event-delivery"),
    ("marathon race photos", "event-delivery"),
    ("testing", FALLBACK.value),
    ("pressure tests", FALLBACK.value),  # "press" is a whole word only
    ("evaluating Vultus on a test collection", "archive"),
])
def test_a_free_text_purpose_gets_the_closest_category(text: str, category: str):
    assert closest_category(text).value == category


def test_revision_5_applies_the_same_rules_frozen():
    revision = importlib.import_module("vultus.store.migrations.versions.0005_purposes")
    assert revision.RULES == tuple((c.value, words) for c, words in KEYWORD_RULES)
    assert revision.FALLBACK == FALLBACK.value == "archive"
    for text in ("finding witnesses", "newsroom archive", "lost child tracing", "guest photos", "x", "Crime, fraud."):
        assert revision.closest(text) == closest_category(text).value


# -- sources ------------------------------------------------------------------------------------


def test_a_source_declares_its_categories_or_gets_the_closest_and_a_change_is_audited(fake_engine):
    news = fake_engine.add_source("news", basis="legitimate-interests", purpose="newsroom",
                                  retention="30d", purposes="archive,journalism")
    assert news.purposes == ("journalism", "archive")
    guessed = fake_engine.add_source("custody", basis="legal-obligation", purpose="police custody photos",
                                     retention="30d")
    assert guessed.purposes == ("investigation",)
    added = fake_engine.audit_entries(action="source.add")
    assert [(e.details["name"], e.details["purposes"], e.details["purposes_from_text"]) for e in added[-2:]] == [
        ("news", ["journalism", "archive"], False), ("custody", ["investigation"], True)]
    assert {s.name: s.purposes for s in fake_engine.sources()}["test"] == ("archive",)  # "testing": the fallback

    changed = fake_engine.set_source("custody", purposes=["investigation", "missing-persons"])
    assert changed.purposes == ("investigation", "missing-persons")
    [entry] = fake_engine.audit_entries(action="source.set")
    assert entry.details == {"name": "custody", "before": {"purposes": ["investigation"]},
                             "after": {"purposes": ["investigation", "missing-persons"]}}
    assert entry.actor == "unit-test"


def test_bad_categories_for_a_source_change_nothing_and_log_nothing(fake_engine):
    entries = fake_engine.store.audit_count()
    with pytest.raises(UnknownCategoryError, match="'gossip'.*event-delivery"):
        fake_engine.add_source("x", basis="consent", purpose="p", retention="1d", purposes=["gossip"])
    with pytest.raises(UnknownCategoryError, match="'gossip'"):
        fake_engine.set_source("test", purposes="archive,gossip")
    with pytest.raises(InvalidSourceError, match="Nothing to change"):
        fake_engine.set_source("test")
    with pytest.raises(UnknownSourceError):
        fake_engine.set_source("nosuch", purposes="archive")
    assert [s.name for s in fake_engine.sources()] == ["test"] and fake_engine.sources()[0].purposes == ("archive",)
    assert fake_engine.store.audit_count() == entries
