"""The index.url setting: where the vector index is, by URL, through the engine and the CLI, on the fakes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import vultus
from vultus.cli import cli
from vultus.config import Settings
from vultus.errors import SettingsError


def _fake_cli(data: Path, *args: str):
    return CliRunner().invoke(cli, ["--data", str(data), "--detector", "fake", "--embedder", "fake", *args])


def _red_face_deployment(data: Path, write_photo, **settings) -> None:
    with vultus.open(data, detector="fake", embedder="fake", actor="unit-test", **settings) as engine:
        engine.add_source("test", basis="legitimate-interests", purpose="testing", retention="30d")
        engine.ingest([write_photo("red.jpg", ["red"]), write_photo("two.png", ["green", "blue"])], source="test",
                      workers=1)


def test_the_setting_comes_from_its_variable_and_a_misspelt_one_is_named():
    assert Settings.from_env({"VULTUS_INDEX__URL": "faiss:///srv/idx"}).index.url == "faiss:///srv/idx"
    assert Settings().index.url is None
    with pytest.raises(SettingsError, match="VULTUS_INDEX__PATH is not a setting"):
        Settings.from_env({"VULTUS_INDEX__PATH": "/srv/idx"})


def test_a_faiss_url_puts_the_index_file_in_that_folder_and_the_deployment_works(tmp_path: Path, write_photo, fakes):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    url = f"faiss://{elsewhere}"
    _red_face_deployment(data, write_photo, index={"url": url})
    assert (elsewhere / "faces.faiss").is_file() and not (data / "index").exists()
    with vultus.open(data, detector="fake", index={"url": url}) as engine:
        stats = engine.stats()
        assert stats.index_vectors == stats.faces == 3
        assert stats.index_bytes == (elsewhere / "faces.faiss").stat().st_size
        found = engine.search(fakes.square_photo(["red"]), purpose="p", case="c")
        assert [c.path.rsplit("/", 1)[-1] for c in found.candidates] == ["red.jpg"]
    # Another folder through the CLI: the index is a cache, rebuilt there from the store.
    other = tmp_path / "other"
    out = _fake_cli(data, "--index-url", f"faiss://{other}", "reindex")
    assert out.exit_code == 0 and "3 face templates" in out.output, out.output
    assert (other / "faces.faiss").is_file() and not (data / "index").exists()


def test_without_the_setting_the_index_stays_in_the_data_directory(tmp_path: Path, write_photo):
    data = tmp_path / "data"
    _red_face_deployment(data, write_photo)
    assert (data / "index" / "faces.faiss").is_file()


def test_a_memory_index_is_rebuilt_from_the_store_at_each_open(tmp_path: Path, write_photo, fakes):
    data = tmp_path / "data"
    _red_face_deployment(data, write_photo, index={"url": "memory://"})
    assert not (data / "index").exists()
    with vultus.open(data, detector="fake", index={"url": "memory://"}) as engine:
        stats = engine.stats()
        assert stats.index_vectors == 3 and stats.index_bytes is None
        assert len(engine.search(fakes.square_photo(["blue"]), purpose="p", case="c").candidates) == 1
    out = _fake_cli(data, "--index-url", "memory://", "stats")
    assert out.exit_code == 0 and "3 vectors, exact search" in out.output, out.output


def test_an_unknown_scheme_or_a_bad_folder_is_a_message_not_a_traceback(tmp_path: Path, write_photo, fakes):
    data = tmp_path / "data"
    out = _fake_cli(data, "--index-url", "nosuch://host/x", "source", "list")
    assert out.exit_code == 1 and "No vector index handles 'nosuch://host/x'" in out.output
    assert "faiss://" in out.output and "Traceback" not in out.output
    assert not (data / "keys.json").exists()  # refused before the deployment was made
    _red_face_deployment(data, write_photo)
    for bad, message in (("faiss://host/x", "faiss:///FOLDER"), (f"faiss://{tmp_path / 'none' / 'idx'}", "does not exist")):
        out = _fake_cli(data, "--index-url", bad, "stats")
        assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output, out.output
    assert not (tmp_path / "none").exists()


def test_an_index_that_cannot_remove_templates_physically_is_refused(tmp_path: Path, write_photo, fakes,
                                                                     monkeypatch: pytest.MonkeyPatch):
    from vultus.index import Capabilities, IndexBackend, base

    class Hiding(fakes.MemoryIndex):
        """An index that only hides what is removed (as one with tombstones and no compaction)."""

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(exact=True, physical_removal=False, persistent=False, description="exact")

    monkeypatch.setitem(base._BACKENDS, "hiding", IndexBackend(
        open=lambda target, fresh: Hiding(target.dim), drop=lambda target: None, sweep=lambda url: None))
    data = tmp_path / "data"
    _red_face_deployment(data, write_photo)
    with vultus.open(data, detector="fake", index={"url": "hiding://"}) as engine:
        with pytest.raises(SettingsError, match="cannot remove templates physically"):
            engine.search(fakes.square_photo(["red"]), purpose="p", case="c")
