"""Rules of lawful processing: legal bases, retention, no remote ingest, purpose required."""

from __future__ import annotations

import pytest

from vultus.errors import InvalidSourceError, MissingPurposeError, ModelMismatchError, RemoteSourceRefused
from vultus.policy import LegalBasis, check_gallery_model, parse_retention, refuse_remote, require_purpose, validate_source_name


@pytest.mark.parametrize("text,days", [("365d", 365), ("12w", 84), ("6m", 180), ("3y", 1095), (" 30D ", 30)])
def test_retention_parses_units(text: str, days: int):
    assert parse_retention(text) == days


@pytest.mark.parametrize("text", ["", "forever", "10", "0d", "-5d", "4y", "1.5y"])
def test_bad_retention_is_refused_with_guidance(text: str):
    with pytest.raises(InvalidSourceError, match=r"\d|number"):
        parse_retention(text)


def test_legal_basis_is_parsed_or_refused_with_the_choices():
    assert LegalBasis.parse("Public_Task") is LegalBasis.PUBLIC_TASK
    with pytest.raises(InvalidSourceError, match="legitimate-interests"):
        LegalBasis.parse("because")


@pytest.mark.parametrize("url", ["http://example.org/a.jpg", "https://x.test/", "HTTPS://X", "ftp://host/f"])
def test_network_addresses_are_refused(url: str):
    with pytest.raises(RemoteSourceRefused, match="no crawler"):
        refuse_remote(["/local/ok", url])


def test_local_paths_pass():
    refuse_remote(["photos", "/abs/path", "C:/not-a-scheme-but-fine"])


def test_purpose_and_case_are_required():
    assert require_purpose(" p ", " c ") == ("p", "c")
    with pytest.raises(MissingPurposeError, match="--case"):
        require_purpose("p", "  ")
    with pytest.raises(MissingPurposeError, match="--purpose and --case"):
        require_purpose(None, None)


def test_source_names_are_checked():
    assert validate_source_name("news-2024_a.b") == "news-2024_a.b"
    for bad in ["", "-x", "a b", "x" * 65, "../up"]:
        with pytest.raises(InvalidSourceError):
            validate_source_name(bad)


def test_mixed_models_are_refused():
    check_gallery_model([], "m1")
    check_gallery_model(["m1"], "m1")
    with pytest.raises(ModelMismatchError, match="m0"):
        check_gallery_model(["m0"], "m1")
