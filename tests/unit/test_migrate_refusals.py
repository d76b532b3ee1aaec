"""`vultus migrate` refuses what it cannot do safely, and a move cut short leaves no half-filled target.

Refused with nothing written: a URL no backend handles, the deployment's own store or index, a
target store holding data, a target index holding templates (unless --replace-index), a source
whose audit chain does not verify, another process with the data directory open. Interrupted
(an error, Ctrl-C, kill -9) or failing its checks: the target store is as empty as before, the
source has no trace of the move, and running again works.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import vultus
from vultus.cli import cli
from vultus.errors import DataDirInUseError, MigrationError, SettingsError
from vultus.store import SQLiteStore, open_store


@pytest.fixture
def small(fake_engine, write_photo, fakes):
    """A deployment with three photos of three people and a search."""
    fake_engine.ingest([write_photo(f"{c}.jpg", [c]) for c in ("red", "green", "blue")], source="test", workers=1)
    fake_engine.search(fakes.square_photo(["red"]), purpose="unit test", case="R-1")
    return fake_engine


def _target(tmp_path: Path, name: str = "target") -> tuple[str, str, Path]:
    folder = tmp_path / name
    folder.mkdir()
    return f"sqlite:///{folder / 'moved.db'}", f"faiss://{folder / 'index'}", folder


def _filled(store_url: str, keys) -> dict[str, int]:
    """The tables of the store at ``store_url`` that hold rows (a new store: meta only)."""
    store = open_store(store_url, keys)
    try:
        return {name: n for name, n in store.row_counts().items() if n and name != "meta"}
    finally:
        store.close()


#: Audit entries of the ``small`` deployment: the source registered, the ingest, the search.
ENTRIES = 3


def _no_trace_of_a_move(engine, entries: int = ENTRIES) -> None:
    assert engine.store.audit_count() == entries and engine.verify_audit().ok
    assert engine.audit_entries(action="deployment.migrate") == []


def test_a_url_no_backend_handles_is_refused_with_the_known_schemes_and_nothing_is_made(small, tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    with pytest.raises(SettingsError, match=r"No metadata store handles .*sqlite://"):
        small.migrate(to_store="postgres://db/vultus", to_index=f"faiss://{folder}")
    with pytest.raises(SettingsError, match=r"No vector index handles .*faiss://"):
        small.migrate(to_store=f"sqlite:///{folder / 'x.db'}", to_index="milvs://127.0.0.1:19530")
    assert list(folder.iterdir()) == []
    _no_trace_of_a_move(small)


def test_the_deployments_own_store_or_index_is_refused_however_it_is_written(small, tmp_path):
    own_store = small.deployment.store_url.replace("/vultus.db", "/./vultus.db").replace("sqlite:///", "sqlite:////")
    store_url, index_url, _ = _target(tmp_path)
    with pytest.raises(MigrationError, match="this deployment's own store"):
        small.migrate(to_store=own_store, to_index=index_url)
    with pytest.raises(MigrationError, match="this deployment's own index"):
        small.migrate(to_store=store_url, to_index=small.deployment.index_url + "/")
    _no_trace_of_a_move(small)


def test_a_target_store_that_holds_data_is_refused_and_says_whether_it_holds_a_finished_move(small, tmp_path, fakes):
    store_url, index_url, folder = _target(tmp_path)
    assert small.migrate(to_store=store_url, to_index=index_url).ok
    entries = small.store.audit_count()
    held = rf"not empty \(1 sources, 1 source_purposes, 3 images, 3 faces, {ENTRIES + 1} audit, 1 search_hits\)"
    with pytest.raises(MigrationError, match=rf"{held}\. It holds a finished move \(audit entry {ENTRIES + 1},"):
        small.migrate(to_store=store_url, to_index=f"faiss://{folder / 'other-index'}")
    # Another deployment's store: refused too, with other advice.
    other = tmp_path / "other-deployment"
    with vultus.open(other, detector="fake", embedder="fake") as elsewhere:
        elsewhere.add_source("theirs", basis="consent", purpose="testing", retention="30d")
    with pytest.raises(MigrationError, match="not empty .*may be another deployment's"):
        small.migrate(to_store=f"sqlite:///{other / 'vultus.db'}", to_index=f"faiss://{folder / 'other-index'}")
    assert small.store.audit_count() == entries and not (folder / "other-index").exists()


def test_a_target_index_that_holds_templates_is_refused_unless_it_is_to_be_replaced(small, tmp_path):
    store_url, index_url, _ = _target(tmp_path)
    assert small.migrate(to_store=store_url, to_index=index_url).ok
    second, _, _ = _target(tmp_path, "second")
    with pytest.raises(MigrationError, match="already holds 3 templates.*--replace-index"):
        small.migrate(to_store=second, to_index=index_url)
    assert _filled(second, small.keys) == {}
    report = small.migrate(to_store=second, to_index=index_url, replace_index=True)
    assert report.ok and report.index_vectors == 3


def test_a_move_is_refused_while_another_process_has_the_data_directory_open(small, tmp_path):
    store_url, index_url, _ = _target(tmp_path)
    with vultus.open(small.data_dir, detector="fake"):  # another open of it, as `vultus serve` holds one
        with pytest.raises(DataDirInUseError, match="stop that process"):
            small.migrate(to_store=store_url, to_index=index_url)
    assert not Path(store_url.removeprefix("sqlite://")).exists()
    _no_trace_of_a_move(small)


def test_a_source_whose_audit_chain_does_not_verify_is_not_moved(small, tmp_path):
    with sqlite3.connect(small.data_dir / "vultus.db") as db:
        db.execute("UPDATE audit SET actor = 'someone else' WHERE id = 1")
    store_url, index_url, _ = _target(tmp_path)
    with pytest.raises(MigrationError, match="audit chain of this deployment does not verify .*entry 1"):
        small.migrate(to_store=store_url, to_index=index_url)
    assert not Path(store_url.removeprefix("sqlite://")).exists()


@pytest.mark.parametrize("step", ["faces", "index", "verify"])
def test_a_move_interrupted_at_any_step_leaves_the_target_empty_and_can_be_run_again(small, tmp_path, step):
    store_url, index_url, folder = _target(tmp_path)

    def interrupt(at: str, done: int, total: int) -> None:
        if at == step:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small.migrate(to_store=store_url, to_index=index_url, progress=interrupt)
    assert _filled(store_url, small.keys) == {}
    # An index built before the interruption is dropped with the rows it was built from.
    assert not (folder / "index" / "faces.faiss").exists()
    _no_trace_of_a_move(small)
    assert small.migrate(to_store=store_url, to_index=index_url).ok


def test_a_copy_that_does_not_match_fails_its_checks_and_is_rolled_back(small, tmp_path, monkeypatch):
    store_url, index_url, folder = _target(tmp_path)
    real = SQLiteStore.import_rows

    def altered(self, table, rows):
        if table == "faces":  # a backend that changed a value on the way
            rows = [{**row, "det_score": row["det_score"] + 0.5} if n == 0 else row for n, row in enumerate(rows)]
        return real(self, table, rows)

    monkeypatch.setattr(SQLiteStore, "import_rows", altered)
    with pytest.raises(MigrationError, match=r"rows: faces: source 3, target 3 \(rows differ\).*rolled back"):
        small.migrate(to_store=store_url, to_index=index_url)
    assert _filled(store_url, small.keys) == {} and not (folder / "index" / "faces.faiss").exists()
    _no_trace_of_a_move(small)


_KILLED_MID_MOVE = """
import os, signal, sys
import vultus, vultus.testing
data, store, index = sys.argv[1:]
def progress(step, done, total):
    if step == "verify":  # every row copied, the index built and flushed, nothing committed
        os.kill(os.getpid(), signal.SIGKILL)
with vultus.open(data, detector="fake") as engine:
    engine.migrate(to_store=store, to_index=index, progress=progress)
"""


def test_a_move_killed_before_its_commit_leaves_the_target_store_empty(small, tmp_path):
    store_url, index_url, folder = _target(tmp_path)
    data = small.data_dir
    small.close()
    env = {**os.environ, "PYTHONPATH": str(Path(vultus.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", _KILLED_MID_MOVE, str(data), store_url, index_url], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with vultus.open(data, detector="fake") as engine:
        assert _filled(store_url, engine.keys) == {}
        _no_trace_of_a_move(engine)
        # Only the index it flushed is left: the next run says what to do, and does it when told.
        with pytest.raises(MigrationError, match="already holds 3 templates.*--replace-index"):
            engine.migrate(to_store=store_url, to_index=index_url)
        assert engine.migrate(to_store=store_url, to_index=index_url, replace_index=True).ok


def test_the_command_refuses_with_one_clear_message(small, tmp_path):
    small.close()
    store_url, index_url, _ = _target(tmp_path)
    base = ["--data", str(small.data_dir), "--detector", "fake", "migrate"]
    out = CliRunner().invoke(cli, [*base, "--to-store", "postgres://db/v", "--to-index", index_url])
    assert out.exit_code == 1 and "No metadata store handles" in out.output and "Traceback" not in out.output
    assert CliRunner().invoke(cli, [*base, "--to-store", store_url, "--to-index", index_url, "--no-progress"]).exit_code == 0
    out = CliRunner().invoke(cli, [*base, "--to-store", store_url, "--to-index", index_url + "2"])
    assert out.exit_code == 1 and "is not empty" in out.output and "Nothing was copied" in out.output
    out = CliRunner().invoke(cli, [*base, "--to-index", index_url])
    assert out.exit_code == 2 and "--to-store" in out.output


def test_a_target_index_that_only_hides_removed_templates_is_refused(small, tmp_path, monkeypatch, fakes):
    from dataclasses import replace

    from vultus.index import IndexBackend, base

    class Hiding(fakes.MemoryIndex):
        @property
        def capabilities(self):
            return replace(super().capabilities, physical_removal=False)

    monkeypatch.setitem(base._BACKENDS, "hiding", IndexBackend(open=lambda target, fresh: Hiding(target.dim),
                                                               drop=lambda target: None, sweep=lambda url: None))
    store_url, _, _ = _target(tmp_path)
    with pytest.raises(SettingsError, match="cannot remove templates physically"):
        small.migrate(to_store=store_url, to_index="hiding://")
    assert not Path(store_url.removeprefix("sqlite://")).exists()
    _no_trace_of_a_move(small)


def test_a_milvus_index_is_the_same_place_whatever_its_options_credentials_or_default_prefix():
    """A move into the deployment's own Milvus collections, written with another ef or user, is
    refused like one into its own FAISS folder (the check compared the URLs' text)."""
    from vultus.migration import _index_place

    own = _index_place("milvus://127.0.0.1:19530")
    for same in ("milvus://127.0.0.1:19530/vultus", "milvus://reader:secret@127.0.0.1/vultus/?ef=96",
                 "MILVUS://127.0.0.1:19530/vultus?ef=80"):
        assert _index_place(same) == own, same
    for other in ("milvus://127.0.0.1:19531", "milvus://127.0.0.1:19530/archive", "milvus://10.0.0.5:19530"):
        assert _index_place(other) != own, other
