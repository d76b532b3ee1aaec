"""The commands on ingest, search, accuracy, maintenance, accounts and the server: parse, call the engine, render.

The commands on sources are in :mod:`.sources`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..report import clock
from .base import CATEGORY_CHOICES, _engine, _friendly, _json_option, _size, _table, cli

# -- ingest -------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--source", "source_name", required=True, help="Registered source the photos and videos belong to.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes (default or 0: one per CPU core; 1 runs in this process).")
@click.option("--executor", type=click.Choice(["pool", "ray"]), default=None,
              help="Where photos are analysed: pool (worker processes here, the default) or ray (tasks on a Ray "
                   "cluster; every node must read the media at the same paths). Env VULTUS_INGEST_EXECUTOR.")
@click.option("--ray-address", default=None, metavar="HOST:PORT",
              help="The Ray cluster's head for --executor ray (env VULTUS_RAY_ADDRESS; default: a local Ray for this ingest).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when on a terminal).")
@_json_option
@click.pass_context
@_friendly
def ingest(ctx: click.Context, paths: tuple[str, ...], source_name: str, workers: int | None, executor: str | None,
           ray_address: str | None, progress: bool | None, as_json: bool) -> None:
    """Index the photos and videos in PATHS: files, folders (recursively), zip and tar archives.

    Videos (MP4, MOV, M4V, MKV, WebM, AVI) are sampled VULTUS_VIDEO_SAMPLE_RATE frames a
    second; each person on screen is stored as an appearance (time range, one template, a
    still), never the video itself. Items already indexed (same sha256) are skipped, so
    running the same command again after an interruption finishes the job. Files that
    cannot be read are listed with the reason and the batch goes on. Local paths only:
    there is no crawler, and stream addresses (rtsp://, http://) are refused.
    """
    from tqdm import tqdm

    obj = ctx.find_root().obj
    obj["settings"] = obj["settings"].with_(ingest_executor=executor, ray_address=ray_address)
    engine = _engine(ctx)
    bar = tqdm(total=0, unit="img", desc="Ingesting", file=sys.stderr, disable=(not progress) if progress is not None else None)

    def on_progress(done: int, total: int, faces: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix(faces=faces, refresh=False)

    def on_video(name: str, frames: int, expected: int, appearances: int) -> None:
        # Inside the ingest bar: the video under way, its frames analysed and appearances so far.
        bar.set_postfix_str(f"{Path(name).name}: frame {frames}/{expected}, {appearances} appearances")

    try:
        summary = engine.ingest(paths, source=source_name, workers=workers or None, progress=on_progress,
                                notice=lambda message: (bar.close(), click.echo(message, err=True)),
                                video_progress=on_video)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    click.echo(
        f"Indexed {summary.images} photo{'s' if summary.images != 1 else ''} with {summary.faces} "
        f"face{'s' if summary.faces != 1 else ''} into source {summary.source!r} in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.2f} photos/s, detector {summary.detector})."
    )
    if summary.videos:
        click.echo(f"Indexed {summary.videos} video{'s' if summary.videos != 1 else ''} with {summary.appearances} "
                   f"appearance{'s' if summary.appearances != 1 else ''} of people (one stored face each).")
    click.echo(f"No face found: {summary.no_face}. Already indexed (skipped): {summary.duplicates}.")
    if summary.low_quality:
        reasons = {"too_small": "smaller than the minimum face size", "low_score": "below the minimum detector score"}
        parts = [f"{count} {reasons.get(reason, reason)}" for reason, count in sorted(summary.low_quality.items())]
        click.echo(f"Faces not indexed by the quality gate: {', '.join(parts)} (VULTUS_MIN_FACE_SIZE, "
                   "VULTUS_MIN_DETECTOR_SCORE).")
    if summary.suppressed_faces:
        click.echo(
            f"Skipped {summary.suppressed_faces} face(s) of people who objected (not stored); "
            f"{summary.suppressed_photos} photo(s) showed only them and were not stored at all."
        )
    if summary.index_rebuilt:
        kind = "a large-gallery (IVF) index" if summary.index_rebuilt == "ivf" else "an exact index"
        click.echo(f"The index was rebuilt as {kind} in {summary.index_seconds:.1f} s.")
    if summary.ignored:
        click.echo(f"Ignored {len(summary.ignored)} file(s) that are not photos, e.g. {summary.ignored[0]}.")
    if summary.refused:
        click.echo(f"Refused {len(summary.refused)} file(s):")
        for path, reason in summary.refused:
            click.echo(f"  {path}: {reason}" if not reason.startswith(path) else f"  {reason}")


# -- search -------------------------------------------------------------------------------


@cli.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PHOTO [PHOTO...]")
@click.option("--purpose", default=None, help="Why you are searching; recorded in the audit log (required unless the deployment relaxes it).")
@click.option("--case", "case_ref", default=None, help="Case or file reference the search is for; recorded in the audit log.")
@click.option("--top", type=click.IntRange(min=1, max=1000), default=None, help="Most candidates to return [default: 10].")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Minimum similarity (0-1, higher is closer) [default: 0.70, dlib's distance 0.6].")
@click.option("--face", "face_number", type=click.IntRange(min=1), default=None,
              help="Which face of the probe to search with, 1 = largest [default: the largest]; one PHOTO only.")
@click.option("--category", type=click.Choice(CATEGORY_CHOICES, case_sensitive=False), default=None,
              help="What the search is for; only sources whose purposes allow it are searched "
              "[default: VULTUS_DEFAULT_CATEGORY, archive].")
@_json_option
@click.pass_context
@_friendly
def search(ctx: click.Context, photos: tuple[Path, ...], purpose: str | None, case_ref: str | None, top: int | None,
           threshold: float | None, face_number: int | None, category: str | None, as_json: bool) -> None:
    """Find candidate photos and video appearances of the person in PHOTO, best first.

    Results are candidates for a person to review, never identifications. The probe photo
    is used in memory and not stored. A video candidate is one appearance of the person
    in the video, with the time (mm:ss) where the best match was seen; in --json every
    candidate has "media" ("photo" or "video"), and a video's "video_time" and
    "video_time_end" (seconds from its start).

    Several photos of the same person (at most 5) are searched as that person: each gives
    its largest face, and a stored face scores its best similarity to any of them. Every
    candidate lists its similarity to each probe face ("probe_similarities" in --json, one
    entry per probe face used). A photo with no face is an error that names it.

    Only the sources whose purposes allow the search's --category are searched; the others
    are named as left out (on stderr with --json, whose stdout stays the candidates' array).
    """
    result = _engine(ctx).search(
        list(photos), purpose=purpose, case=case_ref, top=top, threshold=threshold, face=face_number,
        category=category,
    )
    notes = _probe_notes(result)
    scope = _scope_note(result)
    if scope:
        notes.append(scope)
    if as_json:
        for note in notes:
            click.echo(note, err=True)
        click.echo(json.dumps([c.as_dict() for c in result.candidates], indent=2))
        return
    for note in notes:
        click.echo(note)
    if result.left_out and not result.sources_searched:
        return  # the scope note said why nothing was searched
    if not result.candidates:
        click.echo(
            f"No candidate at similarity >= {result.threshold:.2f} among {result.gallery_faces} indexed faces."
            + ("" if result.gallery_faces else " The sources searched hold no face yet." if result.left_out
               else " The gallery is empty: index photos first with `vultus ingest`.")
        )
        return
    click.echo(
        f"{len(result.candidates)} candidate(s) at similarity >= {result.threshold:.2f} among "
        f"{result.gallery_faces} indexed faces. These are leads for a person to check, not identifications."
    )
    click.echo(_expected_note(result.expected_false_candidates))
    rows = [
        [str(c.rank), f"{c.similarity:.3f}", c.source, c.legal_basis, c.ingested_at[:10],
         "[{},{},{},{}]".format(*c.box), c.path]
        for c in result.candidates
    ]
    headers = ["#", "similarity", "source", "basis", "ingested", "box", "path"]
    if any(c.media == "video" for c in result.candidates):
        # Where in the video: the best match's frame, and until when the appearance lasts.
        for row, c in zip(rows, result.candidates):
            row.insert(6, f"{clock(c.video_time)} (to {clock(c.video_time_end)})" if c.media == "video" else "")
        headers.insert(6, "video time")
    if result.probe_faces_used > 1:
        for row, c in zip(rows, result.candidates):
            row.insert(2, " ".join(f"{s:.2f}" for s in c.probe_similarities or []))
        headers.insert(2, "by probe")
    click.echo(_table(headers, rows))


def _scope_note(result: Any) -> str | None:
    """What a search left out and why, or None when it searched every source."""
    if not result.left_out:
        return None
    reasons = "; ".join(entry.reason(result.category) for entry in result.left_out)
    if not result.sources_searched:
        return (f"No source may be searched for {result.category}, so nothing was searched. Left out: {reasons}. "
                "Search for a category a source allows (--category), or declare this one for a source with "
                "`vultus source set NAME --purposes ...` if that is lawful.")
    return f"Searched the sources that allow {result.category}: {', '.join(result.sources_searched)}. Left out: {reasons}."


def _probe_notes(result) -> list[str]:  # noqa: ANN001 - a SearchResult
    """What to tell about the probe faces: which were used, and any that looks like someone else."""
    if result.probe_faces_used == 1:
        if result.probe_faces <= 1:
            return []
        return [
            f"The probe has {result.probe_faces} faces; searched with face {result.face_used} "
            f"({'the largest' if result.face_used == 1 else 'as asked'}, box {result.face_box}). "
            "Use --face N to pick another (1 = largest)."
        ]
    notes = [f"Searched as one person with {result.probe_faces_used} probe faces, the largest of each photo; "
             "each candidate's similarity is its best to any of them (by probe: to each, in order)."]
    notes += [f"{p.name} has {p.faces} faces; its largest (box {p.box}) was used." for p in result.probes if p.faces > 1]
    notes += [f"The face in {result.probes[n - 1].name} does not match the one in {result.probes[0].name} at the "
              "threshold: check that every photo shows the same person (its candidates are in the list too)."
              for n in result.unlike_probes]
    return notes


def _expected_note(expected: float | None) -> str:
    if expected is None:
        return "Expected false candidates: unknown until the model is calibrated (`vultus calibrate`)."
    return f"Expected false candidates at this threshold and gallery size: {expected:.3g} (measured FMR x faces)."


# -- accuracy -----------------------------------------------------------------------------


def _progress_bar(label: str, progress: bool | None = None):  # noqa: ANN202 - a callback and the bar to close
    from tqdm import tqdm

    # On stderr, so that it shows with --json too and never mixes into the JSON on stdout.
    bar = tqdm(total=0, unit="img", desc=label, file=sys.stderr, disable=(not progress) if progress is not None else None)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update, bar


@cli.command("eval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="An LFW-format pairs.txt; DATASET is then its images folder (Name/Name_0001.jpg).")
@click.option("--fpir", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.01, show_default=True,
              help="False positive identification rate at which FNIR is reported.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write an HTML report with ROC and DET curves (PNG files beside it); its folder must exist.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes that analyse the photos (default or 0: one per CPU core; 1 runs in this process).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar on stderr, with --json too (default: when on a terminal).")
@_json_option
@click.pass_context
@_friendly
def eval_command(ctx: click.Context, dataset: Path, pairs_file: Path | None, fpir: float,
                 report_path: Path | None, workers: int | None, progress: bool | None, as_json: bool) -> None:
    """Measure accuracy on DATASET: a folder per identity, or LFW pairs with --pairs.

    Prints verification accuracy (10-fold cross-validation), FMR and FNMR at the search
    threshold, and for a folder dataset rank-1, rank-5 and FNIR at --fpir, and the number
    of images with no face found.
    """
    from ..calibration import public_figures
    from ..report import check_report_path, evaluation_html, evaluation_plots

    if report_path is not None:  # before the evaluation, not after it: its result would be lost
        check_report_path(report_path)
    update, bar = _progress_bar("Evaluating", progress)
    try:
        report = _engine(ctx).evaluate(dataset, pairs=pairs_file, fpir=fpir, progress=update, workers=workers or None)
    finally:
        bar.close()
    figures = public_figures(report)
    if report_path is not None:
        images = evaluation_plots(report, report_path.with_suffix(""))
        report_path.write_text(evaluation_html(figures, images))
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    if "pairs_failed" in figures:
        click.echo(
            f"Accuracy (10-fold, standard protocol): {figures['accuracy_10fold']:.4f}, the {figures['pairs_failed']} "
            f"of {figures['pairs']} pairs with an image that yields no face counted as failed; on the "
            f"{figures['pairs_scored']} scored pairs only: {figures['accuracy_10fold_scored']:.4f}."
        )
    rows = [[key.replace("_", " "), f"{value:.4g}" if isinstance(value, float) else
             ("not resolved" if value is None else str(value))]
            for key, value in figures.items()]
    click.echo(_table(["", ""], rows, header=False))
    if report_path is not None:
        click.echo(f"Report written to {report_path}.")


@cli.command("calibrate")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--fmr", type=float, required=True, help="Target false match rate, e.g. 1e-4.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes that analyse the photos (default or 0: one per CPU core; 1 runs in this process).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar on stderr, with --json too (default: when on a terminal).")
@_json_option
@click.pass_context
@_friendly
def calibrate_command(ctx: click.Context, dataset: Path, fmr: float, workers: int | None, progress: bool | None,
                      as_json: bool) -> None:
    """Set the search threshold for a target false match rate, measured on DATASET (a folder per identity).

    The threshold is stored with the model id; searches then use it by default and report
    the expected number of false candidates at the gallery's size.
    """
    update, bar = _progress_bar("Calibrating", progress)
    try:
        record = _engine(ctx).calibrate(dataset, fmr=fmr, progress=update, workers=workers or None)
    finally:
        bar.close()
    from ..calibration import calibration_figures

    shown = calibration_figures(record)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(
        f"Search threshold for {record['model_id']} set to {record['threshold']:.4f}: measured FMR "
        f"{record['fmr_measured']:.3g} over {record['impostor_pairs']} impostor pairs, FNMR {record['fnmr']:.3g} "
        f"over {record['genuine_pairs']} genuine pairs."
    )
    if not record["fmr_resolved"]:
        click.echo(
            f"Note: {record['impostor_pairs']} impostor pairs cannot resolve an FMR of {fmr:g}; the threshold sits "
            "above every impostor score. Calibrate on a larger dataset for a tighter figure."
        )


# -- maintenance --------------------------------------------------------------------------


@cli.command()
@_json_option
@click.pass_context
@_friendly
def stats(ctx: click.Context, as_json: bool) -> None:
    """Show sources, images, faces, index size and disk use."""
    s = _engine(ctx).stats()
    if as_json:
        click.echo(json.dumps(s.__dict__, indent=2))
        return
    on_disk = "" if s.index_bytes is None else f", {_size(s.index_bytes)}"  # none of its own files here
    rows = [
        ["data directory", s.data_dir],
        ["sources", str(s.sources)],
        ["images", f"{s.images} ({s.images_with_faces} with faces)"],
        ["faces", str(s.faces)],
        *([["videos", f"{s.videos} ({s.appearances} appearances, counted among the faces)"]] if s.videos else []),
        ["index", f"{s.index_vectors} vectors{on_disk}, {s.index_kind} search"],
        ["disk use", _size(s.disk_bytes)],
        ["models", f"detector {s.detector}, embedder {s.embedder}"],
        ["restricted faces", str(s.restricted_faces)],
        ["audit entries", str(s.audit_entries)],
        ["open requests", str(s.open_requests)],
        ["suppression entries", f"{s.active_suppressions} active"],
        ["search purpose", "required" if s.purpose_required else
         "OPTIONAL (VULTUS_PURPOSE_REQUIRED=0: for a personal deployment only)"],
        ["key file", s.key_file],
    ]
    click.echo(_table(["", ""], rows, header=False))


@cli.command()
@click.option("--model", default=None, metavar="NAME",
              help="Re-embed every stored face with this embedder (dlib-resnet-v1 or an ArcFace-style .onnx "
              "path) and make it the gallery's.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when on a terminal).")
@_json_option
@click.pass_context
@_friendly
def reindex(ctx: click.Context, model: str | None, progress: bool | None, as_json: bool) -> None:
    """Rebuild the vector index from the store (after a corrupt or deleted index file).

    With --model, convert the gallery to another embedder first: every face is
    re-aligned from its stored box on the stored photo copy and embedded again. If it
    is interrupted, run the same command again to finish; until then searches are
    refused. Then run `vultus calibrate` for the new model.
    """
    engine = _engine(ctx)
    if model is None:
        count = engine.reindex()
        if as_json:
            click.echo(json.dumps({"index_vectors": count}))
        else:
            click.echo(f"Rebuilt the index from the store: {count} face templates.")
        return
    from tqdm import tqdm

    bar = tqdm(total=0, unit="face", desc="Re-embedding", file=sys.stderr,
               disable=(not progress) if progress is not None else None)

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        change = engine.change_model(model, progress=on_progress)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(change.as_dict(), indent=2))
        return
    old = ", ".join(change.from_models) or "nothing (all faces were already converted)"
    click.echo(
        f"Re-embedded {change.faces} faces in {change.images} photos with {change.to_model} "
        f"(was {old}) in {change.seconds:.1f} s. The index was rebuilt."
    )
    click.echo("Its search threshold is the model's default until you run `vultus calibrate DATASET --fmr RATE`.")


#: Seconds `vultus serve` keeps an idle connection open for its next request.
KEEP_ALIVE_SECONDS = 5


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--data", "serve_data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory to serve (the same as the global --data, which it overrides).")
@click.pass_context
@_friendly
def serve(ctx: click.Context, host: str, port: int, serve_data: Path | None) -> None:
    """Run the HTTP API (OpenAPI at /docs, health at /healthz) on the data directory.

    Every /v1 route needs `Authorization: Bearer TOKEN` of an account made with
    `vultus user add`. Put it behind a TLS-terminating proxy before exposing it.
    """
    import uvicorn

    from ..server import create_app

    if serve_data is not None:
        root = ctx.find_root().obj
        root["settings"] = root["settings"].with_(data_dir=serve_data)

    from ..server.connections import header_timeout_protocol

    app = create_app(engine=_engine(ctx))
    click.echo(f"Serving {ctx.find_root().obj['settings'].data_dir} on http://{host}:{port} (docs at /docs).", err=True)
    # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from 127.0.0.1 as the
    # client; Vultus reads it itself, and only from VULTUS_TRUSTED_PROXIES. An idle
    # keep-alive connection is closed after KEEP_ALIVE_SECONDS; headers are at most 16 KiB,
    # and must be complete within VULTUS_BODY_TIMEOUT of the connection opening or of the
    # previous response (uvicorn's own timer would let a silent or trickling client stay).
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                timeout_keep_alive=KEEP_ALIVE_SECONDS, h11_max_incomplete_event_size=16 * 1024,
                http=header_timeout_protocol(app.state.body_timeout))


@cli.group()
def user() -> None:
    """Manage the accounts that use the HTTP API."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["admin", "investigator", "dpo", "auditor"]),
              help="admin (users, sources, purge), investigator (ingest, search), dpo (rights requests) "
                   "or auditor (audit log and receipts, read only).")
@click.pass_context
@_friendly
def user_add(ctx: click.Context, name: str, role: str) -> None:
    """Create account NAME and print its token, once (only a hash is stored)."""
    account, token = _engine(ctx).add_user(name, role=role)
    click.echo(f"Created {account.role.value} account {account.name!r}. Its token (shown only now, keep it secret):")
    click.echo(token)


@user.command("password")
@click.argument("name")
@click.password_option("--password", prompt="New password", help="The password (prompted for when not given).")
@click.pass_context
@_friendly
def user_password(ctx: click.Context, name: str, password: str) -> None:
    """Set a password for account NAME, for the web sign-in (at least 12 characters)."""
    _engine(ctx).set_password(name, password)
    click.echo(f"Password set for {name!r}; sign in on the web page with the name and this password.")


@user.command("list")
@_json_option
@click.pass_context
@_friendly
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List accounts and roles (tokens are never shown again)."""
    accounts = _engine(ctx).users()
    if as_json:
        click.echo(json.dumps([{**a.__dict__, "role": a.role.value} for a in accounts], indent=2))
        return
    rows = [[a.name, a.role.value, a.created_at, a.disabled_at or "active"] for a in accounts]
    click.echo(_table(["name", "role", "created", "status"], rows) if rows else "No accounts yet.")


@user.command("disable")
@click.argument("name")
@click.pass_context
@_friendly
def user_disable(ctx: click.Context, name: str) -> None:
    """Disable account NAME: its token stops working, its audit entries stay."""
    _engine(ctx).disable_user(name)
    click.echo(f"Disabled account {name!r}.")
