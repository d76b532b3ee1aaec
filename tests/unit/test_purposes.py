"""Purposes per source on the fakes: the vocabulary, the category closest to a text, and searches
that cover only the sources declared for their category (COMPLIANCE.md 3; issue 15, acceptance 5).

A coloured square is a person. The same red person is in a newsroom's photos (journalism,
archive) and in a police custody collection (investigation): a search for one purpose never
returns the other source's faces, and says which source it left out and why.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from vultus.categories import FALLBACK, KEYWORD_RULES, SearchCategory, closest_category, parse_categories
from vultus.errors import InvalidSourceError, UnknownCategoryError, UnknownSourceError
from vultus.search import search_photo, search_scope


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


# -- searches -----------------------------------------------------------------------------------


@pytest.fixture
def two_sources(fake_engine, write_photo):
    """The red person in both a newsroom's photos (journalism, archive) and police custody's (investigation)."""
    fake_engine.add_source("news", basis="legitimate-interests", purpose="newsroom", retention="30d",
                           purposes="journalism,archive")
    fake_engine.add_source("custody", basis="legal-obligation", purpose="police custody", retention="30d",
                           purposes="investigation")
    fake_engine.ingest([write_photo("news-red.jpg", ["red"]), write_photo("news-green.jpg", ["green"])],
                       source="news", workers=1)
    # Other sizes than the newsroom's: the same bytes would be stored once.
    fake_engine.ingest([write_photo("custody-red.jpg", ["red"], size=(800, 600)),
                        write_photo("custody-red-2.jpg", ["red", "blue"]),
                        write_photo("custody-blue.jpg", ["blue"])], source="custody", workers=1)
    return fake_engine


def _names(result) -> list[str]:
    return sorted(c.path.rsplit("/", 1)[-1] for c in result.candidates)


def test_a_search_never_returns_faces_of_a_source_that_does_not_allow_its_category(two_sources, fakes):
    red = fakes.square_photo(["red"])
    press = two_sources.search(red, purpose="verify a caption", case="J-1", category="journalism")
    assert _names(press) == ["news-red.jpg"] and {c.source for c in press.candidates} == {"news"}
    assert press.category == "journalism" and press.sources_searched == ["news"]
    # (The fixture's own source, "test", allows archive: it is left out too.)
    assert [(e.source, e.allows) for e in press.left_out] == [("custody", ("investigation",)), ("test", ("archive",))]
    assert press.left_out[0].reason("journalism") == "custody (allows investigation; not journalism)"
    assert press.gallery_faces == 2  # the faces searched: the newsroom's only
    police = two_sources.search(red, purpose="identify a suspect", case="I-1", category="investigation")
    assert _names(police) == ["custody-red-2.jpg", "custody-red.jpg"] and police.sources_searched == ["custody"]
    assert [(e.source, e.allows) for e in police.left_out] == [("news", ("journalism", "archive")),
                                                              ("test", ("archive",))]
    # Both sources hold the red person; a search for a purpose they all allow would find all three.
    two_sources.set_source("custody", purposes="investigation,journalism")
    both = two_sources.search(red, purpose="verify a caption", case="J-2", category="journalism")
    assert _names(both) == ["custody-red-2.jpg", "custody-red.jpg", "news-red.jpg"]
    assert [e.source for e in both.left_out] == ["test"]


def test_the_audit_entry_records_the_category_and_the_sources_left_out(two_sources, fakes):
    two_sources.search(fakes.square_photo(["red"]), purpose="verify a caption", case="J-3", category="journalism")
    entry = two_sources.audit_entries(action="search")[-1]
    assert entry.details["category"] == "journalism" and entry.details["purpose"] == "verify a caption"
    assert entry.details["left_out"] == [{"source": "custody", "allows": ["investigation"]},
                                         {"source": "test", "allows": ["archive"]}]
    assert entry.details["gallery"] == "sources allowing journalism: news"
    assert {c["face_id"] for c in entry.details["candidates"]} <= set(
        two_sources.store.source_face_ids([two_sources.store.get_source("news").id]).tolist())


def test_the_default_category_comes_from_the_settings(two_sources, fakes, tmp_path):
    # "test" (purpose "testing") allows archive, the default; so does the newsroom.
    result = two_sources.search(fakes.square_photo(["red"]), purpose="unit test", case="D-1")
    assert result.category == two_sources.settings.default_category == "archive"
    assert _names(result) == ["news-red.jpg"] and sorted(result.sources_searched) == ["news", "test"]
    assert [e.source for e in result.left_out] == ["custody"]
    import vultus

    two_sources.close()
    with vultus.open(tmp_path / "data", detector="fake", embedder="fake", actor="t",
                     default_category="investigation") as engine:
        police = engine.search(fakes.square_photo(["red"]), purpose="unit test", case="D-2")
        assert police.category == "investigation" and {c.source for c in police.candidates} == {"custody"}


def test_when_no_source_allows_the_category_nothing_is_searched_and_every_source_is_named(two_sources, fakes):
    result = two_sources.search(fakes.square_photo(["red"]), purpose="deliver photos", case="E-1",
                                category="event-delivery")
    assert result.candidates == [] and result.sources_searched == [] and result.gallery_faces == 0
    assert sorted(e.source for e in result.left_out) == ["custody", "news", "test"]
    entry = two_sources.audit_entries(action="search")[-1]  # still a search, accounted for
    assert entry.details["category"] == "event-delivery" and entry.details["candidates"] == []


def test_an_unknown_category_is_refused_before_anything_is_logged(two_sources, fakes):
    entries = two_sources.store.audit_count()
    with pytest.raises(UnknownCategoryError, match="'surveillance'.*use one of: journalism"):
        two_sources.search(fakes.square_photo(["red"]), purpose="p", case="c", category="surveillance")
    assert two_sources.store.audit_count() == entries


def test_the_filter_lists_the_shorter_side_and_both_sides_keep_the_same_faces(two_sources):
    store = two_sources.store
    news_ids = set(store.source_face_ids([store.get_source("news").id]).tolist())
    custody_ids = set(store.source_face_ids([store.get_source("custody").id]).tolist())
    press = search_scope(store, "journalism")  # 2 faces kept, 4 left out: the kept ones are listed
    assert not press.id_filter.exclude and set(press.id_filter.ids.tolist()) == news_ids
    archive = search_scope(store, "archive")
    assert not archive.id_filter.exclude  # news and test (empty) kept: 2 faces against custody's 4
    police = search_scope(store, "investigation")  # 4 faces kept, 2 left out: those are listed, to exclude
    assert police.id_filter.exclude and set(police.id_filter.ids.tolist()) == news_ids
    every = np.array(sorted(news_ids | custody_ids))
    assert set(every[police.id_filter.allows(every)].tolist()) == custody_ids
    assert press.id_filter.kept(6) == 2 and police.id_filter.kept(6) == 4
    # Every source allowing it: the fast path, no filter.
    two_sources.set_source("custody", purposes="investigation,archive")
    two_sources.set_source("test", purposes="investigation")
    two_sources.set_source("news", purposes="investigation")
    whole = search_scope(store, "investigation")
    assert whole.id_filter is None and whole.left_out == ()


def test_a_face_ingested_into_a_left_out_source_after_the_scope_was_taken_is_not_a_candidate(two_sources, fakes,
                                                                                               write_photo):
    scope = search_scope(two_sources.store, "investigation")  # excludes the newsroom's two faces by id
    assert scope.id_filter.exclude
    two_sources.ingest([write_photo("news-red-late.jpg", ["red"], size=(700, 500))], source="news", workers=1)
    result = search_photo(fakes.square_photo(["red"]), analyzer=two_sources.analyzer, store=two_sources.store,
                          index=two_sources._open_index(writable=False), purpose="p", case="c", top=10,
                          threshold=None, actor="t", scope=scope)
    assert {c.source for c in result.candidates} == {"custody"} and len(result.candidates) == 2


def test_an_approximate_index_is_reranked_by_templates_of_the_sources_searched_only(two_sources, fakes):
    from vultus.index import Capabilities

    class Careless:
        """An approximate index that ignores the filter: the rerank must not let its ids through."""

        capabilities = Capabilities(exact=False, physical_removal=True, persistent=True, description="ivf")

        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def search(self, vectors, k, id_filter=None):
            return self.inner.search(vectors, k)

    scope = search_scope(two_sources.store, "journalism")
    result = search_photo(fakes.square_photo(["red"]), analyzer=two_sources.analyzer, store=two_sources.store,
                          index=Careless(two_sources._open_index(writable=False)), purpose="p", case="c", top=10,
                          threshold=None, actor="t", scope=scope)
    assert _names(result) == ["news-red.jpg"]


def test_rights_requests_cover_every_source_whatever_the_category(two_sources, fakes):
    match = two_sources.match_person(fakes.square_photo(["red"]))
    assert len(match.image_ids) == 3  # the newsroom's and custody's photos of the red person
    receipt = two_sources.erase(match)
    assert len(receipt["removed_images"]) == 3
    for category in ("journalism", "investigation"):
        found = two_sources.search(fakes.square_photo(["red"]), purpose="p", case="c", category=category)
        assert found.candidates == []


def test_the_index_itself_is_asked_for_the_sources_faces_only(two_sources, fakes):
    """The filter is pushed into the index (so the top k are the sources' own), not applied to its answer."""
    asked = []

    class Spy:
        def __init__(self, inner):
            self.inner, self.capabilities = inner, inner.capabilities

        def __len__(self):
            return len(self.inner)

        def search(self, vectors, k, id_filter=None):
            asked.append(id_filter)
            return self.inner.search(vectors, k, id_filter)

    index = Spy(two_sources._open_index(writable=False))
    for category in ("journalism", "investigation"):
        scope = search_scope(two_sources.store, category)
        result = search_photo(fakes.square_photo(["red"]), analyzer=two_sources.analyzer, store=two_sources.store,
                              index=index, purpose="p", case="c", top=1, threshold=0.0, actor="t", scope=scope)
        assert asked[-1] is scope.id_filter and result.candidates[0].source == scope.sources[0]
    assert [f.exclude for f in asked] == [False, True]
