"""Evaluation and calibration: LFW pairs, measured rates, expected false candidates = FMR x N."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import vultus
from vultus.calibration import fmr_at, impostor_survival, parse_lfw_pairs
from vultus.cli import cli
from vultus.errors import PolicyError
from vultus.metrics import rates_at, tenfold_accuracy, threshold_for_fmr, tmr_at_fmr
from vultus.workers import worker_pool

SUBSET = ["deepface_angelina", "deepface_jack", "facerec_obama", "deepface_mark", "facerec_biden"]


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory, faces_root: Path) -> Path:
    """Five identities as a folder dataset (links to the shared photos, never copies)."""
    root = tmp_path_factory.mktemp("subset")
    for name in SUBSET:
        (root / name).mkdir()
        for photo in sorted((faces_root / name).iterdir()):
            (root / name / photo.name).symlink_to(photo)
    return root


def test_lfw_pairs_are_parsed_with_underscored_names(tmp_path: Path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\t2\nGeorge_W_Bush\t1\t12\nJean_Pierre_Raffarin 3 George_W_Bush 4\n\n")
    parsed = parse_lfw_pairs(pairs, tmp_path / "lfw")
    assert parsed == [
        (tmp_path / "lfw/George_W_Bush/George_W_Bush_0001.jpg", tmp_path / "lfw/George_W_Bush/George_W_Bush_0012.jpg", True),
        (tmp_path / "lfw/Jean_Pierre_Raffarin/Jean_Pierre_Raffarin_0003.jpg",
         tmp_path / "lfw/George_W_Bush/George_W_Bush_0004.jpg", False),
    ]
    pairs.write_text("George_W_Bush one 2\n")
    with pytest.raises(PolicyError, match="line 1"):
        parse_lfw_pairs(pairs, tmp_path)


def test_a_pairs_file_built_from_the_shared_faces_is_evaluated(tmp_path: Path, faces_root: Path):
    images = tmp_path / "lfw"
    names = {"deepface_angelina": "Angelina_Jo_Lie", "deepface_jack": "Jack_Of_All_Trades"}
    for folder, name in names.items():
        (images / name).mkdir(parents=True)
        for n, photo in enumerate(sorted((faces_root / folder).iterdir()), start=1):
            (images / name / f"{name}_{n:04d}.jpg").symlink_to(photo)
    # Photos with no face in them stand in for the LFW images a detector misses.
    (images / "No_Face_Here").mkdir()
    for n, photo in enumerate(sorted((faces_root / "_noface").iterdir()), start=1):
        (images / "No_Face_Here" / f"No_Face_Here_{n:04d}.jpg").symlink_to(photo)
    lines = ["Angelina_Jo_Lie 1 2", "Angelina_Jo_Lie 3 4", "Jack_Of_All_Trades 1 2", "Jack_Of_All_Trades 3 5",
             "Angelina_Jo_Lie 1 Jack_Of_All_Trades 1", "Angelina_Jo_Lie 2 Jack_Of_All_Trades 3",
             "Angelina_Jo_Lie 5 Jack_Of_All_Trades 4", "Angelina_Jo_Lie 6 Jack_Of_All_Trades 2",
             "Jack_Of_All_Trades 2 4", "Angelina_Jo_Lie 4 Jack_Of_All_Trades 5",
             "No_Face_Here 1 2", "Angelina_Jo_Lie 3 No_Face_Here 1"]
    (tmp_path / "pairs.txt").write_text("12\n" + "\n".join(lines) + "\n")
    out = CliRunner().invoke(cli, ["--data", str(tmp_path / "d"), "eval", str(images), "--pairs",
                                   str(tmp_path / "pairs.txt"), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["pairs"] == 12 and report["pairs_scored"] == 10
    assert report["pairs_failed"] == 2 and report["pairs_failed_genuine"] == 1 and report["no_face"] == 2
    assert report["genuine_pairs"] == 5 and report["impostor_pairs"] == 5
    assert report["fmr"] == 0.0 and report["fnmr"] == 0.0
    # The headline counts the two pairs with a no-face image as failed, wherever they fall in
    # the folds: at most 10 of 12 right. The scored-pairs figure stands beside it.
    assert report["accuracy_10fold"] <= 10 / 12 + 1e-9
    assert report["accuracy_10fold_scored"] > report["accuracy_10fold"]
    # 5 impostor pairs resolve no FMR below 1/5, so none at 1e-3.
    assert report["fmr_floor"] == 0.2 and report["tmr_at_fmr_1e-3"] is None
    text = CliRunner().invoke(cli, ["--data", str(tmp_path / "d"), "eval", str(images), "--pairs",
                                    str(tmp_path / "pairs.txt")]).output
    assert "the 2 of 12 pairs with an image that yields no face counted as failed" in text


def test_eval_on_a_folder_gives_the_same_figures_from_the_cli_and_the_python_api(subset: Path, tmp_path: Path):
    report_file = tmp_path / "eval.html"
    out = CliRunner().invoke(cli, ["--data", str(tmp_path / "d"), "eval", str(subset), "--json", "--report", str(report_file)])
    assert out.exit_code == 0, out.output
    from_cli = json.loads(out.stdout)
    with vultus.open(tmp_path / "d") as engine:
        from vultus.calibration import public_figures

        from_api = public_figures(engine.evaluate(subset))
    assert from_cli == from_api
    assert from_cli["identities"] == 5 and from_cli["images"] == 24 and from_cli["no_face"] == 0
    assert from_cli["rank1"] == 1.0 and from_cli["fnmr"] < 0.1 and from_cli["fmr"] < 0.01
    assert 0.9 <= from_cli["accuracy_10fold"] <= 1.0
    html = report_file.read_text()
    assert html.count("data:image/png;base64,") == 2
    assert (tmp_path / "eval-roc.png").stat().st_size > 1000 and (tmp_path / "eval-det.png").exists()


def test_expected_false_candidates_is_fmr_times_the_gallery_size(subset: Path, tmp_path: Path, faces_root: Path):
    with vultus.open(tmp_path / "d") as engine:
        probe = faces_root / "facerec_obama" / "1.jpg"
        engine.add_source("s", basis="consent", purpose="p", retention="1d")
        engine.ingest([faces_root / "facerec_obama"], source="s", workers=1)
        assert engine.search(probe, purpose="p", case="c").expected_false_candidates is None
        record = engine.calibrate(subset, fmr=0.05)
        assert record["fmr_resolved"] and record["fmr_measured"] <= 0.05
        # The record keeps counts per 0.001 of similarity, never the n² scores themselves.
        assert len(record["impostor_at_or_above"]) == 1000 and record["impostor_at_or_above"][0] == record["impostor_pairs"]
        fmr = fmr_at(record, record["threshold"])
        assert fmr == record["fmr_measured"]  # exact at the operating point
        first = engine.search(probe, purpose="p", case="c")
        assert first.threshold == pytest.approx(record["threshold"])
        assert first.expected_false_candidates == pytest.approx(fmr * 4)
        engine.ingest([faces_root / name for name in ("deepface_scarlett", "deepface_unnamed_a")], source="s", workers=1)
        second = engine.search(probe, purpose="p", case="c")
        faces = len(engine.store.searchable_face_ids())
        assert faces > 4 and second.gallery_faces == faces
        assert second.expected_false_candidates == pytest.approx(fmr * faces)
        assert [e for e in engine.audit_entries(action="calibration")][0].details["threshold"] == record["threshold"]
    text = CliRunner().invoke(cli, ["--data", str(tmp_path / "d"), "search", str(probe), "--purpose", "p", "--case", "c"]).output
    assert f"{fmr * faces:.3g}" in text


def test_metrics_on_known_scores():
    genuine = np.array([0.9, 0.8, 0.75, 0.6])
    impostor = np.array([0.1, 0.2, 0.3, 0.65, 0.72])
    assert rates_at(genuine, impostor, 0.7) == (0.2, 0.25)
    threshold, measured, resolved = threshold_for_fmr(impostor, 0.2)
    assert resolved and measured == 0.2 and threshold == 0.72
    assert threshold_for_fmr(impostor, 0.01)[1:] == (0.0, False)
    same = np.array([True] * 4 + [False] * 5)
    mean, _ = tenfold_accuracy(np.concatenate([genuine, impostor]), same, folds=3)
    assert 0.5 < mean <= 1.0


def test_tenfold_accuracy_counts_failed_pairs_as_errors():
    rng = np.random.default_rng(5)
    similarity = np.concatenate([np.full(100, 0.85), np.full(100, 0.15)])
    same = np.array([True] * 100 + [False] * 100)
    assert tenfold_accuracy(similarity, same)[0] == 1.0
    failed = np.zeros(200, dtype=bool)
    failed[rng.choice(200, 10, replace=False)] = True
    similarity[failed] = np.nan  # never read
    # 10 of 200 pairs are errors however the folds split them (20 pairs a fold).
    assert tenfold_accuracy(similarity, same, failed=failed)[0] == pytest.approx(0.95)


def test_tmr_at_fmr_is_given_only_where_the_impostors_resolve_it():
    genuine = np.linspace(0.5, 1.0, 100)
    impostor = np.linspace(0.0, 0.6, 2000)  # the top 2 of 2000 are at FMR 1e-3
    tmr, threshold = tmr_at_fmr(genuine, impostor, 1e-3)
    assert threshold == pytest.approx(impostor[-2]) and tmr == float(np.mean(genuine >= threshold))
    assert tmr_at_fmr(genuine, impostor[:999], 1e-3) is None


def test_the_curves_draw_only_the_fmrs_the_impostor_pairs_resolve(subset: Path, tmp_path: Path):
    from vultus.report import evaluation_figures

    with vultus.open(tmp_path / "d") as engine:
        report = engine.evaluate(subset)
    floor = 1 / report["impostor_pairs"]
    assert report["fmr"] < floor  # the threshold accepts no impostor here: below what is resolved
    for kind, figure in evaluation_figures(report):
        axis = figure.axes[0]
        curve, marker = axis.lines[0], axis.lines[1]
        assert all(x >= floor for x in curve.get_xdata()), kind
        assert kind == "det" or len(curve.get_xdata())
        assert "threshold" in marker.get_label() and marker.get_xdata()[0] >= floor
        assert "TMR at FMR 1e-3" in axis.get_title()


def test_stored_impostor_counts_give_the_fmr_at_any_threshold():
    rng = np.random.default_rng(3)
    scores = np.clip(rng.normal(0.45, 0.08, 20_000), 0, 1)
    top = np.round(np.sort(scores)[::-1][:1000], 6)
    record = {"impostor_pairs": len(scores), "impostor_top": top.tolist(), "impostor_at_or_above": impostor_survival(scores)}
    for threshold in (0.3, 0.5, 0.6, 0.6549, 0.7, 0.99):
        exact = float(np.mean(np.round(scores, 6) >= threshold))
        within_bin = float(np.mean(scores >= np.floor(threshold * 1000) / 1000))
        assert exact <= fmr_at(record, threshold) <= within_bin + 1e-12
        if threshold >= top[-1]:  # among the highest scores kept: exact
            assert fmr_at(record, threshold) == exact
    assert fmr_at(record, 0.0) == 1.0 and fmr_at(record, 1.01) == 0.0
    # Records written before the counts were kept still read exactly.
    assert fmr_at({"impostor_scores": [0.2, 0.5, 0.8]}, 0.5) == pytest.approx(2 / 3)


def test_a_report_in_a_missing_folder_is_refused_before_anything_runs(subset: Path, tmp_path: Path, monkeypatch):
    from vultus.engine import Engine

    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran although its report could not be written")

    monkeypatch.setattr(Engine, "evaluate", must_not_run)
    missing = tmp_path / "no-such-folder" / "report.html"
    out = CliRunner().invoke(cli, ["--data", str(tmp_path / "d"), "eval", str(subset), "--report", str(missing)])
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit), out.output
    assert "Traceback" not in out.output
    assert str(missing.parent) in out.output and "create" in out.output.lower()
    assert not missing.parent.exists()  # refused, not made: a typo in the path is not a new folder


def test_eval_and_calibrate_give_the_same_figures_in_one_process_and_in_two_workers(subset: Path, tmp_path: Path,
                                                                                    monkeypatch):
    from vultus import calibration
    from vultus.calibration import calibration_figures, public_figures

    pools = []
    monkeypatch.setattr(calibration, "worker_pool", lambda *a: pools.append(a[0]) or worker_pool(*a))
    with vultus.open(tmp_path / "d") as engine:
        inline = engine.evaluate(subset, workers=1)
        pooled = engine.evaluate(subset, workers=2)
        assert public_figures(pooled) == public_figures(inline)
        assert np.array_equal(pooled["_genuine"], inline["_genuine"])
        assert np.array_equal(pooled["_impostor"], inline["_impostor"])
        one = calibration_figures(engine.calibrate(subset, fmr=0.05, workers=1))
        two = calibration_figures(engine.calibrate(subset, fmr=0.05, workers=2))
    one.pop("at"), two.pop("at")
    assert one == two
    assert pools == [2, 2]  # the two-worker runs did use a pool of two


def test_eval_shows_its_progress_on_stderr_with_json(subset: Path, tmp_path: Path):
    out = CliRunner().invoke(cli, ["--data", str(tmp_path / "d"), "eval", str(subset), "--json", "--progress",
                                   "--workers", "1"])
    assert out.exit_code == 0, out.output
    assert "Evaluating" in out.stderr and "24/24" in out.stderr
    assert json.loads(out.stdout)["images"] == 24  # the bar never mixes into the JSON


def test_an_error_in_the_caller_stops_the_workers_at_once(tmp_path: Path, faces_root: Path):
    """The pool's queued photos are dropped, not analysed to the end, when the caller fails."""
    import multiprocessing

    def fail(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with vultus.open(tmp_path / "d") as engine:
        with pytest.raises(KeyboardInterrupt) as stopped:
            engine.evaluate(faces_root, workers=2, progress=fail)
        assert multiprocessing.active_children() == []
        del stopped
